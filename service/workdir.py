"""The server's files in its workdir (LIPSYNC_WORKDIR): job temp dirs and kept failed-upload outputs.

A job runs in `lipsync-XXXX/`, which holds `.lock`, flock'ed for the job's whole life: the
kernel drops that lock when the process ends, even on SIGKILL, so a dir whose lock can be
taken belongs to nobody. Outputs whose upload failed are kept in `failed-uploads/` for
keep_failed_s (LIPSYNC_KEEP_FAILED_S), then deleted.

`sweep` runs when the server starts: it removes abandoned job dirs and expired kept outputs
(and schedules the rest), and touches nothing else in the folder, since the workdir may be
the system temp dir, or shared by several servers and workers.
"""
from __future__ import annotations

import fcntl
import logging
import os
import re
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

JOB_DIR_PREFIX = "lipsync-"
JOB_DIR_NAME = re.compile(re.escape(JOB_DIR_PREFIX) + r"[a-z0-9_]{8}")
"""A job dir's whole name: the prefix and mkdtemp's 8 random characters. The stores beside them
(`lipsync-uploads/`, `lipsync-results/`) share the prefix and must never match."""
KEPT_DIR = "failed-uploads"
_LOCK = ".lock"
UNLOCKED_STALE_S = 6 * 3600.0
"""A job dir with no lock file (made by an older version, or caught between mkdtemp and the lock)
is removed only once it is this old, seconds."""


@contextmanager
def job_dir(workdir: Path) -> Iterator[Path]:
    """A fresh `lipsync-*` dir in `workdir`, locked while the block runs, removed after it."""
    Path(workdir).mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix=JOB_DIR_PREFIX, dir=workdir))
    lock = os.open(path / _LOCK, os.O_CREAT | os.O_RDWR, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
        os.close(lock)  # after the removal, so a sweep never sees the dir unlocked while it exists


def _abandoned(path: Path, now: float) -> bool:
    """True when no live process holds the job dir's lock."""
    try:
        fd = os.open(path / _LOCK, os.O_RDWR)
    except FileNotFoundError:
        return now - path.stat().st_mtime > UNLOCKED_STALE_S
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)  # closing drops a lock we took
    return True


def keep_output(path: Path, workdir: Path, keep_s: float) -> Path:
    """Move an output whose upload failed to `failed-uploads/`; it is deleted keep_s seconds from now."""
    folder = Path(workdir) / KEPT_DIR
    folder.mkdir(parents=True, exist_ok=True)
    kept = folder / f"{uuid.uuid4().hex}.mp4"
    shutil.move(str(path), kept)
    os.utime(kept)  # its age counts from now, for the sweep after a restart
    _delete_later(kept, keep_s)
    return kept


def _delete_later(path: Path, delay_s: float) -> None:
    timer = threading.Timer(max(0.0, delay_s), lambda: path.unlink(missing_ok=True))
    timer.daemon = True
    timer.start()


def sweep_job_dirs(workdir: Path) -> int:
    """Remove the job dirs no live process holds (their job's process died, even by SIGKILL);
    returns how many. Safe while other processes run jobs in the same workdir: theirs are locked.
    Queue workers run it at start and before each job, so a killed worker's dir does not stay."""
    workdir = Path(workdir)
    if not workdir.is_dir():
        return 0
    now = time.time()
    removed = 0
    for path in workdir.glob(f"{JOB_DIR_PREFIX}*"):
        if JOB_DIR_NAME.fullmatch(path.name) and path.is_dir() and not path.is_symlink() and _abandoned(path, now):
            shutil.rmtree(path, ignore_errors=True)
            removed += 1
    return removed


@dataclass
class SweepReport:
    job_dirs: int = 0  # abandoned job dirs removed
    kept_outputs: int = 0  # expired kept outputs removed
    kept_scheduled: int = 0  # kept outputs still within keep_s, deleted when they expire


def sweep(workdir: Path, keep_s: float) -> SweepReport:
    """Remove abandoned job dirs and expired kept outputs from `workdir`; nothing else is touched."""
    report = SweepReport()
    workdir = Path(workdir)
    if not workdir.is_dir():
        return report
    now = time.time()
    report.job_dirs = sweep_job_dirs(workdir)
    kept_dir = workdir / KEPT_DIR
    if kept_dir.is_dir() and not kept_dir.is_symlink():
        for path in kept_dir.glob("*.mp4"):
            if not path.is_file() or len(path.stem) != 32:  # only names keep_output gives
                continue
            left = path.stat().st_mtime + keep_s - now
            if left <= 0:
                path.unlink(missing_ok=True)
                report.kept_outputs += 1
            else:
                _delete_later(path, left)
                report.kept_scheduled += 1
    log.info("event=workdir_swept job_id=- workdir=%s job_dirs=%d kept_outputs=%d kept_scheduled=%d",
             workdir, report.job_dirs, report.kept_outputs, report.kept_scheduled)
    return report
