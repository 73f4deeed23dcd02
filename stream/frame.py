"""`Frame`: what flows between stages. Its faces are `models.faces.face.Face`."""
from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from models.faces.face import Face


@dataclass
class Frame:
    """One decoded video frame and what the stages learned about it.

    image is HxWx3 uint8 RGB (numpy on the CPU path, a torch tensor on the GPU path).
    pts is in units of time_base; `time_ms` is the presentation time in milliseconds.
    notes is free space for stages (e.g. lip-sync parameters) keyed by stage name.
    """

    index: int
    pts: int
    time_base: Fraction
    image: Any
    faces: list[Face] = field(default_factory=list)
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def time_ms(self) -> float:
        return float(self.pts * self.time_base * 1000)

    @property
    def height(self) -> int:
        return int(self.image.shape[0])

    @property
    def width(self) -> int:
        return int(self.image.shape[1])
