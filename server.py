"""The HTTP API (Starlette): `uvicorn server:app`.

A table of routes and small handlers: each validates the body, fetches the inputs, hands
off to `stream.jobs` on a worker thread, and shapes the JSON. No media code here.

Every request that runs a pipeline is a job: the sync endpoints (`/detect-faces`,
`/lipsync`) wait for theirs and answer its result; `/jobs/...` answers 202 at once and the
caller polls `GET /jobs/{id}`, follows `GET /jobs/{id}/events` (Server-Sent Events) or
gets a webhook. Both kinds share one bounded FIFO queue (stream.admission): when it is
full they answer 503 with Retry-After. A sync client that disconnects cancels its job.
Errors the caller can fix come back as 4xx with `success: false` and a message that says
what to fix. Limits and queue sizes: see stream/admission.py.

On shutdown (lifespan): nothing new is admitted, waiting jobs are cancelled, running jobs
get LIPSYNC_SHUTDOWN_GRACE_S to finish and are then cancelled; every job's temp dir goes.
Uvicorn first waits for open requests, so run it with `--timeout-graceful-shutdown`
(the Dockerfile does) to bound how long a sync request or an SSE stream can hold it.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import threading
import time
import uuid
from contextlib import asynccontextmanager, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import anyio
import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from stream import health, jobs
from stream.admission import Admission, BodyTooLarge, Busy, Limits, ShuttingDown
from stream.config import Settings
from stream.context import JobContext, Progress
from stream.errors import InputError, LipSyncError, MediaError, UploadError
from stream.io import (FetchPolicy, UploadPolicy, _client, _describe_transport_error, _resolve_destination,
                       _send_pinned, check_upload_url, fetch_to_temp, probe_media, redact_url, upload_file)
from stream.jobstore import CANCELLED, FAILED, SUCCEEDED, JobRecord, JobStore, log_event, new_job_id
from stream.pipeline import PipelineCancelled
from stream.prom import ServiceMetrics
from stream.references import Character
from stream.registry import shared_registry
from stream.schema import parse_detect, parse_lipsync

log = logging.getLogger("server")

PHASE_SPANS = {
    "detect-faces": {"fetch": (0.0, 10.0), "detect": (10.0, 70.0), "speakers": (70.0, 100.0)},
    "lipsync": {"fetch": (0.0, 5.0), "detect": (5.0, 15.0), "speakers": (15.0, 20.0), "lipsync": (20.0, 95.0),
                "upload": (95.0, 100.0)},
}
"""Each phase's share of a job's percent: (start, end). Auto mode adds the detect phases;
"speakers" (active speaker detection) runs when the Light-ASD weights are present."""

Work = Callable[[JobContext, Path, dict], dict]
"""A job's body: (context, its temp dir, stats to fill: frames, pipeline_s) -> result JSON."""


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


def error(status: int, message: str, **extra) -> JSONResponse:
    return JSONResponse({"success": False, "error_message": message, **extra}, status_code=status)


def busy_response(exc: Busy, limits: Limits) -> JSONResponse:
    response = error(503, f"server {'shutting down' if isinstance(exc, ShuttingDown) else 'busy'}: {exc}")
    response.headers["Retry-After"] = str(limits.retry_after_s)
    return response


async def read_json(request: Request, limit: int) -> object:
    """The body as JSON; BodyTooLarge (413) past `limit` bytes, without reading the rest."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(f"the request body is {int(declared)} bytes; this server accepts at most {limit} "
                           "bytes (LIPSYNC_MAX_BODY_BYTES)")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise BodyTooLarge(f"the request body is over {limit} bytes, the most this server accepts "
                               "(LIPSYNC_MAX_BODY_BYTES)")
    try:
        return json.loads(bytes(body))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"request body is not valid JSON ({exc})") from exc


# ---------------------------------------------------------------- webhooks


def check_webhook_url(raw: object, policy: UploadPolicy) -> str | None:
    """The body's optional webhook_url, refused (422) by the same SSRF rules as upload_url."""
    if raw is None:
        return None
    if not isinstance(raw, str):
        raise InputError("field 'webhook_url' must be a string (an http or https URL)")
    _resolve_destination(raw, role="webhook_url", allow_private=policy.allow_private_networks,
                         allowed_networks=policy.allowed_networks, error=InputError)
    return raw


def post_webhook(url: str, payload: dict, policy: UploadPolicy) -> dict:
    """POST `payload` as JSON to `url`, pinned to the checked address; retries connection
    errors, 5xx, 408 and 429 with the upload backoff. Returns the delivery outcome."""
    shown = redact_url(url)
    body = json.dumps(payload).encode()
    headers = {"Content-Type": "application/json", "Content-Length": str(len(body))}
    timeout = httpx.Timeout(policy.io_timeout_s, connect=policy.connect_timeout_s)
    problem = ""
    try:
        dest = _resolve_destination(url, role="webhook_url", allow_private=policy.allow_private_networks,
                                    allowed_networks=policy.allowed_networks, error=InputError)
    except InputError as exc:
        return {"delivered": False, "attempts": 0, "status_code": None, "error": str(exc)}
    with _client(timeout, policy.ca_bundle) as client:
        for attempt in range(1, policy.attempts + 1):
            try:
                response = _send_pinned(client, "POST", dest, headers=headers, content=lambda: iter([body]))
            except httpx.TransportError as exc:
                problem = _describe_transport_error(exc, f"{dest.host}:{dest.port}", policy.connect_timeout_s)
            else:
                response.close()
                code = response.status_code
                if 200 <= code < 300:
                    return {"delivered": True, "attempts": attempt, "status_code": code, "error": None}
                problem = f"{shown} answered HTTP {code}"
                if not (code >= 500 or code in (408, 429)):
                    return {"delivered": False, "attempts": attempt, "status_code": code, "error": problem}
            if attempt < policy.attempts:
                time.sleep(min(policy.backoff_max_s, policy.backoff_base_s * 2 ** (attempt - 1)))
    return {"delivered": False, "attempts": policy.attempts, "status_code": None, "error": problem}


# ---------------------------------------------------------------- running jobs


@dataclass
class LiveJob:
    """A job's runtime half (its record is in the store): what runs, and how to stop it."""

    job_id: str
    kind: str
    work: Work
    context: JobContext
    done: threading.Event = field(default_factory=threading.Event)


class JobService:
    """Admits jobs to the FIFO, runs them on its workers, and keeps records, metrics, logs."""

    def __init__(self, settings: Settings, limits: Limits, upload_policy: UploadPolicy,
                 metrics: ServiceMetrics) -> None:
        self.settings = settings
        self.limits = limits
        self.upload_policy = upload_policy
        self.metrics = metrics
        self.store = JobStore(limits.job_ttl_s)
        self.admission = Admission(limits.concurrency, limits.max_waiting)
        self._live: dict[str, LiveJob] = {}
        self._lock = threading.Lock()
        self._webhooks: list[threading.Thread] = []
        metrics.watch_queue(lambda: self.admission.running, lambda: self.admission.waiting)

    def submit(self, kind: str, body: dict, work: Work, webhook_url: str | None = None,
               mode: str = "async") -> LiveJob:
        """Queue a job behind those admitted before it; raises Busy / ShuttingDown (503)."""
        job_id = new_job_id()
        live = LiveJob(job_id, kind, work, JobContext())
        live.context.on_progress = lambda progress: self._progress(live, progress)
        with self._lock:
            self._live[job_id] = live
        self.store.add(JobRecord(job_id, kind, body, webhook_url))
        try:
            self.admission.submit(job_id, lambda: self._execute(live))
        except Busy as exc:
            with self._lock:
                self._live.pop(job_id, None)
            self.store.remove(job_id)
            reason = "shutting_down" if isinstance(exc, ShuttingDown) else "queue_full"
            self.metrics.rejected.labels(kind, reason).inc()
            log_event("job_rejected", job_id, kind=kind, reason=reason)
            raise
        self.metrics.submitted.labels(kind, mode).inc()
        return live

    def cancel(self, job_id: str, reason: str) -> bool:
        """Cancel a queued or running job; False when it is unknown or already over."""
        with self._lock:
            live = self._live.get(job_id)
        if live is None:
            return False
        live.context.cancel(reason)
        if self.admission.withdraw(job_id):
            self._end(live, CANCELLED, error=f"job cancelled: {reason}", error_status=499, reason="cancelled")
        return True

    def position(self, job_id: str) -> int | None:
        return self.admission.position(job_id)

    def shutdown(self, grace_s: float) -> None:
        """Admit nothing more, cancel waiting jobs, give running ones grace_s, then cancel them."""
        log_event("shutdown_started", "-", running=self.admission.running, waiting=self.admission.waiting)
        for job_id in self.admission.close():
            with self._lock:
                live = self._live.get(job_id)
            if live is not None:
                live.context.cancel("server shutting down")
                self._end(live, CANCELLED, error="job cancelled: server shutting down", error_status=503,
                          reason="shutdown")
        if not self.admission.wait_idle(grace_s):
            with self._lock:
                running = list(self._live.values())
            for live in running:
                log_event("job_cancel_on_shutdown", live.job_id, grace_s=grace_s)
                live.context.cancel("server shutting down")
        if not self.admission.join(60.0):
            log.warning("event=shutdown_incomplete job_id=- detail=\"a job did not stop within 60 s\"")
        for thread in list(self._webhooks):
            thread.join(timeout=10.0)
        log_event("shutdown_done", "-")

    def _progress(self, live: LiveJob, progress: Progress) -> None:
        start, end = PHASE_SPANS[live.kind].get(progress.phase, (0.0, 99.9))
        self.store.progress(live.job_id, progress.phase, progress.frames_done, progress.frames_total,
                            start + (end - start) * progress.fraction)

    def _execute(self, live: LiveJob) -> None:
        """Run on a worker: the job in a fresh temp dir, its outcome into the store."""
        record = self.store.start(live.job_id)
        self.metrics.queued.labels(live.kind).observe(max(0.0, record.started_at - record.created_at))
        workdir = Path(tempfile.mkdtemp(prefix="lipsync-", dir=self.settings.workdir))
        stats: dict = {}
        try:
            live.context.check()
            outcome = dict(state=SUCCEEDED, result=live.work(live.context, workdir, stats))
        except LipSyncError as exc:
            outcome = dict(state=FAILED, error=str(exc), error_status=exc.status_code,
                           details=getattr(exc, "details", {}), reason=type(exc).__name__)
        except PipelineCancelled as exc:
            outcome = dict(state=CANCELLED, error=f"job cancelled: {exc}", error_status=499, reason="cancelled")
        except Exception as exc:  # noqa: BLE001 - shaped into the record, the server keeps serving
            log.error("event=job_error job_id=%s", live.job_id, exc_info=exc)
            stage = getattr(exc, "stage", None)
            outcome = dict(state=FAILED, error=f"internal error{f' in stage {stage}' if stage else ''}: "
                                               f"{type(exc).__name__}: {exc}", error_status=500, reason="internal")
        finally:
            shutil.rmtree(workdir, ignore_errors=True)  # before anyone hears the job ended
        if outcome["state"] == SUCCEEDED and stats.get("pipeline_s"):
            self.metrics.fps.labels(live.kind).observe(stats["frames"] / stats["pipeline_s"])
        self._end(live, **outcome)

    def _end(self, live: LiveJob, state: str, result: dict | None = None, error: str | None = None,
             error_status: int | None = None, details: dict | None = None, reason: str | None = None) -> None:
        record = self.store.finish(live.job_id, state, result, error, error_status, details, reason)
        with self._lock:
            self._live.pop(live.job_id, None)
        if record.started_at is not None:
            self.metrics.duration.labels(live.kind, state).observe(record.finished_at - record.started_at)
        self.metrics.finished.labels(live.kind, state).inc()
        if state == FAILED:
            self.metrics.failures.labels(live.kind, reason or "internal").inc()
        live.done.set()
        if record.webhook_url:
            thread = threading.Thread(target=self._deliver, args=(record,), name=f"webhook-{live.job_id[:8]}",
                                      daemon=True)
            self._webhooks = [t for t in self._webhooks if t.is_alive()] + [thread]
            thread.start()

    def _deliver(self, record: JobRecord) -> None:
        outcome = post_webhook(record.webhook_url, record.public_json(), self.upload_policy)
        self.store.set_webhook(record.job_id, outcome)
        self.metrics.webhooks.labels("delivered" if outcome["delivered"] else "failed").inc()
        log_event("webhook_delivered" if outcome["delivered"] else "webhook_failed", record.job_id,
                  level=logging.INFO if outcome["delivered"] else logging.WARNING,
                  url=redact_url(record.webhook_url), attempts=outcome["attempts"],
                  status=outcome["status_code"], error=outcome["error"])


# ---------------------------------------------------------------- the jobs' work


def fetch_input(url: str, workdir: Path, policy: FetchPolicy, kind: str, label: str,
                limits: Limits | None = None) -> Path:
    """Fetch, probe and check one input; media problems name the request field, not a temp path."""
    path = fetch_to_temp(url, workdir=workdir, policy=policy, kind=kind, label=label)
    try:
        info = probe_media(path, kind)
    except MediaError as exc:
        raise MediaError(label, exc.problem) from exc
    if limits is not None:
        limits.check_media(label, info.duration_s, info.width if kind == "video" else None,
                           info.height if kind == "video" else None)
    return path


def fetch_all(inputs: list[tuple[str, str, str]], workdir: Path, state, context: JobContext) -> list[Path]:
    """Fetch (url, kind, label) inputs in turn, reporting each as fetch progress."""
    paths = []
    for done, (url, kind, label) in enumerate(inputs):
        context.check()
        context.report("fetch", done, len(inputs))
        paths.append(fetch_input(url, workdir, state.fetch_policy, kind, label, state.limits))
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
    """Move an output whose upload failed out of the workdir; delete it after keep_failed_s."""
    folder = Path(settings.workdir) / "failed-uploads"
    folder.mkdir(parents=True, exist_ok=True)
    kept = folder / f"{uuid.uuid4().hex}.mp4"
    shutil.move(str(path), kept)
    timer = threading.Timer(settings.keep_failed_s, lambda: kept.unlink(missing_ok=True))
    timer.daemon = True
    timer.start()
    return kept


def detect_work(body, state) -> Work:
    def work(context: JobContext, workdir: Path, stats: dict) -> dict:
        started = time.perf_counter()
        inputs = [(body.video_url, "video", "video_url")]
        inputs += [(c.reference_image_url, "image", f"characters[{i}].reference_image_url")
                   for i, c in enumerate(body.characters)]
        video, *images = fetch_all(inputs, workdir, state, context)
        characters = [Character(c.id, c.name, image) for c, image in zip(body.characters, images)]
        download_ms = (time.perf_counter() - started) * 1000
        with named_inputs(video_url=video):
            result = jobs.detect_faces(video, characters, body.sample_fps, body.similarity_threshold,
                                       state.settings, context)
        stats.update(frames=len(result["frames"]), pipeline_s=result["timing"]["total_ms"] / 1000)
        result["timing"]["download_ms"] = round(download_ms, 1)
        result["timing"]["total_ms"] = round((time.perf_counter() - started) * 1000, 1)
        return result

    return work


def lipsync_work(body, state) -> Work:
    def work(context: JobContext, workdir: Path, stats: dict) -> dict:
        started = time.perf_counter()
        check_upload_url(body.upload_url, state.upload_policy)
        video, audio = fetch_all([(body.video_url, "video", "video_url"), (body.audio_url, "audio", "audio_url")],
                                 workdir, state, context)
        download_ms = (time.perf_counter() - started) * 1000
        out = workdir / "output.mp4"
        with named_inputs(video_url=video, audio_url=audio):
            result = jobs.lipsync(video, audio, body.faces, out, state.settings, context,
                                  body.enhance_quality, body.fidelity_weight, body.sync_mode)
        stats.update(frames=result["output"]["frame_count"], pipeline_s=result["metrics"]["wall_s"])
        result["timing"]["download_ms"] = round(download_ms, 1)
        context.check()
        context.report("upload", 0, 1)
        try:
            upload = upload_file(out, body.upload_url, policy=state.upload_policy)
        except UploadError as exc:
            kept = keep_failed_output(out, state.settings)
            exc.details = {"output_path": str(kept), "output": result["output"], "faces": result["faces"]}
            raise
        context.report("upload", 1, 1)
        result["timing"]["upload_ms"] = round(upload.elapsed_ms, 1)
        result["timing"]["total_ms"] = round((time.perf_counter() - started) * 1000, 1)
        result["upload"] = {"status_code": upload.status_code, "attempts": upload.attempts,
                            "bytes": upload.bytes_sent}
        return result

    return work


async def parse_body(request: Request, kind: str) -> tuple[dict, Work]:
    """(raw body, its work) for a kind; raises LipSyncError (4xx)."""
    state = request.app.state
    try:
        raw = await read_json(request, state.limits.max_body_bytes)
    except BodyTooLarge:
        state.metrics.rejected.labels(kind, "body_too_large").inc()
        raise
    if kind == "lipsync":
        return raw, lipsync_work(parse_lipsync(raw), state)
    return raw, detect_work(parse_detect(raw), state)


# ---------------------------------------------------------------- routes


async def run_sync(request: Request, kind: str) -> Response:
    """A sync endpoint: queue the job, wait for it, answer its result; cancel it if the client goes."""
    state = request.app.state
    service: JobService = state.jobs
    try:
        raw, work = await parse_body(request, kind)
        live = service.submit(kind, raw, work, mode="sync")
    except Busy as exc:
        return busy_response(exc, state.limits)
    except LipSyncError as exc:
        return error(exc.status_code, str(exc))
    try:
        checked = time.monotonic()
        while not live.done.is_set():
            await anyio.sleep(0.05)
            if time.monotonic() - checked >= 0.5:
                checked = time.monotonic()
                if await request.is_disconnected():
                    service.cancel(live.job_id, "client disconnected")
                    break
        await anyio.to_thread.run_sync(live.done.wait)
    finally:
        if not live.done.is_set():  # the request itself was cancelled (server shutting down)
            service.cancel(live.job_id, "request cancelled")
    record = service.store.get(live.job_id)
    if record.state == SUCCEEDED:
        response = JSONResponse(record.result)
    else:
        if record.state == FAILED and record.error_status < 500:
            log.info("event=job_refused job_id=%s", live.job_id)
        response = error(record.error_status, record.error, **record.error_details)
    response.headers["X-Job-Id"] = live.job_id
    return response


async def detect_faces_route(request: Request) -> Response:
    return await run_sync(request, "detect-faces")


async def lipsync_route(request: Request) -> Response:
    return await run_sync(request, "lipsync")


async def submit_job(request: Request, kind: str) -> Response:
    state = request.app.state
    try:
        raw, work = await parse_body(request, kind)
        if kind == "lipsync":  # refuse a bad upload_url now, not when the job's turn comes
            check_upload_url(raw["upload_url"], state.upload_policy, probe_connect=False)
        webhook_url = check_webhook_url(raw.get("webhook_url"), state.upload_policy)
        live = state.jobs.submit(kind, raw, work, webhook_url)
    except Busy as exc:
        return busy_response(exc, state.limits)
    except LipSyncError as exc:
        return error(exc.status_code, str(exc))
    location = f"/jobs/{live.job_id}"
    return JSONResponse({"job_id": live.job_id, "state": "queued", "status_url": location,
                         "events_url": f"{location}/events"}, status_code=202, headers={"Location": location})


async def submit_lipsync_route(request: Request) -> Response:
    return await submit_job(request, "lipsync")


async def submit_detect_route(request: Request) -> Response:
    return await submit_job(request, "detect-faces")


def job_json(service: JobService, record: JobRecord) -> dict:
    body = record.public_json()
    body["queue_position"] = service.position(record.job_id)
    return body


def unknown_job(job_id: str) -> JSONResponse:
    return error(404, f"no job {job_id}: it never existed or its record expired (LIPSYNC_JOB_TTL_S)")


async def job_route(request: Request) -> Response:
    service: JobService = request.app.state.jobs
    job_id = request.path_params["job_id"]
    record = service.store.get(job_id)
    return unknown_job(job_id) if record is None else JSONResponse(job_json(service, record))


async def cancel_job_route(request: Request) -> Response:
    """Cancel a queued or running job; answers its record once it stopped (202 if still stopping)."""
    service: JobService = request.app.state.jobs
    job_id = request.path_params["job_id"]
    record = service.store.get(job_id)
    if record is None:
        return unknown_job(job_id)
    if record.finished:
        return error(409, f"job {job_id} already {record.state}; nothing to cancel", state=record.state)
    service.cancel(job_id, "cancelled by the client")
    log_event("job_cancel_requested", job_id)
    deadline = time.monotonic() + 10.0
    while time.monotonic() < deadline:
        record = service.store.get(job_id)
        if record.finished:
            return JSONResponse(job_json(service, record))
        await anyio.sleep(0.05)
    return JSONResponse(job_json(service, record), status_code=202)


def sse(event: str, data: dict) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


async def job_events_route(request: Request) -> Response:
    """Server-Sent Events: `progress` whenever it moves (percent never goes down), then one
    final `state` event with the job record (result or error)."""
    service: JobService = request.app.state.jobs
    job_id = request.path_params["job_id"]
    if service.store.get(job_id) is None:
        return unknown_job(job_id)

    async def stream():
        last = None
        idle = 0.0
        while True:
            record = service.store.get(job_id)
            if record is None:
                yield sse("error", {"job_id": job_id, "error": "the job record expired"})
                return
            progress = {"job_id": job_id, "state": record.state, **asdict(record.progress)}
            if progress != last:
                yield sse("progress", progress)
                last, idle = progress, 0.0
            if record.finished:
                yield sse("state", job_json(service, record))
                return
            await anyio.sleep(0.1)
            idle += 0.1
            if idle >= 15:
                yield b": keep-alive\n\n"
                idle = 0.0

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


async def health_route(request: Request) -> JSONResponse:
    state = request.app.state
    report = health.report(state.registry, state.settings)
    report["jobs"] = {"running": state.jobs.admission.running, "waiting": state.jobs.admission.waiting,
                      "concurrency": state.limits.concurrency, "max_waiting": state.limits.max_waiting,
                      "accepting": not state.jobs.admission.closed}
    return JSONResponse(report)


async def metrics_route(request: Request) -> Response:
    metrics: ServiceMetrics = request.app.state.metrics
    return Response(metrics.render(), media_type=metrics.content_type)


def create_app(settings: Settings | None = None, fetch_policy: FetchPolicy | None = None,
               upload_policy: UploadPolicy | None = None, limits: Limits | None = None) -> Starlette:
    configure_logging()
    settings = settings or Settings.from_env()
    limits = limits or Limits.from_env()

    @asynccontextmanager
    async def lifespan(app: Starlette):
        try:  # warm the face backend so the first request does not pay for it
            await anyio.to_thread.run_sync(app.state.registry.face_backend)
        except Exception:  # noqa: BLE001 - /health reports it; requests get the error
            log.exception("face backend failed to load")
        yield
        await anyio.to_thread.run_sync(app.state.jobs.shutdown, limits.shutdown_grace_s)

    app = Starlette(routes=[
        Route("/health", health_route, methods=["GET"]),
        Route("/metrics", metrics_route, methods=["GET"]),
        Route("/detect-faces", detect_faces_route, methods=["POST"]),
        Route("/lipsync", lipsync_route, methods=["POST"]),
        Route("/jobs/detect-faces", submit_detect_route, methods=["POST"]),
        Route("/jobs/lipsync", submit_lipsync_route, methods=["POST"]),
        Route("/jobs/{job_id}", job_route, methods=["GET"]),
        Route("/jobs/{job_id}", cancel_job_route, methods=["DELETE"]),
        Route("/jobs/{job_id}/events", job_events_route, methods=["GET"]),
    ], lifespan=lifespan)
    app.state.settings = settings
    app.state.limits = limits
    app.state.registry = shared_registry(settings)
    app.state.fetch_policy = fetch_policy or FetchPolicy.from_env()
    app.state.upload_policy = upload_policy or UploadPolicy.from_env()
    app.state.metrics = ServiceMetrics()
    app.state.jobs = JobService(settings, limits, app.state.upload_policy, app.state.metrics)
    return app


app = create_app()
