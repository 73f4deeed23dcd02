"""LipSyncStage: turns each frame's render items into mouth patches with the engine.

It batches frames (the engine's `batch_size` faces at a time, flushed at end of stream),
so a neural engine runs full batches; the classical engine works face by face.
"""
from __future__ import annotations

from typing import Any

from models.engine import LipSyncEngine, MouthRequest
from stream.frame import Frame
from stream.stage import BatchStage


def track_key(person_key: str, frame: Frame) -> str:
    """The engine's per-track key: the person within one shot. A cut starts a new track,
    so smoothing, colours and mesh never carry over a cut; the person's mouth bank is
    keyed by the person and serves every shot."""
    return f"{person_key}#shot{frame.notes.get('shot', 0)}"


class LipSyncStage(BatchStage):
    name = "lipsync"

    def __init__(self, engine: LipSyncEngine, audio_features: Any, banks: dict | None = None,
                 features_by_key: dict | None = None) -> None:
        super().__init__()
        self.engine = engine
        self.audio_features = audio_features
        self.banks = banks or {}
        self.features_by_key = features_by_key or {}
        """Per target key, the features its face renders with (its own stem, its expressiveness)."""
        self.batch_size = max(1, engine.batch_size)
        self.faces_rendered = 0
        self._faces_pending = 0

    def process(self, frame: Frame):
        self._pending.append(frame)
        self._faces_pending += len(frame.notes.get("render", ()))
        if self._faces_pending >= self.batch_size or len(self._pending) >= 4 * self.batch_size:
            return self._run_pending()
        return ()

    def _run_pending(self) -> list[Frame]:
        self._faces_pending = 0
        return super()._run_pending()

    def process_batch(self, frames: list[Frame]) -> list[Frame]:
        groups: dict[int, tuple[Any, list, list]] = {}  # one engine call per distinct features
        for frame in frames:
            frame.notes["patches"] = []
            for item in frame.notes.get("render", ()):
                features = self.features_by_key.get(item.target.key, self.audio_features)
                _, requests, slots = groups.setdefault(id(features), (features, [], []))
                requests.append(MouthRequest(frame.index, frame.time_ms, frame.image, item.face,
                                             track_key(item.target.key, frame), item.strength,
                                             self.banks.get(item.target.key)))
                slots.append((frame, len(frame.notes["patches"])))  # the patch keeps its item's place
                frame.notes["patches"].append(None)
        for features, requests, slots in groups.values():
            for (frame, slot), patch in zip(slots, self.engine.render(requests, features)):
                frame.notes["patches"][slot] = patch
            self.faces_rendered += len(requests)
        return frames
