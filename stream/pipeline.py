"""Pipeline: wires a Source and Stages with bounded queues, one thread per stage.

- Backpressure: a full queue blocks its producer, so memory is bounded by queue sizes.
- End of stream: the END sentinel; each stage flushes, forwards END, and exits.
- Errors: the first exception in any stage wins. The stop event is set, every thread
  leaves (all queue waits poll the event), the queues are drained, `close()` runs on every
  stage, and `run()` re-raises that original exception with `.stage` set to the stage's
  name (and a note saying so). A stage stuck inside its own code cannot be killed in
  Python; its thread is a daemon and `run()` still returns within `join_timeout_s`.
- Cancellation: `cancel()` from any thread (client gone, shutdown, timeout) raises
  PipelineCancelled from `run()` with the same clean exit.
- Native thread pools: while a pipeline runs, OpenCV runs each call on the calling stage's
  thread (`stream.native`): the stages are the parallelism.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Any, Callable, Sequence

from stream.metrics import PipelineMetrics, StageMetrics
from stream.native import one_opencv_thread
from stream.stage import Source, Stage

log = logging.getLogger(__name__)

END = object()
"""End-of-stream sentinel: forwarded by every stage after it has flushed."""

_POLL_S = 0.05


class _Output(Stage):
    name = "output"


_OUTPUT = _Output()


class PipelineCancelled(Exception):
    """The pipeline was stopped from outside before it finished."""


class Pipeline:
    def __init__(self, source: Source, stages: Sequence[Stage] = (), queue_size: int = 8,
                 join_timeout_s: float = 5.0) -> None:
        self.source = source
        self.stages = list(stages)
        self.queue_size = queue_size
        self.join_timeout_s = join_timeout_s
        self.stop_event = threading.Event()
        self.metrics = PipelineMetrics([StageMetrics(s.name) for s in [source, *self.stages]])
        self._queues = [queue.Queue(maxsize=queue_size) for _ in range(len(self.stages) + 1)]
        self._error: BaseException | None = None
        self._error_stage = ""
        self._cancel_reason: str | None = None
        self._lock = threading.Lock()
        for stage in [source, *self.stages]:
            stage.stop_event = self.stop_event

    # ---- control -------------------------------------------------------------------
    def cancel(self, reason: str = "cancelled") -> None:
        """Stop the run from any thread; `run()` raises PipelineCancelled(reason)."""
        with self._lock:
            if self._error is None and self._cancel_reason is None:
                self._cancel_reason = reason
        self.stop_event.set()

    def _fail(self, stage: Stage, exc: BaseException) -> None:
        with self._lock:
            if self._error is None and self._cancel_reason is None:
                self._error, self._error_stage = exc, stage.name
        self.stop_event.set()

    # ---- queue helpers that never block forever ------------------------------------------
    def _put(self, q: queue.Queue, item: Any, metrics: StageMetrics) -> bool:
        start = time.perf_counter()
        try:
            while not self.stop_event.is_set():
                try:
                    q.put(item, timeout=_POLL_S)
                    return True
                except queue.Full:
                    continue
            return False
        finally:
            metrics.add(wait_out_s=time.perf_counter() - start)

    def _get(self, q: queue.Queue, metrics: StageMetrics | None) -> Any:
        start = time.perf_counter()
        try:
            while not self.stop_event.is_set():
                try:
                    return q.get(timeout=_POLL_S)
                except queue.Empty:
                    continue
            return END
        finally:
            if metrics is not None:
                metrics.add(wait_in_s=time.perf_counter() - start)

    # ---- threads ---------------------------------------------------------------------
    def _run_source(self) -> None:
        metrics, out = self.metrics.stages[0], self._queues[0]
        try:
            self.source.open()
            iterator = iter(self.source.items())
            while not self.stop_event.is_set():
                start, cpu = time.perf_counter(), time.thread_time()
                try:
                    item = next(iterator)
                except StopIteration:
                    metrics.add(busy_s=time.perf_counter() - start, cpu_s=time.thread_time() - cpu)
                    break
                metrics.add(items_in=1, items_out=1, busy_s=time.perf_counter() - start,
                            cpu_s=time.thread_time() - cpu)
                if not self._put(out, item, metrics):
                    return
            self._put(out, END, metrics)
        except BaseException as exc:  # noqa: BLE001 - every failure must reach the caller
            self._fail(self.source, exc)
        finally:
            self._close(self.source)

    def _run_stage(self, index: int) -> None:
        stage = self.stages[index]
        metrics = self.metrics.stages[index + 1]
        inbox, out = self._queues[index], self._queues[index + 1]
        try:
            stage.open()
            while True:
                item = self._get(inbox, metrics)
                if self.stop_event.is_set():
                    return
                start, cpu = time.perf_counter(), time.thread_time()
                if item is END:
                    results = list(stage.flush())
                    metrics.add(items_out=len(results), busy_s=time.perf_counter() - start,
                                cpu_s=time.thread_time() - cpu)
                    for result in results:
                        if not self._put(out, result, metrics):
                            return
                    self._put(out, END, metrics)
                    return
                results = list(stage.process(item))
                metrics.add(items_in=1, items_out=len(results), busy_s=time.perf_counter() - start,
                            cpu_s=time.thread_time() - cpu)
                for result in results:
                    if not self._put(out, result, metrics):
                        return
        except BaseException as exc:  # noqa: BLE001
            self._fail(stage, exc)
        finally:
            self._close(stage)

    def _close(self, stage: Stage) -> None:
        try:
            stage.close()
        except BaseException as exc:  # noqa: BLE001
            log.warning("stage %s failed to close: %r", stage.name, exc)
            self._fail(stage, exc)

    # ---- run -------------------------------------------------------------------------
    def run(self, on_output: Callable[[Any], None] | None = None,
            timeout_s: float | None = None) -> PipelineMetrics:
        """Run to completion in the calling thread, handing each final output to `on_output`."""
        with one_opencv_thread():
            return self._run_threads(on_output, timeout_s)

    def _run_threads(self, on_output: Callable[[Any], None] | None, timeout_s: float | None) -> PipelineMetrics:
        started = time.perf_counter()
        deadline = None if timeout_s is None else started + timeout_s
        threads = [threading.Thread(target=self._run_source, name=f"stage-{self.source.name}", daemon=True)]
        threads += [threading.Thread(target=self._run_stage, args=(i,), name=f"stage-{s.name}", daemon=True)
                    for i, s in enumerate(self.stages)]
        for thread in threads:
            thread.start()
        last = self._queues[-1]
        try:
            while not self.stop_event.is_set():
                if deadline is not None and time.perf_counter() > deadline:
                    self.cancel(f"timed out after {timeout_s:.0f} s")
                    break
                try:
                    item = last.get(timeout=_POLL_S)
                except queue.Empty:
                    continue
                if item is END:
                    break
                if on_output is not None:
                    on_output(item)
        except KeyboardInterrupt:
            self.cancel("interrupted")
        except BaseException as exc:  # noqa: BLE001 - on_output failed
            self._fail(_OUTPUT, exc)
        finally:
            if self._error is not None or self._cancel_reason is not None:
                self.stop_event.set()
            self._join(threads)
            self.metrics.wall_s = time.perf_counter() - started
        if self._error is not None:
            error = self._error
            error.stage = self._error_stage
            error.add_note(f"raised in pipeline stage '{self._error_stage}'")
            raise error
        if self._cancel_reason is not None:
            raise PipelineCancelled(self._cancel_reason)
        return self.metrics

    def run_inline(self, on_output: Callable[[Any], None] | None = None) -> PipelineMetrics:
        """Run the same stages one after another in the calling thread, with no queues.

        The sequential baseline of the benchmarks (and a debugging aid): same work, no
        overlap. Errors propagate directly; every stage is still closed.
        """
        with one_opencv_thread():
            return self._run_here(on_output)

    def _run_here(self, on_output: Callable[[Any], None] | None) -> PipelineMetrics:
        started = time.perf_counter()
        stages = [self.source, *self.stages]
        clock, cpu_clock = time.perf_counter, time.thread_time

        def push(level: int, items) -> None:
            for item in items:
                if level == len(self.stages):
                    if on_output is not None:
                        on_output(item)
                    continue
                stage, metrics = self.stages[level], self.metrics.stages[level + 1]
                start, cpu = clock(), cpu_clock()
                results = list(stage.process(item))
                metrics.add(items_in=1, items_out=len(results), busy_s=clock() - start, cpu_s=cpu_clock() - cpu)
                push(level + 1, results)

        try:
            for stage in stages:
                stage.open()
            iterator = iter(self.source.items())
            while True:
                start, cpu = clock(), cpu_clock()
                item = next(iterator, END)
                self.metrics.stages[0].add(busy_s=clock() - start, cpu_s=cpu_clock() - cpu, items_in=int(item is not END),
                                           items_out=int(item is not END))
                if item is END:
                    break
                push(0, [item])
            for level, stage in enumerate(self.stages):
                start, cpu = clock(), cpu_clock()
                results = list(stage.flush())
                self.metrics.stages[level + 1].add(items_out=len(results), busy_s=clock() - start,
                                                   cpu_s=cpu_clock() - cpu)
                push(level + 1, results)
        finally:
            for stage in stages:
                self._close(stage)
            self.metrics.wall_s = time.perf_counter() - started
        if self._error is not None:
            raise self._error
        return self.metrics

    def _join(self, threads: list[threading.Thread]) -> None:
        deadline = time.monotonic() + self.join_timeout_s
        for thread in threads:
            while thread.is_alive() and time.monotonic() < deadline:
                if self.stop_event.is_set():
                    self._drain()
                thread.join(timeout=_POLL_S)
            if thread.is_alive():
                log.warning("thread %s did not stop within %.1f s; left as daemon",
                            thread.name, self.join_timeout_s)
        self._drain()

    def _drain(self) -> None:
        for q in self._queues:
            while True:
                try:
                    q.get_nowait()
                except queue.Empty:
                    break
