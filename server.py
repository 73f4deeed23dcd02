"""The HTTP API (Starlette): `uvicorn server:app`.

A table of routes and small handlers: each validates the body, fetches the inputs,
hands off to `stream.jobs` in a worker thread, and shapes the JSON. No media code here.
A client that disconnects cancels its job; errors the caller can fix come back as 4xx
with `success: false` and a message that says what to fix.
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
from pathlib import Path
from typing import Callable

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from stream import health, jobs
from stream.admission import Admission, Busy
from stream.config import Settings
from stream.context import JobContext
from stream.errors import InputError, LipSyncError, MediaError, UploadError
from stream.io import FetchPolicy, UploadPolicy, check_upload_url, fetch_to_temp, probe_media, upload_file
from stream.pipeline import PipelineCancelled
from stream.references import Character
from stream.registry import shared_registry
from stream.schema import parse_detect, parse_lipsync

log = logging.getLogger("server")


def error(status: int, message: str, **extra) -> JSONResponse:
    return JSONResponse({"success": False, "error_message": message, **extra}, status_code=status)


async def read_json(request: Request) -> object:
    try:
        return json.loads(await request.body())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"request body is not valid JSON ({exc})") from exc


async def run_job(request: Request, work: Callable[[JobContext, Path], dict]) -> JSONResponse:
    """Run `work` in a thread with a fresh workdir; cancel it if the client goes away."""
    state = request.app.state
    context = JobContext()
    workdir = Path(tempfile.mkdtemp(prefix="lipsync-", dir=state.settings.workdir))
    cancelled = threading.Event()

    def guarded() -> dict:
        with state.admission.slot(cancelled):
            return work(context, workdir)

    async def watch_disconnect() -> None:
        while True:
            if await request.is_disconnected():
                cancelled.set()
                context.cancel("client disconnected")
                return
            await anyio.sleep(0.5)

    outcome: dict | Exception
    try:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(watch_disconnect)
            try:
                outcome = await anyio.to_thread.run_sync(guarded, abandon_on_cancel=False)
            except Exception as exc:  # noqa: BLE001 - shaped into a response below
                outcome = exc
            finally:
                tasks.cancel_scope.cancel()
        if isinstance(outcome, Busy):
            response = error(503, f"server busy: {outcome}")
            response.headers["Retry-After"] = "30"
            return response
        if isinstance(outcome, LipSyncError):
            log.info("job refused: %s", outcome)
            return error(outcome.status_code, str(outcome), **getattr(outcome, "details", {}))
        if isinstance(outcome, PipelineCancelled):
            return error(499, f"job cancelled: {outcome}")
        if isinstance(outcome, Exception):
            log.error("job failed", exc_info=outcome)
            stage = getattr(outcome, "stage", None)
            return error(500, f"internal error{f' in stage {stage}' if stage else ''}: "
                              f"{type(outcome).__name__}: {outcome}")
        return JSONResponse(outcome)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


async def health_route(request: Request) -> JSONResponse:
    return JSONResponse(health.report(request.app.state.registry, request.app.state.settings))


async def detect_faces_route(request: Request) -> JSONResponse:
    try:
        body = parse_detect(await read_json(request))
    except LipSyncError as exc:
        return error(exc.status_code, str(exc))
    state = request.app.state

    def work(context: JobContext, workdir: Path) -> dict:
        started = time.perf_counter()
        video = fetch_input(body.video_url, workdir, state.fetch_policy, "video", "video_url")
        characters = [Character(c.id, c.name, fetch_input(c.reference_image_url, workdir, state.fetch_policy,
                                                          "image", f"characters[{i}].reference_image_url"))
                      for i, c in enumerate(body.characters)]
        download_ms = (time.perf_counter() - started) * 1000
        with named_inputs(video_url=video):
            result = jobs.detect_faces(video, characters, body.sample_fps, body.similarity_threshold,
                                       state.settings, context)
        result["timing"]["download_ms"] = round(download_ms, 1)
        result["timing"]["total_ms"] = round((time.perf_counter() - started) * 1000, 1)
        return result

    return await run_job(request, work)


def fetch_input(url: str, workdir: Path, policy: FetchPolicy, kind: str, label: str) -> Path:
    """Fetch and probe one input; media problems name the request field, not a temp path."""
    path = fetch_to_temp(url, workdir=workdir, policy=policy, kind=kind, label=label)
    try:
        probe_media(path, kind)
    except MediaError as exc:
        raise MediaError(label, exc.problem) from exc
    return path


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


async def lipsync_route(request: Request) -> JSONResponse:
    try:
        body = parse_lipsync(await read_json(request))
    except LipSyncError as exc:
        return error(exc.status_code, str(exc))
    state = request.app.state

    def work(context: JobContext, workdir: Path) -> dict:
        started = time.perf_counter()
        check_upload_url(body.upload_url, state.upload_policy)
        video = fetch_input(body.video_url, workdir, state.fetch_policy, "video", "video_url")
        audio = fetch_input(body.audio_url, workdir, state.fetch_policy, "audio", "audio_url")
        download_ms = (time.perf_counter() - started) * 1000
        out = workdir / "output.mp4"
        with named_inputs(video_url=video, audio_url=audio):
            result = jobs.lipsync(video, audio, body.faces, out, state.settings, context,
                                  body.enhance_quality, body.fidelity_weight, body.sync_mode)
        result["timing"]["download_ms"] = round(download_ms, 1)
        try:
            upload = upload_file(out, body.upload_url, policy=state.upload_policy)
        except UploadError as exc:
            kept = keep_failed_output(out, state.settings)
            exc.details = {"output_path": str(kept), "output": result["output"], "faces": result["faces"]}
            raise
        result["timing"]["upload_ms"] = round(upload.elapsed_ms, 1)
        result["timing"]["total_ms"] = round((time.perf_counter() - started) * 1000, 1)
        result["upload"] = {"status_code": upload.status_code, "attempts": upload.attempts,
                            "bytes": upload.bytes_sent}
        return result

    return await run_job(request, work)


def create_app(settings: Settings | None = None, fetch_policy: FetchPolicy | None = None,
               upload_policy: UploadPolicy | None = None, concurrency: int | None = None,
               max_waiting: int | None = None) -> Starlette:
    settings = settings or Settings.from_env()

    @asynccontextmanager
    async def lifespan(app: Starlette):
        try:  # warm the face backend so the first request does not pay for it
            await anyio.to_thread.run_sync(app.state.registry.face_backend)
        except Exception:  # noqa: BLE001 - /health reports it; requests get the error
            log.exception("face backend failed to load")
        yield

    app = Starlette(routes=[
        Route("/health", health_route, methods=["GET"]),
        Route("/detect-faces", detect_faces_route, methods=["POST"]),
        Route("/lipsync", lipsync_route, methods=["POST"]),
    ], lifespan=lifespan)
    app.state.settings = settings
    app.state.registry = shared_registry(settings)
    app.state.fetch_policy = fetch_policy or FetchPolicy.from_env()
    app.state.upload_policy = upload_policy or UploadPolicy.from_env()
    app.state.admission = Admission(
        concurrency or int(os.environ.get("LIPSYNC_CONCURRENCY", "1")),
        max_waiting if max_waiting is not None else int(os.environ.get("LIPSYNC_MAX_WAITING", "8")))
    return app


app = create_app()
