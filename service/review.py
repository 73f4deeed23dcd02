"""The review page's routes: the page itself, browser uploads of inputs, and kept results.

- `GET /` serves `service/ui/index.html`; `/ui/...` its ES modules and style (no build step);
  `/favicon.ico` the page's icon, so a browser asking for it gets it from here.
- `POST /uploads?kind=video|audio|image[&name=clip.mp4]`, the file as the raw body: stored
  in the workdir under a random id (service.uploads), probed like a fetched input, and
  answered 201 with `url: "upload://<id>"`, which `/detect-faces` and `/lipsync` accept
  as any input URL until it expires.
- `GET /results/{id}`: a lipsync output kept because its request had no `upload_url`
  (`result_url` in the response); `?download=1` makes it an attachment.

Errors carry `field` (the form field they are about) beside `error_message`.
"""
from __future__ import annotations

import time
from pathlib import Path

import anyio
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from jobs.probe import probe_media
from service.uploads import (
    KIND_TYPES,
    UPLOAD_SCHEME,
    StoreLimits,
    result_store,
    upload_quota,
    upload_store,
)
from stream.errors import LipSyncError, MediaError

UI_DIR = Path(__file__).resolve().parent / "ui"
ACCEPTED_TYPES = {**KIND_TYPES, "audio": KIND_TYPES["audio"] + ("video/",)}
"""Content-Type prefixes an upload of each kind may carry: a video file is accepted as the new
audio (its sound track is used; the probe refuses one without sound)."""


class UploadRefused(Exception):
    """An upload stopped mid-body: its HTTP status and the message that says what to do."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def field_error(status: int, message: str, field: str) -> JSONResponse:
    return JSONResponse({"success": False, "error_message": message, "field": field}, status_code=status)


async def index_route(request: Request) -> Response:
    return FileResponse(UI_DIR / "index.html", media_type="text/html", headers={"Cache-Control": "no-cache"})


async def favicon_route(request: Request) -> Response:
    return FileResponse(UI_DIR / "favicon.svg", media_type="image/svg+xml", headers={"Cache-Control": "max-age=86400"})


def _stores(request: Request) -> StoreLimits:
    return request.app.state.jobs.config.stores


async def upload_route(request: Request) -> Response:
    """Store one input file; 413 over LIPSYNC_UPLOAD_MAX_BYTES, 507 past LIPSYNC_UPLOAD_TOTAL_BYTES
    for all live uploads, 415 for a Content-Type of another kind, 422 when it is not a usable
    file of that kind (the same probe as a URL's)."""
    state = request.app.state
    limits = _stores(request)
    kind = request.query_params.get("kind", "")
    if kind not in KIND_TYPES:
        return field_error(422, f"query parameter 'kind' must be one of {', '.join(KIND_TYPES)}, not {kind!r}", "kind")
    name = request.query_params.get("name", "")[:200] or f"the {kind} file"
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type and content_type != "application/octet-stream" and not content_type.startswith(ACCEPTED_TYPES[kind]):
        article = "an" if kind[0] in "aeiou" else "a"
        choose = "an audio file or a video with sound" if kind == "audio" else f"{article} {kind} file"
        return field_error(415, f"{name} is sent as {content_type}, not {article} {kind} type ({KIND_TYPES[kind][0]}*); "
                                f"choose {choose}", kind)
    too_large = (f"{name} is over the {limits.upload_max_bytes} bytes this server accepts per upload "
                 "(LIPSYNC_UPLOAD_MAX_BYTES); send a shorter or more compressed file")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limits.upload_max_bytes:
        return field_error(413, too_large, kind)
    store = upload_store(state.settings.workdir, limits)
    quota = upload_quota(store, limits.upload_total_bytes)  # reserved as bytes arrive (service.uploads)
    full = (f"the server holds {limits.upload_total_bytes} bytes of uploads, its limit (LIPSYNC_UPLOAD_TOTAL_BYTES); "
            f"try again when older uploads expire (LIPSYNC_UPLOAD_TTL_S) or give {kind} as a URL")
    file_id, path = store.new_path(Path(name).suffix, tag=kind)
    if not quota.start(path, int(declared) if declared.isdigit() else None):
        return field_error(507, full, kind)
    size, kept = 0, False
    try:
        with path.open("wb") as out:
            async for chunk in request.stream():
                size += len(chunk)
                if size > limits.upload_max_bytes:
                    raise UploadRefused(413, too_large)
                if not quota.reserve(path, len(chunk)):
                    raise UploadRefused(507, full)
                out.write(chunk)
        if size == 0:
            raise MediaError(name, "is empty (0 bytes); choose the file again")
        info = await anyio.to_thread.run_sync(lambda: probe_media(path, kind, **state.limits.probe_limits(kind)))
        state.limits.check_media(name, info.duration_s, info.width if kind == "video" else None,
                                 info.height if kind == "video" else None)
    except UploadRefused as exc:
        path.unlink(missing_ok=True)
        return field_error(exc.status, str(exc), kind)
    except OSError as exc:  # the disk is full
        path.unlink(missing_ok=True)
        return field_error(507, f"storing {name} failed ({exc.strerror or exc}); try again later", kind)
    except MediaError as exc:
        path.unlink(missing_ok=True)
        return field_error(exc.status_code, f"{name}: {exc.problem}", kind)
    except LipSyncError as exc:
        path.unlink(missing_ok=True)
        return field_error(exc.status_code, str(exc), kind)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    else:
        kept = True
    finally:
        quota.end(path, kept)
    expires_at = path.stat().st_mtime + store.ttl_s
    media = {key: getattr(info, key) for key in ("duration_s", "width", "height", "fps", "has_audio")}
    return JSONResponse({"success": True, "upload_id": file_id, "url": f"{UPLOAD_SCHEME}{file_id}", "kind": kind,
                         "name": name, "size_bytes": size, "expires_at": round(expires_at, 3),
                         "expires_in_s": round(expires_at - time.time(), 1), "media": media}, status_code=201)


async def result_route(request: Request) -> Response:
    file_id = request.path_params["result_id"]
    kept = result_store(request.app.state.settings.workdir, _stores(request)).get(file_id)
    if kept is None:
        return field_error(404, f"no result {file_id[:40]}: it never existed or it expired (LIPSYNC_RESULT_TTL_S)",
                           "result")
    download = request.query_params.get("download") in ("1", "true")
    return FileResponse(kept.path, media_type="video/mp4", filename=f"lipsync-{file_id[:8]}.mp4" if download else None)


def review_routes() -> list:
    """The page, its files, uploads and results; server.create_app adds them to its table."""
    return [
        Route("/", index_route, methods=["GET"]),
        Route("/favicon.ico", favicon_route, methods=["GET"]),
        Mount("/ui", app=StaticFiles(directory=UI_DIR), name="ui"),
        Route("/uploads", upload_route, methods=["POST"]),
        Route("/results/{result_id}", result_route, methods=["GET"]),
    ]
