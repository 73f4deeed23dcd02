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

A job holds every upload it names for its whole life: `FileStore.lease` (at submit, which
also refuses an unknown or expired id with 422) writes `.leases/<id>.<job id>`, and a leased
file is neither expired nor swept until `FileStore.release` (when the job ends) or LEASE_MAX_S.
Uploads reserve their bytes against LIPSYNC_UPLOAD_TOTAL_BYTES as they arrive (`UploadQuota`),
under one lock, so concurrent uploads never hold more than the total together.

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
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from stream.errors import FetchError

UPLOAD_SCHEME = "upload://"
_ID = re.compile(r"[0-9a-f]{32}")
_SUFFIX = re.compile(r"\.[A-Za-z0-9]{1,5}")
LEASES = ".leases"
"""Sub-folder of a store holding `<file id>.<job id>` lease files (empty: their mtime is the lease's start)."""
LEASE_MAX_S = 24 * 3600.0
"""A lease older than this (its job was lost without ending, seconds) holds its file no more."""
_HOLDER = re.compile(r"[0-9A-Za-z_-]{1,64}")
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

    def get(self, file_id: str, held: bool = True) -> KeptFile | None:
        """The live file with this id, or None (unknown, malformed, or expired and, with `held`,
        not leased by a job)."""
        if not _ID.fullmatch(file_id) or not self.folder.is_dir():
            return None
        for path in self.folder.glob(f"{file_id}*"):
            if not path.is_file() or path.name.split(".", 1)[0] != file_id:
                continue
            expires_at = path.stat().st_mtime + self.ttl_s
            if time.time() < expires_at or (held and self.leased(file_id)):
                return KeptFile(file_id, path, expires_at)
        return None

    def lease(self, file_id: str, holder: str) -> KeptFile | None:
        """Hold a live file for `holder` (a job id) until `release(holder)`; None when the id is
        unknown or expired, even while older jobs still hold it (nothing is held then)."""
        if not _HOLDER.fullmatch(holder):
            raise ValueError(f"lease holder {holder!r} must be 1-64 letters, digits, _ or -")
        kept = self.get(file_id, held=False)
        if kept is None:
            return None
        leases = self.folder / LEASES
        leases.mkdir(exist_ok=True)
        (leases / f"{file_id}.{holder}").touch()
        return kept if self.get(file_id) is not None else None  # not swept in between

    def release(self, holder: str) -> int:
        """Drop every lease `holder` has; returns how many."""
        leases = self.folder / LEASES
        if not _HOLDER.fullmatch(holder) or not leases.is_dir():
            return 0
        count = 0
        for path in leases.glob(f"*.{holder}"):
            path.unlink(missing_ok=True)
            count += 1
        return count

    def leased(self, file_id: str) -> bool:
        """True while some job holds the file (a lease younger than LEASE_MAX_S)."""
        leases = self.folder / LEASES
        if not leases.is_dir():
            return False
        cutoff = time.time() - LEASE_MAX_S
        for path in leases.glob(f"{file_id}.*"):
            try:
                if path.stat().st_mtime >= cutoff:
                    return True
            except FileNotFoundError:
                continue
        return False

    def files(self) -> list[Path]:
        """The stored files, arriving ones too (not the lease folder)."""
        if not self.folder.is_dir():
            return []
        return [path for path in self.folder.iterdir() if _ID.fullmatch(path.name.split(".", 1)[0]) and path.is_file()]

    def total_bytes(self, exclude: frozenset[Path] | set[Path] = frozenset()) -> int:
        """Bytes the store's files hold now (expired ones are swept first), less those in `exclude`."""
        self.sweep()
        total = 0
        for path in self.files():
            if path not in exclude:
                try:
                    total += path.stat().st_size
                except FileNotFoundError:
                    continue
        return total

    def sweep(self) -> int:
        """Delete expired files that no job holds, and stale leases; returns how many files went."""
        if not self.folder.is_dir():
            return 0
        now = time.time()
        leases = self.folder / LEASES
        if leases.is_dir():
            for path in leases.iterdir():
                try:
                    if path.stat().st_mtime < now - LEASE_MAX_S:
                        path.unlink()
                except FileNotFoundError:
                    continue
        cutoff = now - self.ttl_s
        removed = 0
        for path in self.files():
            try:
                if path.stat().st_mtime < cutoff and not self.leased(path.name.split(".", 1)[0]):
                    path.unlink()
                    removed += 1
            except FileNotFoundError:
                continue
        return removed


class UploadQuota:
    """Bytes of uploads on disk plus those arriving, never over `total` (LIPSYNC_UPLOAD_TOTAL_BYTES).

    Each arriving chunk is reserved (`reserve`) under one lock before it is written, against
    the bytes the finished uploads hold (read from disk when an upload starts, the arriving
    files left out) plus every upload's reservation; a failed upload gives its bytes back
    (`end`). One quota per store folder in this process (`upload_quota`)."""

    def __init__(self, store: FileStore, total: int) -> None:
        self.store = store
        self.total = total
        self._lock = threading.Lock()
        self._stored = 0  # bytes of finished uploads, as of the last start()
        self._arriving: dict[Path, int] = {}  # an arriving upload's path -> bytes reserved

    def start(self, path: Path, declared: int | None = None) -> bool:
        """Begin an upload to `path`; False (nothing reserved) when `declared` bytes would not fit."""
        with self._lock:
            self._stored = self.store.total_bytes(exclude=set(self._arriving))
            if declared is not None and self._used() + declared > self.total:
                return False
            self._arriving[path] = 0
            return True

    def reserve(self, path: Path, count: int) -> bool:
        """Reserve `count` more bytes for the upload to `path`; False when they would pass the total."""
        with self._lock:
            if self._used() + count > self.total:
                return False
            self._arriving[path] = self._arriving.get(path, 0) + count
            return True

    def end(self, path: Path, kept: bool) -> None:
        """The upload to `path` finished: its bytes now count as stored (kept) or are given back."""
        with self._lock:
            size = self._arriving.pop(path, 0)
            if kept:
                self._stored += size

    def _used(self) -> int:
        return self._stored + sum(self._arriving.values())


_QUOTAS: dict[Path, UploadQuota] = {}
_QUOTAS_LOCK = threading.Lock()


def upload_quota(store: FileStore, total: int) -> UploadQuota:
    """The one quota of `store`'s folder in this process (its total updated to `total`)."""
    key = store.folder.resolve()
    with _QUOTAS_LOCK:
        quota = _QUOTAS.get(key)
        if quota is None:
            quota = _QUOTAS[key] = UploadQuota(store, total)
        quota.total = total
        return quota


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
    if target.is_file():  # the same upload named twice in one request (video and audio, two stems)
        return target
    try:
        os.link(kept.path, target)
    except OSError:
        shutil.copyfile(kept.path, target)
    return target


def upload_ids(urls: list[str | None]) -> list[tuple[str, str]]:
    """(url, id) of each `upload://` URL among `urls`, each once."""
    found: dict[str, str] = {}
    for url in urls:
        if url is not None and is_upload_url(url):
            found.setdefault(url, url[len(UPLOAD_SCHEME):].strip("/"))
    return list(found.items())
