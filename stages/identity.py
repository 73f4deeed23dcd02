"""Who is who: reference characters and the stable `face_N` names of unknown people.

Similarities are on the ArcFace cosine scale (the backend maps its own), so one threshold
works for every backend. Each frame's faces are assigned to identities with the Hungarian
algorithm, so two faces in one frame never get the same character. A person with no
reference keeps one `face_N` for the whole video, even after leaving and coming back: the
unknown gallery keeps a mean embedding per `face_N`, and a returning face is matched
against it before a new name is made. Names are given in order of first appearance.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment

Similarity = Callable[[np.ndarray, np.ndarray], float]

_REFERENCE_PREFERENCE = 0.05
"""A reference beats an unknown-gallery entry that is less than this much more similar."""
_STICKINESS = 0.05
"""A track keeps its previous identity unless another is clearly more similar (no swaps)."""


@dataclass
class Identity:
    id: str
    embedding: np.ndarray
    is_reference: bool
    name: str | None = None
    count: int = 1

    def absorb(self, embedding: np.ndarray) -> None:
        """Running mean of an unknown person's embeddings (references stay fixed)."""
        if self.is_reference:
            return
        self.count += 1
        mean = self.embedding + (embedding - self.embedding) / self.count
        self.embedding = mean / (np.linalg.norm(mean) + 1e-12)


@dataclass
class IdentityBook:
    similarity: Similarity
    threshold: float = 0.5
    identities: list[Identity] = field(default_factory=list)
    _unknowns: int = 0

    def add_reference(self, character_id: str, embedding: np.ndarray, name: str | None = None) -> None:
        self.identities.append(Identity(character_id, np.asarray(embedding, np.float32), True, name))

    def assign(self, embeddings: Sequence[np.ndarray],
               previous: Sequence[str | None] | None = None) -> list[tuple[str, float]]:
        """One (identity id, similarity) per embedding, unique within the call.

        previous: each embedding's identity in the last frame (its track's), if any.
        """
        if not embeddings:
            return []
        previous = previous or [None] * len(embeddings)
        raw = np.full((len(embeddings), len(self.identities)), -np.inf)
        for i, embedding in enumerate(embeddings):
            for j, identity in enumerate(self.identities):
                raw[i, j] = self.similarity(embedding, identity.embedding)
        bonus = np.array([[(_REFERENCE_PREFERENCE if identity.is_reference else 0.0)
                           + (_STICKINESS if identity.id == previous[i] else 0.0)
                           for identity in self.identities] for i in range(len(embeddings))])
        result: list[tuple[str, float] | None] = [None] * len(embeddings)
        if self.identities:
            allowed = raw >= self.threshold
            cost = np.where(allowed, -(raw + bonus.reshape(raw.shape)), 1e6)
            for i, j in zip(*linear_sum_assignment(cost)):
                if allowed[i, j]:
                    identity = self.identities[j]
                    identity.absorb(np.asarray(embeddings[i], np.float32))
                    result[i] = (identity.id, float(raw[i, j]))
        for i, entry in enumerate(result):
            if entry is None:
                self._unknowns += 1
                identity = Identity(f"face_{self._unknowns}", np.asarray(embeddings[i], np.float32), False)
                self.identities.append(identity)
                result[i] = (identity.id, 1.0)
        return result  # type: ignore[return-value]
