import json
import subprocess
import sys

import pytest

from jobs.cli import build_parser
from stages.decode import probe_video
from tests.conftest import ROOT


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "stream.run", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)


def test_passthrough_cli_answers_like_lipsync_and_warns_about_the_audio(tmp_path, data_dir):
    out = tmp_path / "out.mp4"
    done = run_cli("passthrough", "--video", str(data_dir / "video" / "d20.mp4"), "--out", str(out),
                   "--audio", str(data_dir / "audio" / "sun.wav"))
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["success"] is True
    assert summary["output"]["frame_count"] == probe_video(out).frame_count == 175
    assert summary["output"]["path"] == str(out.resolve()) and summary["output"]["duration_ms"] == 7000
    assert summary["warnings"] == ["audio 22.49 s, video 7.00 s: trimmed the audio to the video length"]
    assert summary["timing"]["total_ms"] >= summary["metrics"]["wall_s"] * 1000
    assert [s["name"] for s in summary["metrics"]["stages"]] == ["decode", "encode"]
    assert phase_lines(done.stderr, "passthrough")[-1].endswith("175/175 frames")


def phase_lines(stderr: str, phase: str) -> list[str]:
    """The progress lines of one phase (stderr is not a terminal: one as it starts, one as it ends)."""
    return [line.strip() for line in stderr.splitlines() if line.strip().startswith(phase + " [")]


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
    assert len(detected["frames"]) == 8 and phase_lines(done.stderr, "detect")[-1].endswith("8/8 frames")
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


def test_lipsync_auto_shows_its_detection_pass_and_says_which_rule_ran(tmp_path, data_dir):
    out = tmp_path / "out.mp4"
    done = run_cli("lipsync", "--auto", "--video", str(data_dir / "video" / "d12.mp4"),
                   "--audio", str(data_dir / "audio" / "yongen.wav"), "--out", str(out),
                   "--models-dir", str(tmp_path / "no-weights"))
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    detect, lipsync = phase_lines(done.stderr, "detect"), phase_lines(done.stderr, "lipsync")
    assert detect[-1].endswith("22/22 frames") and lipsync[-1].endswith("183/183 frames")
    assert done.stderr.index(detect[-1]) < done.stderr.index(lipsync[0])
    assert any("every syncable face" in w and "Light-ASD weights not found" in w for w in result["warnings"])
    assert result["timing"]["total_ms"] > result["metrics"]["wall_s"] * 1000  # the detection pass counts
    assert result["output"]["frame_count"] == probe_video(out).frame_count == 183


COMMAND_FLAGS = {
    "passthrough": {"--video", "--out", "--audio", "--device", "--encoder", "--preset", "--crf", "--queue-size",
                    "--log-level"},
    "detect": {"--video", "--refs", "--sample-fps", "--similarity-threshold", "--models-dir", "--face-backend",
               "--device", "--queue-size", "--log-level"},
    "lipsync": {"--video", "--audio", "--out", "--faces", "--auto", "--refs", "--voices", "--expressiveness",
                "--sync-mode", "--enhance", "--fidelity-weight", "--models-dir", "--face-backend", "--engine",
                "--device", "--encoder", "--preset", "--crf", "--queue-size", "--detect-interval", "--mouth-bank",
                "--lip-retargeting", "--log-level"},
}


@pytest.mark.parametrize("command", sorted(COMMAND_FLAGS))
def test_help_lists_only_the_flags_a_command_uses_each_with_its_default(command):
    parser = build_parser()._subparsers._group_actions[0].choices[command]
    actions = [a for a in parser._actions if a.option_strings != ["-h", "--help"]]
    assert {a.option_strings[0] for a in actions} == COMMAND_FLAGS[command]
    for action in actions:
        assert action.help and ("default" in action.help or "required" in action.help), action.option_strings
    choices = {a.option_strings[0]: a.choices for a in actions if a.choices}
    assert choices["--log-level"] == ("DEBUG", "INFO", "WARNING", "ERROR")
    if command == "lipsync":
        assert choices["--engine"] == ("auto", "classical", "musetalk")
        assert choices["--face-backend"] == ("auto", "insightface", "default")
        assert choices["--encoder"] == ("auto", "libx264", "h264_nvenc")
        assert choices["--sync-mode"] == ("silence", "cut_off", "loop", "bounce")


def test_device_flag_takes_only_the_devices_there_are(capsys):
    parse = build_parser().parse_args
    assert parse(["detect", "--video", "v.mp4", "--device", "cuda:1"]).device == "cuda:1"
    with pytest.raises(SystemExit):
        parse(["detect", "--video", "v.mp4", "--device", "gpu"])
    assert "device must be auto, cpu, cuda or cuda:N" in capsys.readouterr().err


@pytest.mark.parametrize("out,message", [
    ("missing/x.mp4", "the folder {tmp}/missing does not exist"),  # before: a traceback after the whole job
    ("x.avi", "give a path ending in .mp4, not .avi"),  # before: MP4 written under the name x.avi
    ("x", "give a path ending in .mp4"),
])
@pytest.mark.parametrize("command", ["passthrough", "lipsync-auto"])
def test_a_bad_out_path_exits_2_before_any_work(tmp_path, data_dir, out, message, command):
    video = str(data_dir / "video" / "d20.mp4")
    args = ["lipsync", "--auto", "--audio", str(data_dir / "audio" / "yongen.wav")] if command == "lipsync-auto" \
        else ["passthrough"]
    result = run_cli(*args, "--video", video, "--out", str(tmp_path / out))
    assert result.returncode == 2, result.stderr
    assert message.format(tmp=tmp_path) in json.loads(result.stdout)["error_message"]
    assert "Traceback" not in result.stderr and "detect [" not in result.stderr  # no pass started
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("args,message", [
    (["detect", "--sample-fps", "100"], "--sample-fps must be in (0, 60]"),  # before: accepted
    (["detect", "--sample-fps", "0"], "--sample-fps must be in (0, 60]"),
    (["detect", "--similarity-threshold", "2"], "--similarity-threshold must be in [-1, 1]"),
    (["lipsync", "--auto", "--audio", "a.wav", "--out", "o.mp4", "--fidelity-weight", "3"],
     "--fidelity-weight must be in [0, 1]"),
    (["lipsync", "--auto", "--audio", "a.wav", "--out", "o.mp4", "--expressiveness", "-1"],
     "--expressiveness must be in [0, 1]"),
])
def test_cli_options_are_held_to_the_api_ranges(tmp_path, data_dir, args, message):
    """One validation (jobs.schema) for both: the API refuses sample_fps 100 with the same range."""
    args = [a if a not in ("o.mp4", "a.wav") else str(tmp_path / a) for a in args]
    result = run_cli(*args, "--video", str(data_dir / "video" / "d20.mp4"))
    assert result.returncode == 2, result.stderr
    assert message in json.loads(result.stdout)["error_message"]
    from jobs.schema import parse_detect
    with pytest.raises(Exception, match=r"'sample_fps' must be in \(0, 60\]"):
        parse_detect({"video_url": "v", "sample_fps": 100})


def test_cli_auto_voices_for_someone_it_can_never_find_exit_2(tmp_path, data_dir):
    (tmp_path / "voices.json").write_text(json.dumps([{"character_id": "bob", "audio_url": "stem.wav"}]))
    result = run_cli("lipsync", "--auto", "--video", str(data_dir / "video" / "d20.mp4"), "--voices",
                     str(tmp_path / "voices.json"), "--audio", str(data_dir / "audio" / "yongen.wav"),
                     "--out", str(tmp_path / "o.mp4"))
    assert result.returncode == 2, result.stderr
    assert "voices.json[0].character_id' 'bob' names no one" in json.loads(result.stdout)["error_message"]
