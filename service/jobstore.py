"""Job records and an in-memory store with a TTL.

A JobRecord is plain data (JSON in and out through `to_dict` / `from_dict`), so the same
record lives in memory (JobStore, the embedded queue) or in Redis (RedisJobStore, shared
by the server and its Celery workers): the store is the only thing that knows where
records are kept, and both apply the same state changes. Every state change is logged as one key=value
line with the job id (`event=job_running job_id=... kind=...`).

States: queued -> running -> succeeded | failed | cancelled (queued -> cancelled too). A job
whose worker died is claimed again (running -> running, `attempts` counts the runs).
A cancelled job's `error_status` says who stopped it, whether it was queued or running:
499 its client (DELETE /jobs/{id}, or the sync request went away), 503 the server's
shutdown (retry, on another instance or later). A failed one carries the 4xx/5xx of its error.
Progress percent never goes down; it reaches 100 only when the job succeeds.
"""
from __future__ import annotations

import copy
import json
import logging
import os
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

log = logging.getLogger("service.events")

PENDING_TTL_S = 7 * 86400.0
"""How long Redis keeps a record that has not finished (a job whose every worker vanished), s."""

QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED = "queued", "running", "succeeded", "failed", "cancelled"
STATES = (QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED)
FINAL_STATES = frozenset({SUCCEEDED, FAILED, CANCELLED})


def log_event(event: str, job_id: str, level: int = logging.INFO, **fields: Any) -> None:
    """One structured log line: `event=NAME job_id=ID key=value ...` (values with spaces quoted)."""
    parts = [f"event={event}", f"job_id={job_id}"]
    for key, value in fields.items():
        if value is None:
            continue
        text = f"{value:.3f}" if isinstance(value, float) else str(value)
        if not text or any(c in text for c in ' "='):
            text = '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
        parts.append(f"{key}={text}")
    log.log(level, " ".join(parts))


def configure_logging() -> None:
    """One key=value line per event on stderr, unless logging is configured already
    (uvicorn --log-config, pytest). Level from LIPSYNC_LOG_LEVEL (default INFO)."""
    root = logging.getLogger()
    if root.handlers:
        return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("ts=%(asctime)s level=%(levelname)s logger=%(name)s %(message)s"))
    root.addHandler(handler)
    root.setLevel(os.environ.get("LIPSYNC_LOG_LEVEL", "INFO").upper())
    for noisy in ("httpx", "httpcore"):  # their INFO lines print full URLs: presigned signatures
        logging.getLogger(noisy).setLevel(logging.WARNING)


def new_job_id() -> str:
    return uuid.uuid4().hex


class _Over(Exception):
    """A claimed job already ended (cancelled while queued, or done before a redelivery)."""


@dataclass
class JobProgress:
    """Where a job is: `phase` (queued, fetch, detect, lipsync, upload, done), the current
    phase's frames (inputs for fetch, files for upload) and the whole job's percent 0-100."""

    phase: str = "queued"
    frames_done: int = 0
    frames_total: int = 0
    percent: float = 0.0


def frames_processed(result: dict | None, progress: JobProgress) -> int:
    """The frames a succeeded job went through, for its final progress: the output's frames
    (lipsync) or the sampled frames (detect-faces), not the last phase's unit (upload: files)."""
    if isinstance(result, dict):
        if isinstance(result.get("output"), dict) and "frame_count" in result["output"]:
            return int(result["output"]["frame_count"])
        if isinstance(result.get("frames"), list):
            return len(result["frames"])
    return progress.frames_done


@dataclass
class JobRecord:
    """Everything known about one job. Times are Unix epoch seconds."""

    job_id: str
    kind: str  # "lipsync" or "detect-faces"
    request: dict  # the request body as sent (it may hold a presigned URL: never logged)
    webhook_url: str | None = None
    state: str = QUEUED
    progress: JobProgress = field(default_factory=JobProgress)
    result: dict | None = None
    error: str | None = None
    error_status: int | None = None  # the HTTP status the sync endpoint would answer
    error_details: dict = field(default_factory=dict)
    failure_reason: str | None = None  # error type, for metrics
    webhook: dict | None = None  # delivery outcome: delivered, attempts, status_code, error
    created_at: float = field(default_factory=time.time)
    started_at: float | None = None
    finished_at: float | None = None
    attempts: int = 0  # runs started: more than 1 when a worker died and the job was redelivered
    worker: str | None = None  # the queue worker that ran it last (queue mode)
    version: int = 0  # bumped on every change, so watchers can tell something moved

    @property
    def finished(self) -> bool:
        return self.state in FINAL_STATES

    def to_dict(self) -> dict:
        """The whole record as JSON-able data (for a durable store or queue)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "JobRecord":
        data = dict(data)
        data["progress"] = JobProgress(**data.get("progress", {}))
        return cls(**data)

    def public_json(self) -> dict:
        """What GET /jobs/{id} shows: no request body (it may carry a presigned URL)."""
        body = {
            "job_id": self.job_id, "kind": self.kind, "state": self.state,
            "progress": asdict(self.progress),
            "created_at": self.created_at, "started_at": self.started_at, "finished_at": self.finished_at,
            "result": self.result, "error": self.error, "attempts": self.attempts,
        }
        if self.worker is not None:
            body["worker"] = self.worker
        if self.error is not None:
            body["error_status"] = self.error_status
            body.update({k: v for k, v in self.error_details.items() if k not in body})
        if self.webhook is not None:
            body["webhook"] = self.webhook
        return body


class JobStore:
    """Records by id, thread-safe; finished records are dropped `ttl_s` after they end.

    Readers get deep copies (snapshots), so a record never changes under them.
    """

    def __init__(self, ttl_s: float = 3600.0, clock: Callable[[], float] = time.time) -> None:
        self.ttl_s = ttl_s
        self.clock = clock
        self._records: dict[str, JobRecord] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._records)

    def add(self, record: JobRecord) -> None:
        self.purge()
        with self._lock:
            if record.job_id in self._records:
                raise KeyError(f"job {record.job_id} already exists")
            self._records[record.job_id] = copy.deepcopy(record)
        log_event("job_queued", record.job_id, kind=record.kind)

    def get(self, job_id: str) -> JobRecord | None:
        self.purge()
        with self._lock:
            record = self._records.get(job_id)
            return copy.deepcopy(record) if record is not None else None

    def remove(self, job_id: str) -> None:
        """Forget a record at once (a submission the queue refused)."""
        with self._lock:
            self._records.pop(job_id, None)

    def ids(self) -> list[str]:
        with self._lock:
            return list(self._records)

    def purge(self) -> int:
        """Drop finished records older than the TTL; returns how many went."""
        cutoff = self.clock() - self.ttl_s
        with self._lock:
            old = [job_id for job_id, r in self._records.items()
                   if r.finished_at is not None and r.finished_at < cutoff]
            for job_id in old:
                del self._records[job_id]
        return len(old)

    def _change(self, job_id: str, apply: Callable[[JobRecord], None]) -> JobRecord:
        with self._lock:
            record = self._records[job_id]
            apply(record)
            record.version += 1
            return copy.deepcopy(record)

    def start(self, job_id: str) -> JobRecord:
        """queued -> running (the embedded queue); ValueError from any other state."""
        def apply(record: JobRecord) -> None:
            if record.state != QUEUED:
                raise ValueError(f"job {job_id} is {record.state}, cannot start")
            record.state, record.started_at, record.attempts = RUNNING, self.clock(), record.attempts + 1
        record = self._change(job_id, apply)
        log_event("job_running", job_id, kind=record.kind, waited_s=record.started_at - record.created_at)
        return record

    def claim(self, job_id: str, worker: str | None = None) -> JobRecord | None:
        """A worker takes a job: queued -> running, or running -> running again when the job was
        redelivered after its worker died. None when the job is over or unknown (skip it)."""
        def apply(record: JobRecord) -> None:
            if record.finished:
                raise _Over()
            if record.state == QUEUED:
                record.state, record.started_at = RUNNING, self.clock()
            record.attempts, record.worker = record.attempts + 1, worker
        try:
            record = self._change(job_id, apply)
        except (_Over, KeyError):
            return None
        log_event("job_running", job_id, kind=record.kind, attempt=record.attempts, worker=worker,
                  waited_s=record.started_at - record.created_at)
        return record

    def progress(self, job_id: str, phase: str, frames_done: int, frames_total: int, percent: float) -> None:
        """Record progress; percent is clamped to [previous, 99.9] until the job succeeds."""
        def apply(record: JobRecord) -> None:
            if record.finished:
                return
            record.progress = JobProgress(phase, frames_done, frames_total,
                                          round(max(record.progress.percent, min(99.9, percent)), 1))
        self._change(job_id, apply)

    def finish(self, job_id: str, state: str, result: dict | None = None, error: str | None = None,
               error_status: int | None = None, error_details: dict | None = None,
               failure_reason: str | None = None, only_if_queued: bool = False) -> JobRecord:
        """End a job once; a second call is ignored (returns the record as it is).
        only_if_queued: end it only if it has not started (a cancel racing a worker's claim)."""
        if state not in FINAL_STATES:
            raise ValueError(f"{state!r} is not a final state")
        changed = {"now": False}

        def apply(record: JobRecord) -> None:
            changed["now"] = not record.finished and not (only_if_queued and record.state != QUEUED)
            if not changed["now"]:
                return
            record.state, record.finished_at = state, self.clock()
            record.result, record.error, record.error_status = result, error, error_status
            record.error_details, record.failure_reason = dict(error_details or {}), failure_reason
            if state == SUCCEEDED:
                frames = frames_processed(result, record.progress)
                record.progress = JobProgress("done", frames, frames, 100.0)
        record = self._change(job_id, apply)
        if changed["now"]:
            run_s = record.finished_at - record.started_at if record.started_at else None
            log_event(f"job_{state}", job_id, level=logging.WARNING if state == FAILED else logging.INFO,
                      kind=record.kind, run_s=run_s, reason=failure_reason, error=error)
        return record

    def set_webhook(self, job_id: str, outcome: dict) -> None:
        def apply(record: JobRecord) -> None:
            record.webhook = dict(outcome)
        self._change(job_id, apply)


class RedisJobStore(JobStore):
    """The same records in Redis, shared by the server and its workers (queue mode).

    One JSON value per job at `{prefix}job:{id}`. Each change is a WATCH/MULTI transaction,
    so a worker's progress and a client's cancel never overwrite each other. Finished
    records expire `ttl_s` after they end; unfinished ones after PENDING_TTL_S.
    """

    def __init__(self, client, ttl_s: float = 3600.0, prefix: str = "lipsync:",
                 clock: Callable[[], float] = time.time) -> None:
        super().__init__(ttl_s, clock)
        self.client = client
        self.prefix = prefix

    def key(self, job_id: str) -> str:
        return f"{self.prefix}job:{job_id}"

    def _expiry(self, record: JobRecord) -> int:
        return max(1, int(self.ttl_s if record.finished else PENDING_TTL_S))

    def __len__(self) -> int:
        return len(self.ids())

    def add(self, record: JobRecord) -> None:
        value = json.dumps(record.to_dict())
        if not self.client.set(self.key(record.job_id), value, nx=True, ex=self._expiry(record)):
            raise KeyError(f"job {record.job_id} already exists")
        log_event("job_queued", record.job_id, kind=record.kind)

    def get(self, job_id: str) -> JobRecord | None:
        raw = self.client.get(self.key(job_id))
        return JobRecord.from_dict(json.loads(raw)) if raw is not None else None

    def remove(self, job_id: str) -> None:
        self.client.delete(self.key(job_id))

    def ids(self) -> list[str]:
        start = len(self.key(""))
        return [_text(key)[start:] for key in self.client.scan_iter(match=self.key("*"), count=500)]

    def purge(self) -> int:
        """Redis drops expired records itself."""
        return 0

    def _change(self, job_id: str, apply: Callable[[JobRecord], None]) -> JobRecord:
        key = self.key(job_id)
        changed: list[JobRecord] = []

        def transaction(pipe) -> None:
            raw = pipe.get(key)
            if raw is None:
                raise KeyError(job_id)
            record = JobRecord.from_dict(json.loads(raw))
            apply(record)
            record.version += 1
            pipe.multi()
            pipe.set(key, json.dumps(record.to_dict()), ex=self._expiry(record))
            changed[:] = [record]

        self.client.transaction(transaction, key)
        return changed[0]


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
