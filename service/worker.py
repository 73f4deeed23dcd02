"""`python -m service.worker`: a Celery worker that runs lipsync jobs from the Redis queue.

One job at a time (`--pool solo --concurrency 1`), its models loaded once and kept warm;
run one per GPU and pin it with CUDA_VISIBLE_DEVICES:

    CUDA_VISIBLE_DEVICES=0 python -m service.worker --queue redis://queue-host:6379/0
    CUDA_VISIBLE_DEVICES=1 python -m service.worker --queue redis://queue-host:6379/0

It takes the engine flags of `stream.run` (--models-dir, --device, ...) and the queue
flags of stream/queue.py; the fetch/upload/limit rules come from the same LIPSYNC_* env
vars as the server. `celery -A service.queue worker --pool solo --concurrency 1 -Q lipsync`
is the same worker configured from env vars only.

While it runs, the worker writes a heartbeat to Redis every LIPSYNC_WORKER_HEARTBEAT_S
(the server's /health counts them) and, during a job, polls the job's cancel key, so a
DELETE /jobs/{id} or the time limit stops the pipeline cleanly. At start and before each job it
removes the job dirs no live process holds (a worker SIGKILLed mid-job leaves its dir, inputs
hard-linked, in the shared workdir: service.workdir.sweep_job_dirs).
"""
from __future__ import annotations

if __name__ == "__main__":  # run the importable module's main, so Celery's import of it is the only copy
    from service.worker import main as _main

    raise SystemExit(_main())

import argparse
import json
import logging
import os
import socket
import threading
import time

import redis
from celery import signals

from jobs.config import Settings
from jobs.registry import shared_registry
from service.job_service import (
    JobConfig,
    Outcome,
    build_work,
    phase_percent,
    release_uploads,
    run_work,
)
from service.jobstore import (
    FAILED,
    JobRecord,
    RedisJobStore,
    configure_logging,
    log_event,
)
from service.queue import PREFIX, TASKS, QueueConfig, app, configure, keys
from service.webhook import deliver
from service.workdir import sweep, sweep_job_dirs
from stream.context import JobContext
from stream.errors import LipSyncError

log = logging.getLogger(__name__)

UNACKED_INDEX, UNACKED = "unacked_index", "unacked"
"""Kombu's Redis transport (default key names): unacknowledged deliveries, a sorted set
scored by delivery time, and a hash of delivery tag -> [message, exchange, routing key]."""

CANCEL_POLL_S = 0.25
"""How often a running job's cancel key and time limit are checked, s."""


class WorkerRuntime:
    """What a worker process holds between jobs: its Redis store, config and heartbeat."""

    def __init__(self, queue: QueueConfig, config: JobConfig) -> None:
        self.queue = queue
        self.config = config
        self.redis = redis.Redis.from_url(queue.url, socket_timeout=30, socket_connect_timeout=10)
        self.store = RedisJobStore(self.redis, config.limits.job_ttl_s, PREFIX)
        self.ident = f"{socket.gethostname()}-{os.getpid()}"
        self.started_at = time.time()
        self.jobs_done = 0
        self.current: tuple[str, str] | None = None  # (job id, kind)
        self._stop = threading.Event()
        self._beat = threading.Thread(target=self._heartbeat, name="worker-heartbeat", daemon=True)

    def start(self) -> None:
        """Load the models once (warm for every job), then announce this worker."""
        try:
            shared_registry(self.config.settings).face_backend()
        except Exception:  # noqa: BLE001 - each job reports the same error to its caller
            log.exception("face backend failed to load")
        sweep(self.config.settings.workdir, self.config.settings.keep_failed_s)  # what a killed worker left
        self._write_heartbeat()
        self._beat.start()
        log_event("worker_ready", "-", worker=self.ident, queue=self.queue.name,
                  cuda_visible_devices=os.environ.get("CUDA_VISIBLE_DEVICES"))

    def stop(self) -> None:
        self._stop.set()
        self.redis.delete(keys("worker", self.ident))

    def run(self, kind: str, job_id: str) -> None:
        """Run one job: claim its record, run its work while watching for a cancel (and renewing
        the task's lease), store the outcome."""
        record = self.store.claim(job_id, self.ident)
        if record is None:
            log_event("job_skipped", job_id, kind=kind, detail="already over or expired")
            return
        self.current = (job_id, kind)
        self._write_heartbeat()
        sweep_job_dirs(self.config.settings.workdir)  # a worker killed meanwhile (its job may be this one)
        context = JobContext(on_progress=lambda p: self.store.progress(
            job_id, p.phase, p.frames_done, p.frames_total, phase_percent(kind, p)))
        delivery_tag = find_delivery_tag(self.redis, job_id)
        timed_out = threading.Event()
        done = threading.Event()
        watcher = threading.Thread(target=self._watch, args=(job_id, delivery_tag, context, done, timed_out),
                                   name=f"cancel-watch-{job_id[:8]}", daemon=True)
        watcher.start()
        try:
            outcome = self._outcome(kind, record, context)
        finally:
            done.set()
            watcher.join()
        if timed_out.is_set() and outcome.reason == "cancelled":
            outcome = Outcome(FAILED, error=f"the job ran past the time limit of {self.queue.time_limit_s:g} s "
                                            "(LIPSYNC_QUEUE_TIME_LIMIT_S) and was stopped", error_status=504,
                              reason="time_limit")
        final = self.store.finish(job_id, outcome.state, outcome.result, outcome.error, outcome.error_status,
                                  outcome.details, outcome.reason)
        release_uploads(job_id, self.config)
        self.redis.delete(keys("cancel", job_id))
        self.current = None
        self.jobs_done += 1
        self._write_heartbeat()
        if final.webhook_url and final.webhook is None:
            deliver(final, self.store, self.config.upload_policy)

    def _outcome(self, kind: str, record: JobRecord, context: JobContext) -> Outcome:
        try:
            work = build_work(kind, record.request, self.config)
        except LipSyncError as exc:  # the server checked it; a different config may still refuse it
            return Outcome(FAILED, error=str(exc), error_status=exc.status_code, reason=type(exc).__name__)
        return run_work(work, context, self.config.settings, record.job_id)

    def _watch(self, job_id: str, delivery_tag: str | None, context: JobContext, done: threading.Event,
               timed_out: threading.Event) -> None:
        """Poll the job's cancel key and time limit; renew the task's lease every heartbeat."""
        deadline = time.monotonic() + self.queue.time_limit_s
        renewed = time.monotonic()
        while not done.wait(CANCEL_POLL_S):
            try:
                reason = self.redis.get(keys("cancel", job_id))
                if delivery_tag and time.monotonic() - renewed >= self.queue.heartbeat_s:
                    renew_lease(self.redis, delivery_tag)
                    renewed = time.monotonic()
            except redis.RedisError:
                log.warning("event=cancel_poll_failed job_id=%s", job_id)
                reason = None
            if reason is not None:
                context.cancel(reason.decode() if isinstance(reason, bytes) else str(reason))
                return
            if time.monotonic() > deadline:
                timed_out.set()
                context.cancel("time limit")
                return

    def _write_heartbeat(self) -> None:
        job_id, kind = self.current or (None, None)
        beat = {"id": self.ident, "host": socket.gethostname(), "pid": os.getpid(), "queue": self.queue.name,
                "started_at": self.started_at, "seen_at": time.time(), "job_id": job_id, "kind": kind,
                "jobs_done": self.jobs_done, "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES")}
        self.redis.set(keys("worker", self.ident), json.dumps(beat), ex=max(1, int(self.queue.heartbeat_s * 3 + 1)))

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.queue.heartbeat_s):
            try:
                self._write_heartbeat()
            except redis.RedisError as exc:
                log.warning("event=heartbeat_failed job_id=- error=%s", type(exc).__name__)


def renew_lease(client: redis.Redis, delivery_tag: str) -> None:
    """Mark a running task's message as just delivered, so no idle worker hands it to another
    worker while this one is alive: the visibility timeout then counts from this worker's last
    sign of life, not from the job's start. (Kombu's Redis transport keeps unacked messages
    in the sorted set `unacked_index`, scored by delivery time; XX only updates a live entry.)"""
    client.zadd(UNACKED_INDEX, {delivery_tag: time.time()}, xx=True)


def find_delivery_tag(client: redis.Redis, task_id: str) -> str | None:
    """The delivery tag of a task this worker holds unacknowledged (None if not found)."""
    for tag, raw in client.hscan_iter(UNACKED, count=100):
        try:
            if json.loads(raw)[0]["headers"]["id"] == task_id:
                return tag.decode() if isinstance(tag, bytes) else tag
        except (ValueError, KeyError, IndexError, TypeError):
            continue
    log.warning("event=lease_not_found job_id=%s detail=\"its lease cannot be renewed\"", task_id)
    return None


_startup: dict = {}
"""Set by main(): the configs parsed from the command line (else the env vars are read)."""
_runtime: WorkerRuntime | None = None


@signals.worker_ready.connect
def _on_worker_ready(**_: object) -> None:
    global _runtime
    _runtime = WorkerRuntime(_startup.get("queue") or app.conf.lipsync_queue,
                             _startup.get("config") or JobConfig.from_env())
    _runtime.start()


@signals.worker_shutdown.connect
def _on_worker_shutdown(**_: object) -> None:
    if _runtime is not None:
        _runtime.stop()


def _runtime_or_fail() -> WorkerRuntime:
    if _runtime is None:
        raise RuntimeError("the lipsync worker runtime is not started (run `python -m service.worker`)")
    return _runtime


@app.task(name=TASKS["detect-faces"], ignore_result=True)
def detect_faces_job(job_id: str) -> None:
    _runtime_or_fail().run("detect-faces", job_id)


@app.task(name=TASKS["lipsync"], ignore_result=True)
def lipsync_job(job_id: str) -> None:
    _runtime_or_fail().run("lipsync", job_id)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m service.worker", description=__doc__.split("\n\n")[0])
    QueueConfig.add_arguments(parser)
    Settings.add_arguments(parser)
    parser.add_argument("--loglevel", default=os.environ.get("LIPSYNC_LOG_LEVEL", "INFO"),
                        help="(env LIPSYNC_LOG_LEVEL, default INFO)")
    args = parser.parse_args(argv)
    configure_logging()
    queue = QueueConfig.from_args(args)
    defaults = JobConfig.from_env()
    _startup.update(queue=queue, config=JobConfig(Settings.from_args(args), defaults.limits, defaults.fetch_policy,
                                                  defaults.upload_policy))
    configure(app, queue)
    app.worker_main(["worker", "--pool", "solo", "--concurrency", "1", "--queues", queue.name,
                     "--hostname", f"lipsync-{os.getpid()}@{socket.gethostname()}", "--loglevel", args.loglevel,
                     "--without-gossip", "--without-mingle", "--without-heartbeat"])

