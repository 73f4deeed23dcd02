"""The lip-sync engine interface: the classical and neural engines both implement it.

An engine turns (frame, tracked face, time) plus the job's audio into a patch to blend
into the frame. It knows nothing of queues or HTTP: the lipsync stage batches requests
and the composite stage blends the patches.

A neural engine also has `device` (a torch.device): the pipeline then uploads each frame
it renders to that device once, and the engine takes and returns tensors there. Engines
without one (the classical engine) work on host numpy arrays only.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, Sequence

import numpy as np

from models.faces.face import Face


@dataclass
class MouthRequest:
    """One face in one frame to re-animate.

    image is the full frame, HxWx3 uint8 RGB, read-only: a numpy array, or a torch tensor on
    the engine's device. face carries 68 landmarks (host numpy, as every Face).
    time_ms is the frame's presentation time; strength in [0, 1] scales the effect
    (fades at segment edges so the mouth never pops).
    """

    frame_index: int
    time_ms: float
    image: Any
    face: Face
    track_key: str = ""
    strength: float = 1.0
    bank: Any = None
    """The person's `models.mouth_bank.MouthBank` (real mouths from the video), or None."""


@dataclass
class MouthPatch:
    """A rendered region to blend at (x, y) in the frame: out = alpha*pixels + (1-alpha)*frame.

    pixels is hxwx3 uint8 RGB; alpha is hxw float32 in [0, 1], already feathered and
    already multiplied by the request's strength. Both are numpy arrays for a numpy frame,
    torch tensors on the frame's device for a tensor frame.
    """

    x: int
    y: int
    pixels: Any
    alpha: Any
    truncate: bool = False
    """Blend to uint8 by truncation (the official LivePortrait paste_back) instead of rounding."""


class LipSyncEngine(Protocol):
    name: str
    batch_size: int

    def prepare_audio(self, audio: np.ndarray, sample_rate: int, fps: float) -> Any:
        """Compute the job's audio features once (mono float32 samples in [-1, 1])."""
        ...

    def render(self, requests: Sequence[MouthRequest], audio_features: Any) -> list[MouthPatch]:
        """Render one patch per request, in order."""
        ...
