"""Per-stage counters: what each thread did, how long it worked and how long it waited."""
from __future__ import annotations

import threading
from dataclasses import dataclass, field


@dataclass
class StageMetrics:
    """Counters of one stage. Seconds are wall-clock seconds of the stage's own thread.

    busy_s is time inside process()/flush(); wait_in_s is time blocked on an empty input
    queue (starved), wait_out_s time blocked on a full output queue (backpressure).
    cpu_s is the CPU time the stage's own thread spent inside process()/flush()
    (`time.thread_time`): on a machine with few cores, CPU per frame is throughput. It does
    not count threads a library starts itself (FFmpeg's codec threads, onnxruntime's pool).
    fps is items per busy second: how fast the stage would run if never starved.
    """

    name: str
    items_in: int = 0
    items_out: int = 0
    busy_s: float = 0.0
    cpu_s: float = 0.0
    wait_in_s: float = 0.0
    wait_out_s: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @property
    def fps(self) -> float:
        return self.items_in / self.busy_s if self.busy_s > 0 else 0.0

    @property
    def cpu_ms_per_item(self) -> float:
        """CPU milliseconds per item taken in (per frame for most stages)."""
        return 1000 * self.cpu_s / self.items_in if self.items_in else 0.0

    def add(self, *, items_in: int = 0, items_out: int = 0, busy_s: float = 0.0, cpu_s: float = 0.0,
            wait_in_s: float = 0.0, wait_out_s: float = 0.0) -> None:
        with self._lock:
            self.items_in += items_in
            self.items_out += items_out
            self.busy_s += busy_s
            self.cpu_s += cpu_s
            self.wait_in_s += wait_in_s
            self.wait_out_s += wait_out_s

    def as_dict(self) -> dict:
        return {
            "name": self.name, "items_in": self.items_in, "items_out": self.items_out,
            "busy_s": round(self.busy_s, 4), "cpu_s": round(self.cpu_s, 4),
            "cpu_ms_per_item": round(self.cpu_ms_per_item, 2), "wait_in_s": round(self.wait_in_s, 4),
            "wait_out_s": round(self.wait_out_s, 4), "fps": round(self.fps, 2),
        }


@dataclass
class PipelineMetrics:
    """All stages of one run plus its wall time."""

    stages: list[StageMetrics]
    wall_s: float = 0.0

    def stage(self, name: str) -> StageMetrics:
        for metrics in self.stages:
            if metrics.name == name:
                return metrics
        raise KeyError(name)

    def as_dict(self) -> dict:
        return {"wall_s": round(self.wall_s, 4), "stages": [m.as_dict() for m in self.stages]}
