import json
import subprocess
import sys

from stages.decode import probe_video
from tests.conftest import ROOT


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "stream.run", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)


def test_passthrough_cli_prints_summary(tmp_path, data_dir):
    out = tmp_path / "out.mp4"
    done = run_cli("passthrough", "--video", str(data_dir / "video" / "d20.mp4"), "--out", str(out),
                   "--audio", str(data_dir / "audio" / "sun.wav"))
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["frames"] == probe_video(out).frame_count == 175
    assert summary["fps"] > 0
    assert [s["name"] for s in summary["metrics"]["stages"]] == ["decode", "encode"]


def test_cli_bad_input_exits_2_with_message(tmp_path):
    page = tmp_path / "page.mp4"
    page.write_text("<html><body>oops</body></html>")
    done = run_cli("passthrough", "--video", str(page), "--out", str(tmp_path / "o.mp4"))
    assert done.returncode == 2
    message = json.loads(done.stdout)["error_message"]
    assert "HTML page" in message and str(page) in message
    assert not (tmp_path / "o.mp4").exists()
