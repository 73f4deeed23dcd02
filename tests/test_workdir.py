"""stream/workdir.py: the startup sweep removes what a crashed server left, and nothing else.

A real process is SIGKILLed inside a job dir; another one holds its job dir while the sweep runs.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

from jobs.config import Settings
from server import create_app
from service.admission import Limits
from service.delivery import UploadPolicy
from service.fetch import FetchPolicy
from service.workdir import KEPT_DIR, UNLOCKED_STALE_S, job_dir, keep_output, sweep
from tests.live_server import LiveServer

ROOT = Path(__file__).resolve().parents[1]
HOLD = """
import os, signal, sys, time
from pathlib import Path
from service.workdir import job_dir
with job_dir(Path(sys.argv[1])) as path:
    (path / "video-partial.mp4").write_bytes(b"x" * 1000)
    print(path, flush=True)
    if sys.argv[2] == "crash":
        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(60)
"""


def hold_job_dir(workdir: Path, mode: str) -> tuple[subprocess.Popen, Path]:
    """A real process inside a job dir: 'crash' SIGKILLs itself there, 'live' stays."""
    process = subprocess.Popen([sys.executable, "-c", HOLD, str(workdir), mode], cwd=ROOT,
                               stdout=subprocess.PIPE, text=True)
    return process, Path(process.stdout.readline().strip())


def leave_a_mess(workdir: Path) -> dict[str, Path]:
    """A crashed job dir, a live one, old and new unlocked ones, kept outputs, and files that are not ours."""
    crashed, crashed_dir = hold_job_dir(workdir, "crash")
    assert crashed.wait(30) == -signal.SIGKILL and crashed_dir.is_dir()
    old = time.time() - UNLOCKED_STALE_S - 60
    legacy = workdir / "lipsync-k3j_9x2a"  # an unlocked job dir (mkdtemp's name) of an older version
    legacy.mkdir()
    os.utime(legacy, (old, old))
    stores = []  # the upload and result stores share the prefix and hold no .lock (issue 22 item 6)
    for name in ("lipsync-uploads", "lipsync-results"):
        store = workdir / name
        store.mkdir()
        (store / f"{uuid.uuid4().hex}.mp4").write_bytes(b"a live file")
        os.utime(store, (old, old))
        stores.append(store)
    fresh = workdir / "lipsync-fresh"
    fresh.mkdir()
    kept = workdir / KEPT_DIR
    kept.mkdir()
    expired, waiting = kept / f"{uuid.uuid4().hex}.mp4", kept / f"{uuid.uuid4().hex}.mp4"
    for path in (expired, waiting):
        path.write_bytes(b"mp4")
    os.utime(expired, (old, old))
    others = [workdir / "lipsync-notes.txt", workdir / "someone-else" / "data.bin", kept / "readme.txt",
              kept / "old-report.mp4"]
    for path in others:
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(b"not the server's")
        os.utime(path, (old, old))
    others += stores
    return {"crashed": crashed_dir, "legacy": legacy, "fresh": fresh, "expired": expired, "waiting": waiting,
            **{f"other{i}": p for i, p in enumerate(others)}}


def test_sweep_removes_abandoned_job_dirs_and_expired_outputs_only(tmp_path):
    mess = leave_a_mess(tmp_path)
    live, live_dir = hold_job_dir(tmp_path, "live")
    try:
        report = sweep(tmp_path, keep_s=3600)
        assert live_dir.is_dir()  # another process's running job is left alone
    finally:
        live.kill()
        live.wait()
    assert (report.job_dirs, report.kept_outputs, report.kept_scheduled) == (2, 1, 1)
    assert not mess["crashed"].exists() and not mess["legacy"].exists() and not mess["expired"].exists()
    assert mess["fresh"].is_dir() and mess["waiting"].is_file()
    assert all(mess[f"other{i}"].is_file() for i in range(4))
    assert [len(list(mess[f"other{i}"].iterdir())) for i in (4, 5)] == [1, 1]  # before: both stores deleted


def test_job_dir_is_removed_after_use_and_kept_outputs_expire(tmp_path):
    with job_dir(tmp_path) as path:
        output = path / "output.mp4"
        output.write_bytes(b"mp4")
        kept = keep_output(output, tmp_path, keep_s=0.2)
    assert not path.exists() and kept.parent == tmp_path / KEPT_DIR and kept.is_file()
    deadline = time.monotonic() + 10
    while kept.exists():
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_server_sweeps_its_workdir_at_startup(tmp_path):
    # before: a SIGKILLed server's lipsync-* dirs and kept outputs stayed forever
    workdir = tmp_path / "work"
    workdir.mkdir()
    mess = leave_a_mess(workdir)
    app = create_app(Settings(models_dir=tmp_path / "weights", workdir=workdir, keep_failed_s=3600),
                     FetchPolicy(), UploadPolicy(), Limits())
    with LiveServer(app):
        assert not mess["crashed"].exists() and not mess["expired"].exists() and not mess["legacy"].exists()
        assert mess["waiting"].is_file() and all(mess[f"other{i}"].is_file() for i in range(4))
        assert [len(list(mess[f"other{i}"].iterdir())) for i in (4, 5)] == [1, 1]  # the stores kept
