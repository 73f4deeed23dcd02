"""Scale-out: jobs through Celery on a Redis broker to any number of workers.

With LIPSYNC_QUEUE=redis://host:port/db the server is a thin front (`QueueService`): it
checks and admits a job, writes its record to Redis, and sends a task carrying only the
job id (the request, which may hold presigned URLs, stays in the record). Each worker
(`python -m service.worker`, see service/worker.py) takes one task at a time, runs the same
`service.job_service` work as the embedded queue, and writes progress and the outcome to the
record, so GET /jobs/{id} and its SSE stream read the same as in-process.

Durability: a task is acknowledged only after its job ended (task_acks_late), one task
is reserved at a time (worker_prefetch_multiplier=1), and a task whose worker died is
handed to another worker once the visibility timeout has passed since that worker's last
sign of life: a running worker renews its task's lease every heartbeat, so the timeout
need not be longer than the longest job, only than a few heartbeats. A re-run is safe:
it gets a fresh temp dir and its upload is a PUT that overwrites. The time limit ends a
job that runs too long (the worker cancels it cleanly and records a 504).

Redis keys (prefix `lipsync:`): `job:{id}` records (TTL), `cancel:{id}` a cancel request
the worker running the job polls, `worker:{id}` worker heartbeats (TTL 3 heartbeats).
The broker's queue is the Redis list named LIPSYNC_QUEUE_NAME.

| setting              | env var                      | worker flag            | default          |
|----------------------|------------------------------|------------------------|------------------|
| url                  | LIPSYNC_QUEUE                | --queue                | (unset: in-process) |
| name                 | LIPSYNC_QUEUE_NAME           | --queue-name           | lipsync          |
| visibility_timeout_s | LIPSYNC_QUEUE_VISIBILITY_S   | --visibility-timeout-s | 60               |
| time_limit_s         | LIPSYNC_QUEUE_TIME_LIMIT_S   | --time-limit-s         | 3600             |
| heartbeat_s          | LIPSYNC_WORKER_HEARTBEAT_S   | --heartbeat-s          | 2                |

`celery -A service.queue worker --pool solo --concurrency 1 -Q lipsync` runs the same
worker as `python -m service.worker` (configured from the env vars only).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
from dataclasses import dataclass, fields
from typing import Mapping

import redis
from celery import Celery

from service.addresses import redact_url
from service.admission import Busy, ShuttingDown
from service.job_service import JobConfig, build_work, hold_uploads, release_uploads
from service.jobstore import CANCELLED, JobRecord, RedisJobStore, log_event, new_job_id
from service.prom import ServiceMetrics

log = logging.getLogger(__name__)

PREFIX = "lipsync:"
TASKS = {"detect-faces": "lipsync.detect-faces", "lipsync": "lipsync.lipsync"}
"""The Celery task name of each job kind (service/worker.py defines them)."""

_ENV = {
    "url": "LIPSYNC_QUEUE",
    "name": "LIPSYNC_QUEUE_NAME",
    "visibility_timeout_s": "LIPSYNC_QUEUE_VISIBILITY_S",
    "time_limit_s": "LIPSYNC_QUEUE_TIME_LIMIT_S",
    "heartbeat_s": "LIPSYNC_WORKER_HEARTBEAT_S",
}


class QueueUnavailable(Busy):
    """Redis cannot be reached: the job was not queued (HTTP 503, retry)."""


@dataclass(frozen=True)
class QueueConfig:
    """Where the queue is and how it behaves; each field has an env var and a worker flag."""

    url: str = "redis://127.0.0.1:6379/0"
    name: str = "lipsync"
    visibility_timeout_s: float = 60.0
    time_limit_s: float = 3600.0
    heartbeat_s: float = 2.0

    def __post_init__(self) -> None:
        if not self.url.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError(f"LIPSYNC_QUEUE={redact_url(self.url)!r}: give a Redis URL like redis://host:6379/0")
        if self.visibility_timeout_s <= 0 or self.time_limit_s <= 0 or self.heartbeat_s <= 0:
            raise ValueError("queue: visibility timeout, time limit and heartbeat must be > 0 seconds")
        if self.visibility_timeout_s <= 3 * self.heartbeat_s:
            raise ValueError(f"LIPSYNC_QUEUE_VISIBILITY_S ({self.visibility_timeout_s:g} s) must be longer than 3 "
                             f"heartbeats (LIPSYNC_WORKER_HEARTBEAT_S={self.heartbeat_s:g} s), or running jobs are "
                             "handed to a second worker")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides) -> "QueueConfig":
        env = os.environ if environ is None else environ
        values = {}
        for field in fields(cls):
            raw = env.get(_ENV[field.name], "").strip()
            if raw:
                values[field.name] = raw if field.type in ("str", str) else _number(_ENV[field.name], raw)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        """The worker's CLI twins; their defaults come from the environment."""
        for field in fields(QueueConfig):
            flag = {"url": "--queue"}.get(field.name, "--" + field.name.replace("_", "-"))
            parser.add_argument(flag, dest=f"queue_{field.name}", default=None,
                                type=str if field.type in ("str", str) else float,
                                help=f"(env {_ENV[field.name]}, default {getattr(QueueConfig, field.name)})")

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "QueueConfig":
        return cls.from_env(**{f.name: getattr(args, f"queue_{f.name}") for f in fields(cls)})

    @property
    def restore_interval_s(self) -> int:
        """How often an idle worker looks for tasks whose worker died, s (at most 10)."""
        return max(1, min(10, int(self.visibility_timeout_s / 2)))


def _number(name: str, raw: str) -> float:
    try:
        return float(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a number of seconds") from None


def configure(celery: Celery, queue: QueueConfig) -> Celery:
    """Point the Celery app at the queue with the durability settings (module docstring)."""
    celery.conf.update(
        broker_url=queue.url,
        broker_connection_retry_on_startup=True,
        broker_transport_options={
            "visibility_timeout": queue.visibility_timeout_s,
            "unacked_restore_interval": queue.restore_interval_s,
            "unacked_restore_throttle": 1,
        },
        result_backend=None,
        task_ignore_result=True,  # outcomes live in the job records
        task_default_queue=queue.name,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_acks_on_failure_or_timeout=True,
        worker_prefetch_multiplier=1,
        worker_disable_prefetch=True,  # a busy worker holds no second task: it stays in the queue for
        # an idle worker, and the queue's length is the true number of waiting jobs
        task_time_limit=queue.time_limit_s + 60,  # a hard kill under the prefork pool; the worker's own
        # watcher cancels the job cleanly at time_limit_s under any pool (solo enforces no Celery limit)
        task_serializer="json",
        accept_content=["json"],
        worker_hijack_root_logger=False,
    )
    celery.conf.lipsync_queue = queue
    return celery


def keys(kind: str, ident: str) -> str:
    """A Redis key of this package: kind is job, cancel or worker."""
    return f"{PREFIX}{kind}:{ident}"


app = configure(Celery("lipsync", include=["service.worker"]), QueueConfig.from_env())
"""The Celery app: `celery -A service.queue worker` finds it here."""


def live_workers(client: redis.Redis) -> list[dict]:
    """The heartbeats of the workers alive now (each: id, host, pid, job_id, jobs_done, ...)."""
    found = []
    for key in client.scan_iter(match=keys("worker", "*"), count=500):
        raw = client.get(key)
        if raw is not None:
            found.append(json.loads(raw))
    return sorted(found, key=lambda w: w["id"])


class QueueService:
    """The Celery front: the JobService twin the server uses in queue mode.

    Admission: a job is refused (503) once the broker's queue holds LIPSYNC_MAX_WAITING
    jobs per live worker (at least one worker's worth while none is up).
    """

    mode = "redis"

    def __init__(self, queue: QueueConfig, config: JobConfig, metrics: ServiceMetrics) -> None:
        self.queue = queue
        self.config = config
        self.limits = config.limits
        self.metrics = metrics
        self.celery = configure(app, queue)
        self.redis = redis.Redis.from_url(queue.url, socket_timeout=10, socket_connect_timeout=5)
        self.store = RedisJobStore(self.redis, config.limits.job_ttl_s, PREFIX)
        self._closed = False
        metrics.watch_queue(lambda: self._gauge(self.running), lambda: self._gauge(self.depth))

    def submit(self, kind: str, body: dict, webhook_url: str | None = None, mode: str = "async") -> str:
        """Check the body, admit and enqueue the job; returns its id. Raises InputError (4xx),
        Busy / ShuttingDown / QueueUnavailable (503)."""
        build_work(kind, body, self.config)  # a bad body is refused here, not on a worker
        try:
            if self._closed:
                raise ShuttingDown("the server is shutting down and accepts no new jobs; retry on another instance")
            workers, depth = len(live_workers(self.redis)), self.depth()
            capacity = self.limits.max_waiting * max(1, workers)
            if depth >= capacity:
                raise Busy(f"{depth} job(s) waiting for {workers} worker(s) (queue limit {capacity}: "
                           f"LIPSYNC_MAX_WAITING per worker); retry later")
            job_id = new_job_id()
            hold_uploads(kind, body, job_id, self.config)  # released by the worker when the job ends
            self.store.add(JobRecord(job_id, kind, body, webhook_url))
            try:
                self.celery.send_task(TASKS[kind], args=[job_id], task_id=job_id, queue=self.queue.name,
                                      retry=False)
            except Exception:
                self.store.remove(job_id)
                release_uploads(job_id, self.config)
                raise
        except Busy as exc:
            reason = "shutting_down" if isinstance(exc, ShuttingDown) else "queue_full"
            self.metrics.rejected.labels(kind, reason).inc()
            log_event("job_rejected", "-", kind=kind, reason=reason)
            raise
        except (redis.RedisError, OSError) as exc:
            self.metrics.rejected.labels(kind, "queue_unavailable").inc()
            raise QueueUnavailable(f"the job queue at {redact_url(self.queue.url)} cannot be reached "
                                   f"({type(exc).__name__}); retry later") from exc
        self.metrics.submitted.labels(kind, mode).inc()
        return job_id

    def cancel(self, job_id: str, reason: str) -> bool:
        """A queued job ends at once (a worker skips it); a running one is told through its
        cancel key and stops at its worker's next poll. False when unknown or over."""
        try:
            record = self.store.finish(job_id, CANCELLED, error=f"job cancelled: {reason}", error_status=499,
                                       failure_reason="cancelled", only_if_queued=True)
        except KeyError:
            return False
        if record.state == CANCELLED and record.started_at is None:
            self.metrics.finished.labels(record.kind, CANCELLED).inc()
            release_uploads(job_id, self.config)
            self._withdraw(job_id)
            return True
        if record.finished:
            return False
        self.redis.set(keys("cancel", job_id), reason, ex=int(self.queue.time_limit_s) + 60)
        return True

    def position(self, job_id: str) -> int | None:
        """0 for the next task a worker takes, None when not waiting in the broker's queue."""
        found = self._message(job_id)
        return None if found is None else found[0]

    def _message(self, job_id: str) -> tuple[int, bytes] | None:
        """A waiting job's place in the broker's queue and its raw task message."""
        waiting = self.redis.lrange(self.queue.name, 0, -1)  # pushed on the left, taken from the right
        for index, raw in enumerate(reversed(waiting)):
            try:
                if json.loads(raw)["headers"]["id"] == job_id:
                    return index, raw
            except (ValueError, KeyError, TypeError):
                continue
        return None

    def _withdraw(self, job_id: str) -> None:
        """Take a cancelled job's task out of the broker's queue, so it no longer counts as waiting
        against admission. A worker that popped it first skips it (its record is over)."""
        found = self._message(job_id)
        if found is not None:
            self.redis.lrem(self.queue.name, 1, found[1])

    def depth(self) -> int:
        """Tasks waiting in the broker's queue (not yet taken by a worker)."""
        return int(self.redis.llen(self.queue.name))

    def running(self) -> int:
        return sum(1 for worker in live_workers(self.redis) if worker.get("job_id"))

    def health(self) -> dict:
        report = {"mode": self.mode, "queue": redact_url(self.queue.url), "queue_name": self.queue.name,
                  "accepting": not self._closed, "visibility_timeout_s": self.queue.visibility_timeout_s,
                  "time_limit_s": self.queue.time_limit_s}
        try:
            workers = live_workers(self.redis)
            report.update(workers=len(workers), waiting=self.depth(),
                          running=sum(1 for w in workers if w.get("job_id")),
                          max_waiting=self.limits.max_waiting * max(1, len(workers)), worker_list=workers)
        except (redis.RedisError, OSError) as exc:
            report.update(workers=None, waiting=None, running=None, error=f"Redis unreachable: {type(exc).__name__}")
        return report

    def shutdown(self, grace_s: float) -> None:
        """Admit nothing more; the workers own the queued and running jobs and carry on."""
        self._closed = True
        log_event("shutdown_done", "-", mode=self.mode)
        self.redis.close()

    def _gauge(self, read) -> float:
        try:
            return float(read())
        except (redis.RedisError, OSError):
            return float("nan")

