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


def test_detect_and_lipsync_cli(tmp_path, data_dir):
    import cv2

    from tests.media import read_frames
    video = data_dir / "video" / "d12.mp4"
    reference = tmp_path / "man.png"
    cv2.imwrite(str(reference), cv2.cvtColor(read_frames(video)[170], cv2.COLOR_RGB2BGR))
    refs = tmp_path / "characters.json"
    refs.write_text(json.dumps([{"id": "man", "name": "Man", "reference_image_url": "man.png"}]))
    done = run_cli("detect", "--video", str(video), "--refs", str(refs), "--sample-fps", "1")
    assert done.returncode == 0, done.stderr
    detected = json.loads(done.stdout)
    assert detected["characters_detected"] == ["man"]
    assert all(f["faces"][0]["character_id"] == "man" for f in detected["frames"])

    faces = tmp_path / "faces.json"
    faces.write_text(json.dumps([{"character_id": "man", "bbox": detected["frames"][0]["faces"][0]["bbox"],
                                  "start_time_ms": 0, "end_time_ms": 2000}]))
    out = tmp_path / "out.mp4"
    done = run_cli("lipsync", "--video", str(video), "--audio", str(data_dir / "audio" / "yongen.wav"),
                   "--faces", str(faces), "--out", str(out))
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["faces"]["results"][0]["summary"]["total_ms"] == 2000
    assert result["output"]["frame_count"] == probe_video(out).frame_count == 183


def test_lipsync_cli_rejects_bad_faces_file(tmp_path, data_dir):
    faces = tmp_path / "faces.json"
    faces.write_text(json.dumps([{"character_id": "x", "bbox": [1, 2, 3], "start_time_ms": 0, "end_time_ms": 5}]))
    done = run_cli("lipsync", "--video", str(data_dir / "video" / "d12.mp4"), "--audio",
                   str(data_dir / "audio" / "yongen.wav"), "--faces", str(faces), "--out", str(tmp_path / "o.mp4"))
    assert done.returncode == 2
    assert "bbox" in json.loads(done.stdout)["error_message"]
