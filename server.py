"""The HTTP API (Starlette): `uvicorn server:app`.

A table of routes (`create_app`) and small handlers: each reads and checks the body,
hands the job to the job service, and shapes the JSON. No media code, no job code here.

Every request that runs a pipeline is a job: the sync endpoints (`/detect-faces`,
`/lipsync`) wait for theirs and answer its result; `/jobs/...` answers 202 at once and the
caller polls `GET /jobs/{id}`, follows `GET /jobs/{id}/events` (Server-Sent Events) or
gets a webhook. Both kinds share one bounded FIFO queue: when it is full they answer 503
with Retry-After. A sync client that disconnects cancels its job. Errors the caller can
fix come back as 4xx with `success: false` and a message that says what to fix.

The job service is one of two twins with the same methods (submit, cancel, position,
store, health, shutdown):
- `service.job_service.JobService`, the default: jobs run on this process's threads
  (service.admission: LIPSYNC_CONCURRENCY at once, LIPSYNC_MAX_WAITING waiting).
- `service.queue.QueueService`, with LIPSYNC_QUEUE=redis://host:port/db: jobs go through
  Celery to any number of `python -m service.worker` processes; this server only admits,
  enqueues and reports (records and progress live in Redis).

Who may call it (service.guard): only the Host names in LIPSYNC_ALLOWED_HOSTS (default
localhost), writes from a browser only from this server's own page (or LIPSYNC_ALLOWED_ORIGINS),
JSON bodies only as application/json (415), security headers on every response.

On shutdown (lifespan), in-process: nothing new is admitted, waiting jobs are cancelled,
running jobs get LIPSYNC_SHUTDOWN_GRACE_S to finish and are then cancelled; every job's
temp dir goes. In queue mode the workers own the jobs and carry on. Uvicorn first waits
for open requests, so run it with `--timeout-graceful-shutdown` (the Dockerfile does) to
bound how long a sync request or an SSE stream can hold it.
"""
from __future__ import annotations

import json
import logging
import os
import time
from contextlib import asynccontextmanager
from dataclasses import asdict

import anyio
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from jobs.config import Settings
from jobs.registry import shared_registry
from jobs.schema import MAX_DEPTH, check_json
from service import health
from service.addresses import clipped
from service.admission import BodyTooLarge, Busy, Limits, ShuttingDown
from service.delivery import UploadPolicy, check_upload_url
from service.fetch import FetchPolicy
from service.guard import (
    BrowserPolicy,
    CrossSiteGuard,
    SecurityHeaders,
    TrustedHosts,
    require_json,
)
from service.job_service import SHUTDOWN_REASON, JobConfig, JobService
from service.jobstore import FAILED, SUCCEEDED, JobRecord, configure_logging, log_event
from service.prom import ServiceMetrics
from service.review import review_routes
from service.webhook import check_webhook_url
from service.workdir import sweep
from stream.errors import InputError, LipSyncError

log = logging.getLogger("server")


def error(status: int, message: str, **extra) -> JSONResponse:
    return JSONResponse({"success": False, "error_message": message, **extra}, status_code=status)


def busy_response(exc: Busy, limits: Limits) -> JSONResponse:
    response = error(503, f"server {'shutting down' if isinstance(exc, ShuttingDown) else 'busy'}: {exc}")
    response.headers["Retry-After"] = str(limits.retry_after_s)
    return response


async def read_json(request: Request, limit: int) -> object:
    """The body as JSON; NotJson (415) unless sent as application/json, BodyTooLarge (413) past
    `limit` bytes, without reading the rest."""
    require_json(request.headers.get("content-type"))
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
        parsed = json.loads(bytes(body))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"request body is not valid JSON ({exc})") from None
    except RecursionError:
        raise InputError(f"request body nests arrays or objects more than {MAX_DEPTH} levels deep") from None
    except ValueError as exc:  # an integer literal over sys.get_int_max_str_digits() digits
        raise InputError(f"request body has a number too long to read ({exc})") from None
    check_json(parsed)
    return parsed


async def read_body(request: Request, kind: str) -> object:
    """The request's JSON body; counts a 413 in the metrics."""
    state = request.app.state
    try:
        return await read_json(request, state.limits.max_body_bytes)
    except BodyTooLarge:
        state.metrics.rejected.labels(kind, "body_too_large").inc()
        raise


# ---------------------------------------------------------------- routes


async def run_sync(request: Request, kind: str) -> Response:
    """A sync endpoint: queue the job, wait for it, answer its result; cancel it if the client goes."""
    state = request.app.state
    service = state.jobs
    try:
        raw = await read_body(request, kind)
        job_id = service.submit(kind, raw, mode="sync")
    except Busy as exc:
        return busy_response(exc, state.limits)
    except LipSyncError as exc:
        return error(exc.status_code, str(exc))
    try:
        record, checked, cancelled = service.store.get(job_id), time.monotonic(), False
        while not record.finished:
            await anyio.sleep(0.05)
            if not cancelled and time.monotonic() - checked >= 0.5:
                checked = time.monotonic()
                if await request.is_disconnected():
                    service.cancel(job_id, "client disconnected")
                    cancelled = True
            record = service.store.get(job_id)
    except anyio.get_cancelled_exc_class():
        # uvicorn cancels the requests still open when --timeout-graceful-shutdown runs out:
        # stop the job and answer 503 + Retry-After instead of dying with a 500
        service.cancel(job_id, SHUTDOWN_REASON)
        response = busy_response(ShuttingDown("the server stopped before the job finished; retry"), state.limits)
        response.headers["X-Job-Id"] = job_id
        return response
    if record.state == SUCCEEDED:
        response = JSONResponse(record.result)
    else:
        if record.state == FAILED and record.error_status < 500:
            log.info("event=job_refused job_id=%s", job_id)
        response = error(record.error_status, record.error, **record.error_details)
    response.headers["X-Job-Id"] = job_id
    return response


async def detect_faces_route(request: Request) -> Response:
    return await run_sync(request, "detect-faces")


async def lipsync_route(request: Request) -> Response:
    return await run_sync(request, "lipsync")


async def submit_job(request: Request, kind: str) -> Response:
    state = request.app.state
    try:
        raw = await read_body(request, kind)
        if kind == "lipsync" and isinstance(raw, dict) and raw.get("upload_url") and isinstance(raw["upload_url"], str):
            # refuse a bad upload_url now, not when the job's turn comes
            check_upload_url(raw["upload_url"], state.upload_policy, probe_connect=False)
        webhook_url = check_webhook_url(raw.get("webhook_url") if isinstance(raw, dict) else None,
                                        state.upload_policy)
        job_id = state.jobs.submit(kind, raw, webhook_url)
    except Busy as exc:
        return busy_response(exc, state.limits)
    except LipSyncError as exc:
        return error(exc.status_code, str(exc))
    location = f"/jobs/{job_id}"
    return JSONResponse({"job_id": job_id, "state": "queued", "status_url": location,
                         "events_url": f"{location}/events"}, status_code=202, headers={"Location": location})


async def submit_lipsync_route(request: Request) -> Response:
    return await submit_job(request, "lipsync")


async def submit_detect_route(request: Request) -> Response:
    return await submit_job(request, "detect-faces")


def job_json(service, record: JobRecord) -> dict:
    body = record.public_json()
    body["queue_position"] = service.position(record.job_id)
    return body


def unknown_job(job_id: str) -> JSONResponse:
    return error(404, f"no job {clipped(job_id, 64)}: it never existed or its record expired (LIPSYNC_JOB_TTL_S)")


async def job_route(request: Request) -> Response:
    service = request.app.state.jobs
    job_id = request.path_params["job_id"]
    record = service.store.get(job_id)
    return unknown_job(job_id) if record is None else JSONResponse(job_json(service, record))


async def cancel_job_route(request: Request) -> Response:
    """Cancel a queued or running job; answers its record once it stopped (202 if still stopping)."""
    service = request.app.state.jobs
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
    service = request.app.state.jobs
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
    report["jobs"] = await anyio.to_thread.run_sync(state.jobs.health)
    return JSONResponse(report)


async def metrics_route(request: Request) -> Response:
    metrics: ServiceMetrics = request.app.state.metrics
    return Response(metrics.render(), media_type=metrics.content_type)


def job_service(config: JobConfig, metrics: ServiceMetrics, queue_url: str | None):
    """The embedded queue, or the Celery front when a queue URL is set (LIPSYNC_QUEUE)."""
    if not queue_url:
        return JobService(config, metrics)
    from service.queue import (  # celery and redis are needed only in queue mode
        QueueConfig,
        QueueService,
    )

    return QueueService(QueueConfig.from_env(url=queue_url), config, metrics)


def create_app(settings: Settings | None = None, fetch_policy: FetchPolicy | None = None,
               upload_policy: UploadPolicy | None = None, limits: Limits | None = None,
               queue_url: str | None = None, browser_policy: BrowserPolicy | None = None) -> Starlette:
    """The app; queue_url (default: env LIPSYNC_QUEUE) switches jobs to Celery workers;
    browser_policy (default: env LIPSYNC_ALLOWED_HOSTS, LIPSYNC_ALLOWED_ORIGINS) who may call it."""
    configure_logging()
    config = JobConfig(settings or Settings.from_env(), limits or Limits.from_env(),
                       fetch_policy or FetchPolicy.from_env(), upload_policy or UploadPolicy.from_env())
    queue_url = queue_url if queue_url is not None else os.environ.get("LIPSYNC_QUEUE", "").strip()

    @asynccontextmanager
    async def lifespan(app: Starlette):
        # what a crash (SIGKILL) or restart left behind: abandoned job dirs, expired kept outputs
        await anyio.to_thread.run_sync(sweep, config.settings.workdir, config.settings.keep_failed_s)
        await anyio.to_thread.run_sync(health.probe_hardware)  # so the first /health answers at once
        try:  # warm the face backend so the first request does not pay for it
            await anyio.to_thread.run_sync(app.state.registry.face_backend)
        except Exception:  # noqa: BLE001 - /health reports it; requests get the error
            log.exception("face backend failed to load")
        yield
        await anyio.to_thread.run_sync(app.state.jobs.shutdown, config.limits.shutdown_grace_s)

    guard = browser_policy or BrowserPolicy.from_env()
    app = Starlette(middleware=[  # outermost first: the Host, then cross-site writes (service.guard)
        Middleware(SecurityHeaders),
        Middleware(TrustedHosts, allowed_hosts=guard.allowed_hosts),
        Middleware(CrossSiteGuard, allowed_origins=guard.allowed_origins),
    ], routes=[
        Route("/health", health_route, methods=["GET"]),
        Route("/metrics", metrics_route, methods=["GET"]),
        Route("/detect-faces", detect_faces_route, methods=["POST"]),
        Route("/lipsync", lipsync_route, methods=["POST"]),
        Route("/jobs/detect-faces", submit_detect_route, methods=["POST"]),
        Route("/jobs/lipsync", submit_lipsync_route, methods=["POST"]),
        Route("/jobs/{job_id}", job_route, methods=["GET"]),
        Route("/jobs/{job_id}", cancel_job_route, methods=["DELETE"]),
        Route("/jobs/{job_id}/events", job_events_route, methods=["GET"]),
        *review_routes(),  # GET / (the review page), POST /uploads, GET /results/{id}
    ], lifespan=lifespan)
    app.state.settings = config.settings
    app.state.limits = config.limits
    app.state.registry = shared_registry(config.settings)
    app.state.fetch_policy = config.fetch_policy
    app.state.upload_policy = config.upload_policy
    app.state.metrics = ServiceMetrics()
    app.state.jobs = job_service(config, app.state.metrics, queue_url)
    return app


app = create_app()
