"""scripts/test-api.mjs run with node against the real server, a local file server and PUT receiver."""
import json
import shutil
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest
from scipy.io import wavfile

from jobs.config import Settings
from server import create_app
from service.delivery import UploadPolicy
from service.fetch import FetchPolicy
from stages.audio import load_audio
from tests.http_servers import FileServer, PutReceiver
from tests.live_server import LiveServer
from tests.media import clip_frames, compose, read_frames

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "test-api.mjs"
RATE = 16000

pytestmark = pytest.mark.skipif(shutil.which("node") is None, reason="node (>= 18) is not installed")


@pytest.fixture(scope="module")
def scene(tmp_path_factory, data_dir):
    """alice (d12) on the left all along, bob (d20) on the right from 1 s; 2 s, with references."""
    folder = tmp_path_factory.mktemp("client")
    alice, bob = clip_frames(data_dir / "video" / "d12.mp4", 320), clip_frames(data_dir / "video" / "d20.mp4", 320)
    compose(folder / "two.mp4", [{"frames": alice[:50], "x": 0, "y": 0},
                                 {"frames": bob[:50], "x": 320, "y": 0, "start_s": 1.0}], 640, 320, 2.0)
    for name, frames in (("alice.png", alice), ("bob.png", bob)):
        cv2.imwrite(str(folder / name), cv2.cvtColor(frames[160], cv2.COLOR_RGB2BGR))
    speech = load_audio(data_dir / "audio" / "yongen.wav", RATE)[:2 * RATE]
    wavfile.write(folder / "speech.wav", RATE, (speech * 32767).astype(np.int16))
    return folder


@pytest.fixture(scope="module")
def services(tmp_path_factory, scene):
    settings = Settings(models_dir=Path(tmp_path_factory.mktemp("weights")), workdir=tmp_path_factory.mktemp("work"))
    app = create_app(settings, FetchPolicy(allow_private_networks=True),
                     UploadPolicy(allow_private_networks=True, backoff_base_s=0.01))
    with LiveServer(app) as server, FileServer(scene) as files, PutReceiver([200]) as receiver:
        yield server, files, receiver


def run_client(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["node", str(SCRIPT), *args], capture_output=True, text=True, timeout=300)


def test_auto_with_refs_syncs_each_character_and_downloads_the_result(services, tmp_path):
    server, files, receiver = services
    refs = tmp_path / "characters.json"
    refs.write_text(json.dumps([{"id": "alice", "name": "Alice", "reference_image_url": files.url("alice.png")},
                                {"id": "bob", "name": "Bob", "reference_image_url": files.url("bob.png")}]))
    output = tmp_path / "result.mp4"
    done = run_client("--server", server.url, "--video", files.url("two.mp4"), "--audio", files.url("speech.wav"),
                      "--upload-url", receiver.url("out/auto.mp4"), "--refs", str(refs), "--auto",
                      "--sample-fps", "4", "--download-url", receiver.url("out/auto.mp4"), "--output", str(output))
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert any(line.startswith("detect-faces: 8 frames at 4 fps of a 640x320") and "recognised: alice, bob" in line
               for line in lines)
    alice = next(line for line in lines if line.startswith("  alice 0.00-2.00 s: synced "))
    bob = next(line for line in lines if line.startswith("  bob 1.00-2.00 s: synced "))
    for line in (alice, bob):
        percent = float(line.split("synced ")[1].split("%")[0])
        assert percent >= 90
    assert "lipsync: engine classical, output 640x320, 2.00 s" in done.stdout
    assert output.read_bytes() == receiver.stored["/out/auto.mp4"]
    assert len(read_frames(output)) == 50


def test_without_auto_the_server_picks_the_faces(services, tmp_path):
    server, files, receiver = services
    done = run_client("--server", server.url, "--video", files.url("two.mp4"), "--audio", files.url("speech.wav"),
                      "--upload-url", receiver.url("out/server-auto.mp4"))
    assert done.returncode == 0, done.stdout + done.stderr
    synced = [line for line in done.stdout.splitlines() if line.startswith("  face_")]
    assert {line.split()[0].rstrip(":") for line in synced} == {"face_1", "face_2"}
    assert "/out/server-auto.mp4" in receiver.stored


def test_failures_exit_non_zero_with_the_server_message(services, tmp_path):
    server, files, receiver = services
    bad_video = run_client("--server", server.url, "--video", files.url("html"), "--audio", files.url("speech.wav"),
                           "--upload-url", receiver.url("out/x.mp4"), "--auto")
    assert bad_video.returncode == 1
    assert bad_video.stderr.startswith("error: /detect-faces failed (HTTP 422): video_url")
    assert "HTML" in bad_video.stderr
    no_server = run_client("--server", "http://127.0.0.1:9", "--video", files.url("two.mp4"),
                           "--audio", files.url("speech.wav"), "--upload-url", receiver.url("out/x.mp4"))
    assert no_server.returncode == 1 and "cannot reach the server at http://127.0.0.1:9/lipsync" in no_server.stderr
    usage = run_client("--video", files.url("two.mp4"))
    assert usage.returncode == 2 and "--audio is required unless --voices" in usage.stderr
    assert "/out/x.mp4" not in receiver.stored


def test_without_upload_url_the_kept_result_is_downloaded_and_stems_are_sent(services, tmp_path):
    """Issue 22 item 15. Before: --upload-url was required, and stems, expressiveness and
    characters could not be sent."""
    server, files, receiver = services
    refs = tmp_path / "characters.json"
    refs.write_text(json.dumps([{"id": "alice", "name": "Alice", "reference_image_url": files.url("alice.png")},
                                {"id": "bob", "name": "Bob", "reference_image_url": files.url("bob.png")}]))
    voices = tmp_path / "voices.json"
    voices.write_text(json.dumps([{"character_id": "alice", "audio_url": files.url("speech.wav")},
                                  {"character_id": "bob", "audio_url": files.url("speech.wav"),
                                   "audio_offset_ms": 1000, "expressiveness": 0.9}]))
    output = tmp_path / "kept.mp4"
    stored_before = set(receiver.stored)
    done = run_client("--server", server.url, "--video", files.url("two.mp4"), "--refs", str(refs), "--auto",
                      "--voices", str(voices), "--expressiveness", "0.3", "--sample-fps", "4", "--output", str(output))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "result kept on the server: /results/" in done.stdout
    assert "  alice 0.00-2.00 s (own stem): synced" in done.stdout and "expressiveness applied: yes" in done.stdout
    assert any("stem(s) mixed" in line for line in done.stdout.splitlines())  # no --audio: the stems mixed
    assert len(read_frames(output)) == 50 and set(receiver.stored) == stored_before  # nothing PUT
    usage = run_client("--video", files.url("two.mp4"), "--audio", files.url("speech.wav"),
                       "--upload-url", receiver.url("x.mp4"), "--output", str(tmp_path / "y.mp4"))
    assert usage.returncode == 2 and "give --download-url" in usage.stderr
