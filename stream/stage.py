"""Stage: one unit of work in the pipeline, run by the pipeline in its own thread.

A stage knows nothing about threads or queues: the pipeline calls `open()` once in the
stage's thread, `process(item)` for every item, `flush()` at end of stream (batching
stages emit their partial batch there), and `close()` always, even after an error.
A `Source` produces the items instead of receiving them.
"""
from __future__ import annotations

import threading
from typing import Any, Iterable, Iterator


class Stage:
    name: str = "stage"
    stop_event: threading.Event | None = None
    """Set by the pipeline; long-running code inside a stage may poll it to leave early."""

    def open(self) -> None:
        """Acquire resources (files, models) in the stage's own thread."""

    def process(self, item: Any) -> Iterable[Any]:
        """Handle one item and return the items to pass downstream (zero or more)."""
        return (item,)

    def flush(self) -> Iterable[Any]:
        """End of stream: return what is still held (a partial batch, encoder tail)."""
        return ()

    def close(self) -> None:
        """Release resources. Called once, after success, error or cancellation."""


class Source(Stage):
    """The first stage: it yields items instead of receiving them."""

    def items(self) -> Iterator[Any]:
        raise NotImplementedError


class BatchStage(Stage):
    """A stage that works on batches of up to `batch_size` items and flushes a partial one."""

    batch_size: int = 8

    def __init__(self) -> None:
        self._pending: list[Any] = []

    def process(self, item: Any) -> Iterable[Any]:
        self._pending.append(item)
        if len(self._pending) >= self.batch_size:
            return self._run_pending()
        return ()

    def flush(self) -> Iterable[Any]:
        return self._run_pending() if self._pending else ()

    def _run_pending(self) -> list[Any]:
        batch, self._pending = self._pending, []
        return self.process_batch(batch)

    def process_batch(self, batch: list[Any]) -> list[Any]:
        raise NotImplementedError


class FunctionStage(Stage):
    """Wraps a plain function item -> item (or None to drop), for simple steps and tests."""

    def __init__(self, name: str, function) -> None:
        self.name = name
        self.function = function

    def process(self, item: Any) -> Iterable[Any]:
        result = self.function(item)
        return () if result is None else (result,)
