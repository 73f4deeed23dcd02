"""Files the server keeps for a while under a random id: inputs a browser uploaded, and
lipsync results that had no `upload_url`.

An uploaded input is named in a request as `upload://<id>`. That URL never reaches the
HTTP fetcher: `UploadStore.fetch` looks the id up in one folder of the server's workdir
(a 32-hex-digit id, so no path can be smuggled in) and links the file into the job's temp
dir. The SSRF guard of `service.addresses` is untouched: http(s) URLs still must resolve to public
addresses, local paths and file:// URLs stay refused (LIPSYNC_ALLOW_LOCAL_FILES=0), and no
same-server http URL needs loopback to be allowed.

Expiry is by file age (mtime), checked on every lookup and swept on every store, so it
holds across restarts and for every process that shares the workdir (queue workers must
share LIPSYNC_WORKDIR with the server to read uploads and write results).

Env vars (read by `StoreLimits.from_env`):

  LIPSYNC_UPLOAD_MAX_BYTES   largest file POST /uploads accepts, bytes (413 above); default 536870912 (512 MiB)
  LIPSYNC_UPLOAD_TOTAL_BYTES most bytes all live uploads together may hold (507 above); default 10737418240 (10 GiB)
  LIPSYNC_UPLOAD_TTL_S       how long an uploaded input stays usable, seconds; default 3600
  LIPSYNC_RESULT_TTL_S       how long a result kept on the server stays at GET /results/{id}, seconds; default 3600
"""
from __future__ import annotations

import os
import re
import shutil
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from stream.errors import FetchError

UPLOAD_SCHEME = "upload://"
_ID = re.compile(r"[0-9a-f]{32}")
_SUFFIX = re.compile(r"\.[A-Za-z0-9]{1,5}")
KIND_TYPES = {"video": ("video/",), "audio": ("audio/",), "image": ("image/",)}
"""Content-Type prefixes accepted per kind (plus application/octet-stream and none at all)."""


@dataclass(frozen=True)
class StoreLimits:
    """Size and lifetime of kept files; each field has an env var twin (module docstring)."""

    upload_max_bytes: int = 512 * 1024**2  # LIPSYNC_UPLOAD_MAX_BYTES, bytes
    upload_total_bytes: int = 10 * 1024**3  # LIPSYNC_UPLOAD_TOTAL_BYTES, bytes
    upload_ttl_s: float = 3600.0  # LIPSYNC_UPLOAD_TTL_S, seconds
    result_ttl_s: float = 3600.0  # LIPSYNC_RESULT_TTL_S, seconds

    def __post_init__(self) -> None:
        if self.upload_max_bytes < 1 or self.upload_total_bytes < 1 or self.upload_ttl_s <= 0 or self.result_ttl_s <= 0:
            raise ValueError("StoreLimits: the byte limits must be >= 1 and the TTLs > 0")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> StoreLimits:
        env = os.environ if environ is None else environ
        d = cls()

        def number(name: str, default: float, cast: type) -> float:
            raw = env.get(name, "").strip()
            try:
                return cast(raw) if raw else default
            except ValueError:
                raise ValueError(f"{name}={raw!r} is not a valid {cast.__name__}") from None

        return cls(int(number("LIPSYNC_UPLOAD_MAX_BYTES", d.upload_max_bytes, int)),
                   int(number("LIPSYNC_UPLOAD_TOTAL_BYTES", d.upload_total_bytes, int)),
                   number("LIPSYNC_UPLOAD_TTL_S", d.upload_ttl_s, float),
                   number("LIPSYNC_RESULT_TTL_S", d.result_ttl_s, float))


@dataclass(frozen=True)
class KeptFile:
    """A file in a store: its id, path, and when it expires (Unix time, seconds)."""

    file_id: str
    path: Path
    expires_at: float


class FileStore:
    """One folder of files named `<id>[.<kind>]<suffix>` that expire `ttl_s` after they were written."""

    def __init__(self, folder: Path, ttl_s: float) -> None:
        self.folder = Path(folder)
        self.ttl_s = ttl_s

    def new_path(self, suffix: str = "", tag: str = "") -> tuple[str, Path]:
        """A fresh random id and the path to write it at (the folder is created, old files swept)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        self.sweep()
        file_id = uuid.uuid4().hex
        suffix = suffix.lower() if _SUFFIX.fullmatch(suffix or "") else ""
        return file_id, self.folder / f"{file_id}{'.' + tag if tag else ''}{suffix}"

    def keep(self, source: Path, suffix: str = ".mp4") -> KeptFile:
        """Move `source` into the store under a new id."""
        file_id, path = self.new_path(suffix)
        shutil.move(str(source), path)
        return KeptFile(file_id, path, path.stat().st_mtime + self.ttl_s)

    def get(self, file_id: str) -> KeptFile | None:
        """The live file with this id, or None (unknown, malformed or expired)."""
        if not _ID.fullmatch(file_id) or not self.folder.is_dir():
            return None
        for path in self.folder.glob(f"{file_id}*"):
            expires_at = path.stat().st_mtime + self.ttl_s
            if time.time() < expires_at and path.name.split(".", 1)[0] == file_id:
                return KeptFile(file_id, path, expires_at)
        return None

    def total_bytes(self) -> int:
        """Bytes the store's files hold now (expired ones are swept first)."""
        self.sweep()
        return sum(path.stat().st_size for path in self.folder.glob("*")) if self.folder.is_dir() else 0

    def sweep(self) -> int:
        """Delete expired files; returns how many went."""
        if not self.folder.is_dir():
            return 0
        cutoff = time.time() - self.ttl_s
        removed = 0
        for path in self.folder.iterdir():
            try:
                if path.stat().st_mtime < cutoff:
                    path.unlink()
                    removed += 1
            except FileNotFoundError:
                continue
        return removed


def upload_store(workdir: Path, limits: StoreLimits) -> FileStore:
    return FileStore(Path(workdir) / "lipsync-uploads", limits.upload_ttl_s)


def result_store(workdir: Path, limits: StoreLimits) -> FileStore:
    return FileStore(Path(workdir) / "lipsync-results", limits.result_ttl_s)


def is_upload_url(url: str) -> bool:
    return url.lower().startswith(UPLOAD_SCHEME)


def fetch_upload(url: str, store: FileStore, job_dir: Path, label: str) -> Path:
    """The uploaded file `upload://<id>` linked (or copied) into the job's temp dir, so it
    outlives its expiry while the job runs. FetchError (422) names the field when the id is
    unknown or expired."""
    file_id = url[len(UPLOAD_SCHEME):].strip("/")
    kept = store.get(file_id)
    if kept is None:
        raise FetchError(f"{label} {url[:60]!r} is not a known upload or it expired (after "
                         f"{store.ttl_s:g} s, LIPSYNC_UPLOAD_TTL_S); upload the file again")
    job_dir.mkdir(parents=True, exist_ok=True)
    target = job_dir / f"upload-{kept.path.name}"
    try:
        os.link(kept.path, target)
    except OSError:
        shutil.copyfile(kept.path, target)
    return target
