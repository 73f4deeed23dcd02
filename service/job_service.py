"""The job service: what a job does (fetch, run `jobs`, upload) and the embedded queue.

`build_work` turns a request body into a job's work; `run_work` runs it in its own temp
dir and shapes the outcome. Both serve the embedded queue here (`JobService`: the server
runs jobs on its own threads, the default) and the Celery workers (`service.worker`), so a
job does the same wherever it runs. Nothing here knows about routes or HTTP responses.
"""
from __future__ import annotations

import logging
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from jobs.config import Settings
from jobs.detect import detect_faces
from jobs.lipsync import lipsync
from jobs.probe import probe_media
from jobs.references import Character
from jobs.schema import parse_detect, parse_lipsync
from jobs.stems import check_offsets, fetched_stems, stem_inputs
from service.admission import Admission, Busy, Limits, ShuttingDown
from service.delivery import (
    UploadCancelled,
    UploadPolicy,
    check_upload_url,
    upload_file,
)
from service.fetch import (
    FetchCancelled,
    FetchPolicy,
    fetch_to_temp,
    fetches_cancelled_by,
)
from service.jobstore import (
    CANCELLED,
    FAILED,
    SUCCEEDED,
    JobRecord,
    JobStore,
    log_event,
    new_job_id,
)
from service.prom import ServiceMetrics
from service.uploads import (
    FileStore,
    StoreLimits,
    fetch_upload,
    is_upload_url,
    result_store,
    upload_ids,
    upload_store,
)
from service.webhook import deliver
from service.workdir import job_dir, keep_output
from stream.context import JobContext, Progress
from stream.errors import InputError, LipSyncError, MediaError, UploadError
from stream.pipeline import PipelineCancelled

log = logging.getLogger(__name__)

KINDS = ("detect-faces", "lipsync")

PHASE_SPANS = {
    "detect-faces": {"fetch": (0.0, 10.0), "detect": (10.0, 70.0), "speakers": (70.0, 100.0)},
    "lipsync": {"fetch": (0.0, 5.0), "detect": (5.0, 12.0), "speakers": (12.0, 15.0), "bank": (15.0, 20.0),
                "lipsync": (20.0, 95.0), "upload": (95.0, 100.0)},
}
"""Each phase's share of a job's percent: (start, end). Auto mode adds the detect phases;
"speakers" (active speaker detection) runs when the Light-ASD weights are present; "bank"
(the mouth-bank pass) with the classical engine. A phase missing here would jump to 99.9%."""

Work = Callable[[JobContext, Path, dict], dict]
"""A job's body: (context, its temp dir, stats to fill: frames, pipeline_s) -> result JSON."""


@dataclass(frozen=True)
class JobConfig:
    """What a job needs besides its body: engine settings, limits, fetch and upload rules."""

    settings: Settings
    limits: Limits
    fetch_policy: FetchPolicy
    upload_policy: UploadPolicy
    stores: StoreLimits = field(default_factory=StoreLimits.from_env)  # uploads and kept results

    @classmethod
    def from_env(cls) -> "JobConfig":
        return cls(Settings.from_env(), Limits.from_env(), FetchPolicy.from_env(), UploadPolicy.from_env())


@dataclass
class Outcome:
    """How a run ended, in the JobStore.finish vocabulary, plus stats for the fps metric."""

    state: str
    result: dict | None = None
    error: str | None = None
    error_status: int | None = None
    details: dict = field(default_factory=dict)
    reason: str | None = None
    stats: dict = field(default_factory=dict)


SHUTDOWN_REASON = "server shutting down"
"""The cancel reason of jobs that the server's shutdown stopped (HTTP 503, retry elsewhere)."""


def cancelled_outcome(reason: str) -> Outcome:
    """A cancelled job, queued or running alike: 503 (retry later) when the server's shutdown
    stopped it, 499 when its client did (DELETE, or the sync request went away)."""
    if reason == SHUTDOWN_REASON:
        return Outcome(CANCELLED, error=f"job cancelled: {reason}; retry", error_status=503, reason="shutdown")
    return Outcome(CANCELLED, error=f"job cancelled: {reason}", error_status=499, reason="cancelled")


def phase_percent(kind: str, progress: Progress) -> float:
    """A phase's progress as the whole job's percent (PHASE_SPANS)."""
    start, end = PHASE_SPANS[kind].get(progress.phase, (0.0, 99.9))
    return start + (end - start) * progress.fraction


def build_work(kind: str, raw: object, config: JobConfig) -> Work:
    """The work for a request body; raises InputError (4xx) when the body is wrong."""
    if kind == "lipsync":
        return lipsync_work(parse_lipsync(raw, require_upload=False), config)
    if kind == "detect-faces":
        return detect_work(parse_detect(raw), config)
    raise InputError(f"unknown job kind {kind!r}; expected one of {', '.join(KINDS)}")


def input_urls(kind: str, raw: object) -> list[str | None]:
    """Every input URL of a (valid) request body: video, audio, references, stems."""
    if kind == "detect-faces":
        body = parse_detect(raw)
        return [body.video_url, *(c.reference_image_url for c in body.characters)]
    body = parse_lipsync(raw, require_upload=False)
    voices = [f.voice for f in body.faces] if body.faces is not None else list(body.voices.values())
    return [body.video_url, body.audio_url, *(c.reference_image_url for c in body.characters),
            *(v.audio_url for v in voices)]


def hold_uploads(kind: str, raw: object, job_id: str, config: JobConfig) -> None:
    """Lease every `upload://` input of a request for the job (so it does not expire while the
    job waits or runs); InputError (422) naming the first unknown or expired one, holding none."""
    store = upload_store(config.settings.workdir, config.stores)
    for url, file_id in upload_ids(input_urls(kind, raw)):
        if store.lease(file_id, job_id) is None:
            store.release(job_id)
            raise InputError(f"{url[:60]!r} is not a known upload or it expired (after {store.ttl_s:g} s, "
                             "LIPSYNC_UPLOAD_TTL_S); upload the file again")


def release_uploads(job_id: str, config: JobConfig) -> None:
    """The job ended: its uploads may expire again."""
    upload_store(config.settings.workdir, config.stores).release(job_id)


def run_work(work: Work, context: JobContext, settings: Settings, job_id: str) -> Outcome:
    """Run a job's work in a fresh job dir (removed before returning, so before anyone hears
    the job ended) and shape how it ended."""
    stats: dict = {}
    with job_dir(settings.workdir) as workdir:
        try:
            context.check()
            return Outcome(SUCCEEDED, result=work(context, workdir, stats), stats=stats)
        except LipSyncError as exc:
            return Outcome(FAILED, error=str(exc), error_status=exc.status_code,
                           details=getattr(exc, "details", {}), reason=type(exc).__name__)
        except PipelineCancelled as exc:
            return cancelled_outcome(str(exc))
        except Exception as exc:  # noqa: BLE001 - shaped into the record, the service keeps serving
            log.error("event=job_error job_id=%s", job_id, exc_info=exc)
            stage = getattr(exc, "stage", None)
            return Outcome(FAILED, error=f"internal error{f' in stage {stage}' if stage else ''}: "
                                         f"{type(exc).__name__}: {exc}", error_status=500, reason="internal")


def record_outcome(metrics: ServiceMetrics, record: JobRecord, outcome: Outcome) -> None:
    """Count a finished job in the Prometheus metrics."""
    if record.started_at is not None and record.finished_at is not None:
        metrics.duration.labels(record.kind, record.state).observe(record.finished_at - record.started_at)
    metrics.finished.labels(record.kind, record.state).inc()
    if record.state == FAILED:
        metrics.failures.labels(record.kind, outcome.reason or "internal").inc()
    if record.state == SUCCEEDED and outcome.stats.get("pipeline_s"):
        metrics.fps.labels(record.kind).observe(outcome.stats["frames"] / outcome.stats["pipeline_s"])


# ---------------------------------------------------------------- the embedded queue


@dataclass
class LiveJob:
    """A job's runtime half (its record is in the store): what runs, and how to stop it."""

    job_id: str
    kind: str
    work: Work
    context: JobContext
    done: threading.Event = field(default_factory=threading.Event)


class JobService:
    """The embedded queue: admits jobs to the FIFO, runs them on its own threads, and keeps
    records, metrics and logs. The server's job handlers talk to it (or to
    `service.queue.QueueService`, its Celery twin) through submit / cancel / position /
    store / health / shutdown."""

    mode = "in-process"

    def __init__(self, config: JobConfig, metrics: ServiceMetrics) -> None:
        self.config = config
        self.limits = config.limits
        self.metrics = metrics
        self.store = JobStore(config.limits.job_ttl_s)
        self.admission = Admission(config.limits.concurrency, config.limits.max_waiting)
        self._live: dict[str, LiveJob] = {}
        self._lock = threading.Lock()
        self._webhooks: list[threading.Thread] = []
        metrics.watch_queue(lambda: self.admission.running, lambda: self.admission.waiting)

    def submit(self, kind: str, body: dict, webhook_url: str | None = None, mode: str = "async") -> str:
        """Queue a job behind those admitted before it; returns its id. Raises InputError (bad
        body, 4xx), Busy / ShuttingDown (503)."""
        work = build_work(kind, body, self.config)
        job_id = new_job_id()
        hold_uploads(kind, body, job_id, self.config)
        live = LiveJob(job_id, kind, work, JobContext())
        live.context.on_progress = lambda progress: self.store.progress(
            job_id, progress.phase, progress.frames_done, progress.frames_total, phase_percent(kind, progress))
        with self._lock:
            self._live[job_id] = live
        self.store.add(JobRecord(job_id, kind, body, webhook_url))
        try:
            self.admission.submit(job_id, lambda: self._execute(live))
        except Busy as exc:
            with self._lock:
                self._live.pop(job_id, None)
            self.store.remove(job_id)
            release_uploads(job_id, self.config)
            reason = "shutting_down" if isinstance(exc, ShuttingDown) else "queue_full"
            self.metrics.rejected.labels(kind, reason).inc()
            log_event("job_rejected", job_id, kind=kind, reason=reason)
            raise
        self.metrics.submitted.labels(kind, mode).inc()
        return job_id

    def cancel(self, job_id: str, reason: str) -> bool:
        """Cancel a queued or running job; False when it is unknown or already over."""
        with self._lock:
            live = self._live.get(job_id)
        if live is None:
            return False
        live.context.cancel(reason)
        if self.admission.withdraw(job_id):
            self._end(live, cancelled_outcome(reason))
        return True

    def position(self, job_id: str) -> int | None:
        return self.admission.position(job_id)

    def health(self) -> dict:
        return {"mode": self.mode, "running": self.admission.running, "waiting": self.admission.waiting,
                "concurrency": self.limits.concurrency, "max_waiting": self.limits.max_waiting,
                "accepting": not self.admission.closed}

    def shutdown(self, grace_s: float) -> None:
        """Admit nothing more, cancel waiting jobs, give running ones grace_s, then cancel them."""
        log_event("shutdown_started", "-", running=self.admission.running, waiting=self.admission.waiting)
        for job_id in self.admission.close():
            with self._lock:
                live = self._live.get(job_id)
            if live is not None:
                live.context.cancel(SHUTDOWN_REASON)
                self._end(live, cancelled_outcome(SHUTDOWN_REASON))
        if not self.admission.wait_idle(grace_s):
            with self._lock:
                running = list(self._live.values())
            for live in running:
                log_event("job_cancel_on_shutdown", live.job_id, grace_s=grace_s)
                live.context.cancel(SHUTDOWN_REASON)
        if not self.admission.join(60.0):
            log.warning("event=shutdown_incomplete job_id=- detail=\"a job did not stop within 60 s\"")
        for thread in list(self._webhooks):
            thread.join(timeout=10.0)
        log_event("shutdown_done", "-")

    def _execute(self, live: LiveJob) -> None:
        """Run on a worker thread: the job, its outcome into the store."""
        record = self.store.start(live.job_id)
        self.metrics.queued.labels(live.kind).observe(max(0.0, record.started_at - record.created_at))
        self._end(live, run_work(live.work, live.context, self.config.settings, live.job_id))

    def _end(self, live: LiveJob, outcome: Outcome) -> None:
        record = self.store.finish(live.job_id, outcome.state, outcome.result, outcome.error, outcome.error_status,
                                   outcome.details, outcome.reason)
        with self._lock:
            self._live.pop(live.job_id, None)
        release_uploads(live.job_id, self.config)
        record_outcome(self.metrics, record, outcome)
        live.done.set()
        if record.webhook_url:
            thread = threading.Thread(target=self._deliver, args=(record,), name=f"webhook-{live.job_id[:8]}",
                                      daemon=True)
            self._webhooks = [t for t in self._webhooks if t.is_alive()] + [thread]
            thread.start()

    def _deliver(self, record: JobRecord) -> None:
        outcome = deliver(record, self.store, self.config.upload_policy)
        self.metrics.webhooks.labels("delivered" if outcome["delivered"] else "failed").inc()


# ---------------------------------------------------------------- the jobs' work


def fetch_input(url: str, workdir: Path, policy: FetchPolicy, kind: str, label: str,
                limits: Limits | None = None, uploads: FileStore | None = None) -> Path:
    """Fetch, probe and check one input; media problems name the request field, not a temp path.
    `upload://<id>` names a file POSTed to /uploads, looked up in `uploads` (service.uploads)."""
    if uploads is not None and is_upload_url(url):
        path = fetch_upload(url, uploads, workdir, label)
    else:
        path = fetch_to_temp(url, workdir=workdir, policy=policy, kind=kind, label=label)
    try:
        info = probe_media(path, kind, **(limits.probe_limits(kind) if limits is not None else {}))
    except MediaError as exc:
        raise MediaError(label, exc.problem) from exc
    if limits is not None:
        limits.check_media(label, info.duration_s, info.width if kind == "video" else None,
                           info.height if kind == "video" else None)
    return path


def fetch_all(inputs: list[tuple[str, str, str]], workdir: Path, config: JobConfig,
              context: JobContext) -> list[Path]:
    """Fetch (url, kind, label) inputs in turn, reporting each as fetch progress. A cancel of
    `context` stops a download within a fraction of a second; the job ends cancelled."""
    with fetches_cancelled_by(lambda: context.cancelled):
        try:
            return _fetch_each(inputs, workdir, config, context)
        except FetchCancelled:
            context.check()  # with the job's own reason (client, DELETE, shutdown)
            raise


def _fetch_each(inputs: list[tuple[str, str, str]], workdir: Path, config: JobConfig,
                context: JobContext) -> list[Path]:
    paths = []
    for done, (url, kind, label) in enumerate(inputs):
        context.check()
        context.report("fetch", done, len(inputs))
        paths.append(fetch_input(url, workdir, config.fetch_policy, kind, label, config.limits,
                                 upload_store(config.settings.workdir, config.stores)))
    context.report("fetch", len(inputs), len(inputs))
    context.check()
    return paths


@contextmanager
def named_inputs(**labels: Path):
    """Re-raise MediaError from a job with the request field's name instead of a temp path."""
    try:
        yield
    except MediaError as exc:
        names = {str(path): label for label, path in labels.items()}
        if exc.path in names:
            raise MediaError(names[exc.path], exc.problem) from exc
        raise


def keep_failed_output(path: Path, settings: Settings) -> Path:
    """Move an output whose upload failed out of the job dir; deleted after keep_failed_s
    (and by the startup sweep once expired, if the server restarts first)."""
    return keep_output(path, settings.workdir, settings.keep_failed_s)


def detect_work(body, config: JobConfig) -> Work:
    config.limits.check_counts(0, len(body.characters))

    def work(context: JobContext, workdir: Path, stats: dict) -> dict:
        started = time.perf_counter()
        inputs = [(body.video_url, "video", "video_url")]
        inputs += [(c.reference_image_url, "image", f"characters[{i}].reference_image_url")
                   for i, c in enumerate(body.characters)]
        video, *images = fetch_all(inputs, workdir, config, context)
        characters = [Character(c.id, c.name, image) for c, image in zip(body.characters, images)]
        download_ms = (time.perf_counter() - started) * 1000
        with named_inputs(video_url=video):
            result = detect_faces(video, characters, body.sample_fps, body.similarity_threshold,
                                       config.settings, context)
        stats.update(frames=len(result["frames"]), pipeline_s=result["timing"]["total_ms"] / 1000)
        result["timing"]["download_ms"] = round(download_ms, 1)
        result["timing"]["total_ms"] = round((time.perf_counter() - started) * 1000, 1)
        return result

    return work


def lipsync_work(body, config: JobConfig) -> Work:
    config.limits.check_counts(len(body.faces or body.voices), len(body.characters))  # auto: faces[] -> voices
    check_offsets(body.faces, body.voices, config.limits.max_duration_s * 1000,
                  "the longest video this server accepts (LIPSYNC_MAX_DURATION_S)")  # the video's own, in the job

    def work(context: JobContext, workdir: Path, stats: dict) -> dict:
        started = time.perf_counter()
        if body.upload_url:
            check_upload_url(body.upload_url, config.upload_policy)
        inputs = [(body.video_url, "video", "video_url")]
        inputs += [(body.audio_url, "audio", "audio_url")] if body.audio_url is not None else []
        inputs += [(c.reference_image_url, "image", f"characters[{i}].reference_image_url")
                   for i, c in enumerate(body.characters)]
        stems = stem_inputs(body.faces, body.voices)  # per-face audio_url: fetched and probed alike
        paths = dict(zip([label for _, _, label in inputs + stems],
                         fetch_all(inputs + stems, workdir, config, context)))
        video, audio = paths["video_url"], paths.get("audio_url")
        characters = [Character(c.id, c.name, paths[f"characters[{i}].reference_image_url"])
                      for i, c in enumerate(body.characters)]
        faces, voices = fetched_stems(body.faces, body.voices, paths)
        download_ms = (time.perf_counter() - started) * 1000
        out = workdir / "output.mp4"
        with named_inputs(video_url=video, audio_url=audio, **{label: paths[label] for _, _, label in stems}):
            result = lipsync(video, audio, faces, out, config.settings, context,
                                  body.enhance_quality, body.fidelity_weight, body.sync_mode,
                                  characters=characters, voices=voices, expressiveness=body.expressiveness,
                                  max_duration_s=config.limits.max_duration_s)
        stats.update(frames=result["output"]["frame_count"], pipeline_s=result["metrics"]["wall_s"])
        result["timing"]["download_ms"] = round(download_ms, 1)
        context.check()
        if not body.upload_url:  # no upload_url: keep the output here for a while (GET /results/{id})
            kept = result_store(config.settings.workdir, config.stores).keep(out)
            result["result_url"] = f"/results/{kept.file_id}"
            result["result_expires_at"] = round(kept.expires_at, 3)
            result["timing"]["total_ms"] = round((time.perf_counter() - started) * 1000, 1)
            return result
        context.report("upload", 0, 1)
        try:
            upload = upload_file(out, body.upload_url, policy=config.upload_policy,
                                 cancelled=lambda: context.cancelled)
        except UploadCancelled:
            context.check()  # with the job's own reason (client, DELETE, shutdown)
            raise
        except UploadError as exc:
            kept = keep_failed_output(out, config.settings)
            exc.details = {"output_path": str(kept), "output": result["output"], "faces": result["faces"]}
            raise
        context.report("upload", 1, 1)
        result["timing"]["upload_ms"] = round(upload.elapsed_ms, 1)
        result["timing"]["total_ms"] = round((time.perf_counter() - started) * 1000, 1)
        result["upload"] = {"status_code": upload.status_code, "attempts": upload.attempts,
                            "bytes": upload.bytes_sent}
        return result

    return work
