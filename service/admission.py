"""Admission control and limits: a bounded FIFO queue served by `concurrency` workers.

Sync requests and async jobs share one queue, so a burst never piles up unbounded work
or memory: beyond `max_waiting` waiting jobs a submission is refused at once (the server
answers 503 with Retry-After). Jobs start in the order they were admitted.

Env vars (read by `Limits.from_env`):

  LIPSYNC_CONCURRENCY        pipelines running at once; default 1 (one per GPU or CPU box)
  LIPSYNC_MAX_WAITING        jobs waiting for a worker before submissions get 503; default 8
  LIPSYNC_RETRY_AFTER_S      the Retry-After header of a 503, seconds; default 30
  LIPSYNC_MAX_BODY_BYTES     largest request body, bytes (413 above); default 1048576 (1 MiB)
  LIPSYNC_MAX_DURATION_S     longest input video or audio, seconds, by its packets' timestamps (422 above); default 600
  LIPSYNC_MAX_PIXELS         largest video frame, width x height pixels, every frame (422 above); default 8294400 (3840x2160)
  LIPSYNC_MAX_FACES          most entries in a lipsync request's `faces` (422 above); default 16
  LIPSYNC_MAX_CHARACTERS     most entries in a detect-faces request's `characters` (422 above); default 16
  LIPSYNC_MAX_HEADSHOT_PIXELS  largest reference headshot, width x height pixels, checked before decoding
                             (422 above); default 16777216 (4096x4096)
  LIPSYNC_SHUTDOWN_GRACE_S   on shutdown, how long running jobs may finish before they are cancelled; default 30
  LIPSYNC_JOB_TTL_S          how long a finished job's record stays readable at /jobs/{id}; default 3600
"""
from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from dataclasses import dataclass, fields
from typing import Callable, Mapping

from stream.errors import InputError, LipSyncError

log = logging.getLogger(__name__)


class Busy(Exception):
    """The waiting queue is full: try again later (HTTP 503)."""


class ShuttingDown(Busy):
    """The server is stopping and admits nothing new (HTTP 503)."""


_LIMIT_ENV = {
    "concurrency": "LIPSYNC_CONCURRENCY",
    "max_waiting": "LIPSYNC_MAX_WAITING",
    "retry_after_s": "LIPSYNC_RETRY_AFTER_S",
    "max_body_bytes": "LIPSYNC_MAX_BODY_BYTES",
    "max_duration_s": "LIPSYNC_MAX_DURATION_S",
    "max_pixels": "LIPSYNC_MAX_PIXELS",
    "max_faces": "LIPSYNC_MAX_FACES",
    "max_characters": "LIPSYNC_MAX_CHARACTERS",
    "max_headshot_pixels": "LIPSYNC_MAX_HEADSHOT_PIXELS",
    "shutdown_grace_s": "LIPSYNC_SHUTDOWN_GRACE_S",
    "job_ttl_s": "LIPSYNC_JOB_TTL_S",
}


@dataclass(frozen=True)
class Limits:
    """What the server admits; each field has an env var twin (see the module docstring)."""

    concurrency: int = 1
    max_waiting: int = 8
    retry_after_s: int = 30
    max_body_bytes: int = 1 << 20
    max_duration_s: float = 600.0
    max_pixels: int = 3840 * 2160
    max_faces: int = 16
    max_characters: int = 16
    max_headshot_pixels: int = 4096 * 4096
    shutdown_grace_s: float = 30.0
    job_ttl_s: float = 3600.0

    def __post_init__(self) -> None:
        if self.concurrency < 1 or self.max_waiting < 0 or self.max_body_bytes < 1:
            raise ValueError("Limits: concurrency must be >= 1, max_waiting >= 0, max_body_bytes >= 1")
        if self.max_duration_s <= 0 or self.max_pixels <= 0 or self.shutdown_grace_s < 0 or self.job_ttl_s < 0:
            raise ValueError("Limits: max_duration_s and max_pixels must be > 0, grace and TTL >= 0")
        if self.max_faces < 1 or self.max_characters < 0 or self.max_headshot_pixels < 1:
            raise ValueError("Limits: max_faces and max_headshot_pixels must be >= 1, max_characters >= 0")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "Limits":
        env = os.environ if environ is None else environ
        values = {}
        for field in fields(cls):
            raw = env.get(_LIMIT_ENV[field.name], "").strip()
            if not raw:
                continue
            cast = int if field.type in ("int", int) else float
            try:
                values[field.name] = cast(raw)
            except ValueError:
                raise ValueError(f"{_LIMIT_ENV[field.name]}={raw!r} is not a valid {cast.__name__}") from None
        return cls(**values)

    def probe_limits(self, kind: str) -> dict:
        """What `jobs.probe.probe_media` checks while it reads an input of this kind."""
        if kind == "image":
            return {"max_pixels": self.max_headshot_pixels}
        return {"max_duration_s": self.max_duration_s, "max_pixels": self.max_pixels if kind == "video" else None}

    def check_counts(self, faces: int, characters: int) -> None:
        """Refuse (422) a request with more faces or characters than one job may cost."""
        for count, most, field, env in ((faces, self.max_faces, "faces", "LIPSYNC_MAX_FACES"),
                                        (characters, self.max_characters, "characters", "LIPSYNC_MAX_CHARACTERS")):
            if count > most:
                raise InputError(f"field '{field}' has {count} entries; this server accepts at most {most} "
                                 f"per request ({env})")

    def check_media(self, label: str, duration_s: float | None, width: int | None, height: int | None) -> None:
        """Refuse (422) an input longer than max_duration_s or larger than max_pixels."""
        if duration_s is not None and duration_s > self.max_duration_s:
            raise InputError(f"{label}: the input is {duration_s:.1f} s long; this server accepts at most "
                             f"{self.max_duration_s:g} s (LIPSYNC_MAX_DURATION_S); send a shorter clip")
        if width and height and width * height > self.max_pixels:
            raise InputError(f"{label}: the video is {width}x{height} ({width * height} pixels per frame); this "
                             f"server accepts at most {self.max_pixels} pixels (LIPSYNC_MAX_PIXELS); "
                             "send a smaller resolution")


@dataclass
class _Ticket:
    job_id: str
    run: Callable[[], None]


class Admission:
    """A bounded FIFO of jobs and the worker threads that run them, `concurrency` at a time.

    A submission is refused (Busy) when `max_waiting` jobs already wait with every worker
    busy, and (ShuttingDown) once `close()` was called. `run` callables must handle their
    own errors; one that raises is logged and the worker carries on.
    """

    def __init__(self, concurrency: int = 1, max_waiting: int = 8, name: str = "job-worker") -> None:
        if concurrency < 1 or max_waiting < 0:
            raise ValueError("concurrency must be >= 1 and max_waiting >= 0")
        self.concurrency = concurrency
        self.max_waiting = max_waiting
        self.name = name
        self._cond = threading.Condition()
        self._queue: deque[_Ticket] = deque()
        self._running: set[str] = set()
        self._workers: list[threading.Thread] = []
        self._closed = False

    @property
    def running(self) -> int:
        with self._cond:
            return len(self._running)

    @property
    def waiting(self) -> int:
        with self._cond:
            return len(self._queue)

    @property
    def closed(self) -> bool:
        return self._closed

    def submit(self, job_id: str, run: Callable[[], None]) -> None:
        """Queue `run` behind the jobs already admitted, or raise Busy / ShuttingDown."""
        with self._cond:
            if self._closed:
                raise ShuttingDown("the server is shutting down and accepts no new jobs; retry on another instance")
            free = self.concurrency - len(self._running)
            if len(self._queue) - max(0, free) >= self.max_waiting:
                raise Busy(f"{len(self._running)} job(s) running and {len(self._queue)} waiting "
                           f"(queue limit {self.max_waiting}); retry later")
            self._queue.append(_Ticket(job_id, run))
            if len(self._workers) < self.concurrency:
                worker = threading.Thread(target=self._work, name=f"{self.name}-{len(self._workers) + 1}",
                                          daemon=True)
                self._workers.append(worker)
                worker.start()
            self._cond.notify()

    def withdraw(self, job_id: str) -> bool:
        """Remove a job that has not started; False when it is running, done or unknown."""
        with self._cond:
            for ticket in self._queue:
                if ticket.job_id == job_id:
                    self._queue.remove(ticket)
                    self._cond.notify_all()
                    return True
        return False

    def position(self, job_id: str) -> int | None:
        """0 for the next job to start, None when not waiting."""
        with self._cond:
            for index, ticket in enumerate(self._queue):
                if ticket.job_id == job_id:
                    return index
        return None

    def close(self) -> list[str]:
        """Admit nothing more; drop the waiting jobs and return their ids (the caller cancels them)."""
        with self._cond:
            self._closed = True
            dropped = [ticket.job_id for ticket in self._queue]
            self._queue.clear()
            self._cond.notify_all()
        return dropped

    def wait_idle(self, timeout_s: float) -> bool:
        """Block until no job runs or waits, at most timeout_s; True if idle."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while self._running or self._queue:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def join(self, timeout_s: float) -> bool:
        """After close(): wait for the workers to leave; True when all did."""
        deadline = time.monotonic() + timeout_s
        for worker in list(self._workers):
            worker.join(max(0.0, deadline - time.monotonic()))
        return not any(worker.is_alive() for worker in self._workers)

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closed:
                    self._cond.wait()
                if not self._queue:
                    return
                ticket = self._queue.popleft()
                self._running.add(ticket.job_id)
            try:
                ticket.run()
            except Exception:  # noqa: BLE001 - a job's own handler failed; keep serving
                log.exception("event=worker_error job_id=%s", ticket.job_id)
            finally:
                with self._cond:
                    self._running.discard(ticket.job_id)
                    self._cond.notify_all()


class BodyTooLarge(LipSyncError):
    """A request body over Limits.max_body_bytes (HTTP 413)."""

    status_code = 413
