"""JobContext: how a caller (CLI, server, worker) watches and cancels a running job."""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Callable

from stream.metrics import PipelineMetrics
from stream.pipeline import Pipeline, PipelineCancelled


@dataclass
class Progress:
    """frames_done of frames_total through the last stage of the current phase."""

    phase: str
    frames_done: int
    frames_total: int

    @property
    def fraction(self) -> float:
        return min(1.0, self.frames_done / self.frames_total) if self.frames_total else 0.0


class JobContext:
    """Carries cancellation in and progress out, so jobs know nothing of their caller."""

    def __init__(self, on_progress: Callable[[Progress], None] | None = None,
                 timeout_s: float | None = None, progress_interval_s: float = 0.25) -> None:
        self.on_progress = on_progress
        self.timeout_s = timeout_s
        self.progress_interval_s = progress_interval_s
        self._cancel_reason: str | None = None
        self._pipeline: Pipeline | None = None
        self._lock = threading.Lock()

    @property
    def cancelled(self) -> bool:
        return self._cancel_reason is not None

    def cancel(self, reason: str = "cancelled") -> None:
        with self._lock:
            self._cancel_reason = self._cancel_reason or reason
            pipeline = self._pipeline
        if pipeline is not None:
            pipeline.cancel(reason)

    def check(self) -> None:
        """Raise PipelineCancelled between phases when a cancel came in."""
        if self._cancel_reason is not None:
            raise PipelineCancelled(self._cancel_reason)

    def report(self, phase: str, done: int, total: int) -> None:
        if self.on_progress is not None:
            self.on_progress(Progress(phase, done, total))

    def run(self, phase: str, pipeline: Pipeline, frames_total: int, on_output=None) -> PipelineMetrics:
        """Run one pipeline, reporting the last stage's item count as progress.

        frames_total is an estimate (see `stages.decode.expected_frames`): the count never
        runs past it, and a phase that completes ends at its real count, done/done."""
        with self._lock:
            self.check()
            self._pipeline = pipeline
        stop = threading.Event()
        last = pipeline.metrics.stages[-1]

        def watch() -> None:
            while not stop.wait(self.progress_interval_s):
                done = last.items_in
                self.report(phase, done, max(done, frames_total))

        watcher = threading.Thread(target=watch, name=f"progress-{phase}", daemon=True)
        watcher.start()
        completed = False
        try:
            metrics = pipeline.run(on_output=on_output, timeout_s=self.timeout_s)
            completed = True
            return metrics
        finally:
            stop.set()
            watcher.join()
            with self._lock:
                self._pipeline = None
            done = last.items_in
            self.report(phase, done, done if completed else max(done, frames_total))
