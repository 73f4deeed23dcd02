"""Job records and an in-memory store with a TTL.

A JobRecord is plain data (JSON in and out through `to_dict` / `from_dict`), so the same
record can later live in Redis or a database behind a real queue: the store is the only
thing that knows where records are kept. Every state change is logged as one key=value
line with the job id (`event=job_running job_id=... kind=...`).

States: queued -> running -> succeeded | failed | cancelled (queued -> cancelled too).
Progress percent never goes down; it reaches 100 only when the job succeeds.
"""
from __future__ import annotations

import copy
import logging
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

log = logging.getLogger("stream.jobs.events")

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


def new_job_id() -> str:
    return uuid.uuid4().hex


@dataclass
class JobProgress:
    """Where a job is: `phase` (queued, fetch, detect, lipsync, upload, done), the current
    phase's frames (inputs for fetch, files for upload) and the whole job's percent 0-100."""

    phase: str = "queued"
    frames_done: int = 0
    frames_total: int = 0
    percent: float = 0.0


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
            "result": self.result, "error": self.error,
        }
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
        def apply(record: JobRecord) -> None:
            if record.state != QUEUED:
                raise ValueError(f"job {job_id} is {record.state}, cannot start")
            record.state, record.started_at = RUNNING, self.clock()
        record = self._change(job_id, apply)
        log_event("job_running", job_id, kind=record.kind, waited_s=record.started_at - record.created_at)
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
               failure_reason: str | None = None) -> JobRecord:
        """End a job once; a second call is ignored (returns the record as it is)."""
        if state not in FINAL_STATES:
            raise ValueError(f"{state!r} is not a final state")
        changed = []

        def apply(record: JobRecord) -> None:
            if record.finished:
                return
            changed.append(True)
            record.state, record.finished_at = state, self.clock()
            record.result, record.error, record.error_status = result, error, error_status
            record.error_details, record.failure_reason = dict(error_details or {}), failure_reason
            if state == SUCCEEDED:
                record.progress = JobProgress("done", record.progress.frames_done,
                                              record.progress.frames_total, 100.0)
        record = self._change(job_id, apply)
        if changed:
            run_s = record.finished_at - record.started_at if record.started_at else None
            log_event(f"job_{state}", job_id, level=logging.WARNING if state == FAILED else logging.INFO,
                      kind=record.kind, run_s=run_s, reason=failure_reason, error=error)
        return record

    def set_webhook(self, job_id: str, outcome: dict) -> None:
        def apply(record: JobRecord) -> None:
            record.webhook = dict(outcome)
        self._change(job_id, apply)
