"""Admission control: at most `concurrency` jobs run, at most `max_waiting` wait.

A job beyond that is refused at once (the server answers 503 with Retry-After), so a
burst never piles up unbounded work or memory.
"""
from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Iterator


class Busy(Exception):
    """The waiting queue is full: try again later."""


class Admission:
    def __init__(self, concurrency: int = 1, max_waiting: int = 8) -> None:
        self.concurrency = concurrency
        self.max_waiting = max_waiting
        self._slots = threading.Semaphore(concurrency)
        self._lock = threading.Lock()
        self.running = 0
        self.waiting = 0

    @contextmanager
    def slot(self, cancelled: threading.Event | None = None) -> Iterator[None]:
        """Hold one running slot for the duration of the block (blocking while queued)."""
        with self._lock:
            if self.waiting >= self.max_waiting:
                raise Busy(f"{self.running} job(s) running and {self.waiting} waiting; retry later")
            self.waiting += 1
        try:
            while not self._slots.acquire(timeout=0.1):
                if cancelled is not None and cancelled.is_set():
                    raise Busy("cancelled while waiting for a free slot")
        finally:
            with self._lock:
                self.waiting -= 1
        with self._lock:
            self.running += 1
        try:
            yield
        finally:
            with self._lock:
                self.running -= 1
            self._slots.release()
