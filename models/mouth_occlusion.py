"""Is the mouth covered? The frame's mouth against the person's own mouths.

A hand, a microphone or a cup in front of the mouth is still given landmarks (dlib's shape
prior puts lips there), and painting a mouth on top of it is the most visible mistake a
lip-sync can make. An uncovered mouth looks like one the person has shown: one of their bank
mouths (`models.mouth_bank`, the same video at many openings) or one of their last clearly
seen frames. The likeness is the best normalised cross-correlation of the grey area around
the lips. In the engine, on every frame of the five sample clips + sun.wav, it is 0.68-1.0
(1st percentile 0.72-0.78) but for one frame (d12 41: 0.57, a camera jump onto a turned,
open grin); with d12's own hand and sleeve held over his mouth it is 0.17-0.44 from the
hand's second frame on (0.57 on its first). A mouth under COVERED_BELOW for COVER_AFTER
frames in a row is left as it is (`OcclusionGate`), and faded back in once seen again.

Not done: a cover the bank pass sampled stays in the bank (a rule that dropped samples
unlike all earlier ones also dropped d12's first grin, a new expression, not a cover); the
gate leaves bank mouths within APART_MS of a frame out of its comparison instead, once the
face has clearly seen frames of its own: so a cover from a track's very first frame, which
the bank sampled, is not caught.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import cv2
import numpy as np

from models.mouth_bank import FaceAxes, MouthBank, canonical_size, canonical_window, local_to_canonical

PICTURE_PX_PER_S = 40
"""Resolution (pixels per inter-ocular distance) of the grey mouth pictures compared: the
lips' shape and the teeth's place, not their texture (~76 x 60 pixels)."""
MASK_GROW = 1.35
"""The compared area: an ellipse around the outer lips, this many times their half-size."""
COVERED_BELOW = 0.6
"""Best likeness to the person's bank mouths under which the mouth counts as covered."""
CLEAR_ABOVE = 0.72
"""Likeness above which a covered mouth counts as seen again (in between: as it was)."""
FADE_IN_FRAMES = 3
"""Frames over which the synced mouth fades back in after a cover; it goes at once."""
COVER_AFTER = 2
"""Frames in a row under COVERED_BELOW that make a cover (d12's frame 41, a jump onto a
turned, open grin the bank never saw, reads 0.57 alone)."""
APART_MS = 1000.0
"""Bank mouths closer in time than this to a frame are not compared with it: the bank pass
samples 5 frames a second, and a hand held over the mouth for a second is in the bank too."""
RECENT = 6
"""This face's last clearly seen mouths that a frame is compared with, besides the bank."""


def mouth_picture(image: np.ndarray, axes: FaceAxes) -> np.ndarray:
    """The face's canonical window at PICTURE_PX_PER_S, grey float32 less 128 (-128-127:
    centred, so `likeness`'s float32 sums keep their precision)."""
    grey = cv2.cvtColor(canonical_window(image, axes, PICTURE_PX_PER_S), cv2.COLOR_RGB2GRAY)
    return grey.astype(np.float32) - 128.0


def picture_mask(uv: np.ndarray) -> np.ndarray:
    """Boolean mask of the compared area in a mouth picture: an ellipse around the outer lips
    (uv: 68 landmarks in local s units)."""
    width, height = canonical_size(PICTURE_PX_PER_S)
    px = local_to_canonical(np.asarray(uv, dtype=np.float64)[48:60], PICTURE_PX_PER_S)
    centre = px.mean(axis=0)
    half = (px.max(axis=0) - px.min(axis=0)) / 2 * MASK_GROW + 2
    mask = np.zeros((height, width), np.uint8)
    cv2.ellipse(mask, (int(round(centre[0])), int(round(centre[1]))), (int(round(half[0])), int(round(half[1]))),
                0, 0, 360, 1, -1)
    return mask > 0


def bank_pictures(bank: MouthBank) -> np.ndarray:
    """K x H x W grey pictures of the bank's samples, at PICTURE_PX_PER_S (each sample's
    texture is the same canonical window at its own resolution)."""
    size = canonical_size(PICTURE_PX_PER_S)
    pictures = [cv2.resize(cv2.cvtColor(sample.patch, cv2.COLOR_RGB2GRAY), size, interpolation=cv2.INTER_AREA)
                for sample in bank.samples]
    if not pictures:
        return np.zeros((0, size[1], size[0]), np.float32)
    return np.stack(pictures).astype(np.float32) - 128.0  # as `mouth_picture`


def similarities(picture: np.ndarray, mask: np.ndarray, pictures: np.ndarray,
                 squares: np.ndarray | None = None) -> np.ndarray:
    """Normalised cross-correlation (-1 to 1) of `picture` with each of `pictures` over `mask`
    (`squares`: the pictures squared, when the caller keeps them).

    As three matrix-vector products over the whole window with the mask as weights (no
    masked copies of the K pictures: ~0.05 ms for 48 of them)."""
    weights = mask.ravel().astype(np.float32)
    count = max(float(weights.sum()), 1.0)
    refs = pictures.reshape(len(pictures), -1)
    squares = refs * refs if squares is None else squares.reshape(len(pictures), -1)
    x = picture.ravel().astype(np.float32) * weights
    centred = x - (x.sum() / count) * weights  # zero outside the mask, zero-mean inside
    sums = refs @ weights
    spread = squares @ weights - sums * sums / count
    norms = np.sqrt(np.maximum(spread, 0.0) * float(centred @ centred))
    return (refs @ centred) / np.maximum(norms, 1e-6)


def likeness(picture: np.ndarray, mask: np.ndarray, pictures: np.ndarray) -> float:
    """The best of `similarities`; 1.0 when there is nothing to compare against (no bank:
    nothing to say) or the mask is too small to judge."""
    if len(pictures) == 0 or mask.sum() < 16:
        return 1.0
    return float(np.max(similarities(picture, mask, pictures)))


@dataclass
class OcclusionGate:
    """How much of the synced mouth to show (0-1), frame by frame.

    The frame's mouth picture is compared with the person's bank mouths and with the last
    RECENT frames of this face whose mouth was clearly seen (the bank is sampled 5 times a
    second and leaves out turned or blurred faces, so a sudden grin on a turned head can
    look like none of it, while it looks like the frame before). Under COVERED_BELOW for
    COVER_AFTER frames in a row the mouth counts as covered and nothing is shown from then
    on (a hand coming in must not get a mouth painted on it; one odd frame, a camera jump
    onto a turned grin, is not a cover); above CLEAR_ABOVE it is shown again, faded in over
    FADE_IN_FRAMES; in between it keeps its course, so a likeness wavering at one threshold
    does not flicker."""

    covered: bool = False
    shown: float = 1.0
    low_run: int = 0  # frames in a row under COVERED_BELOW
    recent: deque = field(default_factory=lambda: deque(maxlen=RECENT))

    def update(self, picture: np.ndarray, mask: np.ndarray, bank: np.ndarray, bank_times: np.ndarray,
               now_ms: float, bank_squares: np.ndarray | None = None) -> float:
        """The share to show for this frame's `picture` (`mouth_picture`) over `mask` at
        `now_ms`, given the bank's pictures (`bank_pictures`, and squared when kept) and
        their times (ms): those within APART_MS of now are left out, so that a cover the
        bank pass sampled does not vouch for itself, once this face has clearly seen frames
        of its own to go by (at its start every bank mouth counts: in a shot under two
        seconds all of the person's bank mouths are near). A face whose mouth has not yet been
        clearly seen in this track is never hidden: a shot whose mouths look like none of the
        bank's (another light, a pose the bank lacks) is synced as before, not left unsynced
        whole; a cover from a track's first frame is therefore not caught."""
        far = np.abs(np.asarray(bank_times, dtype=np.float64) - now_ms) > APART_MS
        if not self.recent:  # a track's start: every bank mouth, else a short shot's are all near
            far = np.ones(len(bank_times), bool)
        if mask.sum() < 16 or not (far.any() or self.recent):
            like = 1.0  # nothing to judge, or nothing to compare against
        else:
            like = float(np.max(similarities(picture, mask, bank, bank_squares)[far])) if far.any() else -1.0
            if self.recent and like <= CLEAR_ABOVE:  # the bank alone did not recognise it
                like = max(like, likeness(picture, mask, np.stack(self.recent)))
        if like > CLEAR_ABOVE:
            self.recent.append(picture)
        elif not self.recent:
            return self.step(CLEAR_ABOVE)  # never clearly seen in this track: no grounds to hide it
        return self.step(like)

    def step(self, like: float) -> float:
        """The share to show after a frame whose mouth's likeness is `like`."""
        self.low_run = self.low_run + 1 if like < COVERED_BELOW else 0
        if self.low_run >= COVER_AFTER:
            self.covered = True
        elif like > CLEAR_ABOVE:
            self.covered = False
        self.shown = 0.0 if self.covered else min(1.0, self.shown + 1.0 / FADE_IN_FRAMES)
        return self.shown

