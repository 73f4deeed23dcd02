"""The review page's HTTP side (service/review.py) on a real uvicorn server: GET / and its files,
POST /uploads and its limits (size, type, the same probing and media limits as a fetched
input, expiry), upload:// URLs in the API, and GET /results/{id}."""
from __future__ import annotations

import os
import re
import time

from pathlib import Path

import httpx
import numpy as np
import pytest

from jobs.config import Settings
from server import create_app
from service.admission import Limits
from service.review import UI_DIR
from tests.live_server import LiveServer
from tests.media import write_video

MAX_BYTES = 2_000_000  # LIPSYNC_UPLOAD_MAX_BYTES here: d12.mp4 (596 KB) fits, yongen.wav (1.5 MB) fits


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("review-workdir")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LIPSYNC_UPLOAD_MAX_BYTES", str(MAX_BYTES))
        app = create_app(Settings(workdir=workdir, models_dir=workdir / "no-weights"),
                         limits=Limits(max_duration_s=8.5))
    with LiveServer(app) as live:
        live.workdir = workdir
        yield live


def upload(server, data: bytes, kind: str, name: str, content_type: str = "application/octet-stream",
           **kwargs) -> httpx.Response:
    return httpx.post(f"{server.url}/uploads", params={"kind": kind, "name": name}, content=data,
                      headers={"Content-Type": content_type}, timeout=60, **kwargs)


def test_the_page_and_its_files_are_served(server):
    page = httpx.get(server.url + "/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<script type="module" src="/ui/main.js"></script>' in page.text
    assert '<link rel="icon" href="/ui/favicon.svg"' in page.text
    # nothing inline, so the page runs under a CSP of script-src 'self'; style-src 'self'
    assert not re.search(r"<script(?![^>]*\bsrc=)|<style|\sstyle=|\son[a-z]+=", page.text)
    # every module the page loads, followed through its imports: served as JavaScript, from here
    seen, queue = set(), ["main.js"]
    while queue:
        name = queue.pop()
        seen.add(name)
        script = httpx.get(f"{server.url}/ui/{name}")
        assert script.status_code == 200 and "javascript" in script.headers["content-type"], name
        assert "http://" not in script.text and "https://" not in script.text, name  # nothing from outside
        queue += [m for m in re.findall(r'^import .* from "\./([a-z]+\.js)";$', script.text, re.M) if m not in seen]
    assert {"main.js", "api.js", "timeline.js", "waveform.js", "player.js", "stems.js", "ranges.js"} <= seen, seen
    assert not (UI_DIR / "app.js").exists()
    assert {p.name for p in UI_DIR.glob("*.js")} == seen  # no module left unused
    assert "EventSource" in httpx.get(server.url + "/ui/api.js").text
    assert httpx.get(server.url + "/ui/app.css").status_code == 200
    for icon in ("/ui/favicon.svg", "/favicon.ico"):
        answer = httpx.get(server.url + icon)
        assert answer.status_code == 200 and answer.headers["content-type"].startswith("image/svg+xml")
    assert httpx.get(server.url + "/ui/../server.py").status_code == 404


def test_an_upload_is_probed_and_named_by_an_upload_url_the_api_accepts(server, data_dir):
    video = (data_dir / "video" / "d12.mp4").read_bytes()
    answer = upload(server, video, "video", "d12.mp4", "video/mp4")
    assert answer.status_code == 201, answer.text
    body = answer.json()
    assert body["url"] == f"upload://{body['upload_id']}" and len(body["upload_id"]) == 32
    assert body["size_bytes"] == len(video)
    assert body["media"]["width"] == 512 and body["media"]["duration_s"] == pytest.approx(7.32, abs=0.05)
    assert 3500 < body["expires_in_s"] <= 3600  # LIPSYNC_UPLOAD_TTL_S default
    stored = list((server.workdir / "lipsync-uploads").glob(f"{body['upload_id']}*"))
    assert [p.read_bytes() == video for p in stored] == [True]

    detected = httpx.post(f"{server.url}/detect-faces", json={"video_url": body["url"], "sample_fps": 1}, timeout=120)
    assert detected.status_code == 200, detected.text
    assert detected.json()["video_duration_ms"] == pytest.approx(7320, abs=50)
    assert detected.json()["fps"] == 25  # what the page numbers frames by when the video is a URL
    assert stored[0].exists()  # the job used a link; the upload stays for the next job


def test_size_limit_declared_or_streamed(server):
    too_big = b"\0" * (MAX_BYTES + 1)
    declared = upload(server, too_big, "video", "big.mp4", "video/mp4")
    assert declared.status_code == 413
    assert "LIPSYNC_UPLOAD_MAX_BYTES" in declared.json()["error_message"] and declared.json()["field"] == "video"

    def chunks():  # no Content-Length: the server counts while it stores
        for _ in range(5):
            yield b"\0" * (MAX_BYTES // 4)

    streamed = httpx.post(f"{server.url}/uploads", params={"kind": "audio", "name": "long.wav"}, content=chunks(),
                          headers={"Content-Type": "audio/wav"}, timeout=60)
    assert streamed.status_code == 413
    assert not [p for p in (server.workdir / "lipsync-uploads").glob("*") if p.stat().st_size > MAX_BYTES]


@pytest.mark.parametrize("kind, name, content_type, status, says", [
    ("movie", "a.mp4", "video/mp4", 422, "'kind' must be one of video, audio, image"),
    ("video", "page.html", "text/html", 415, "is sent as text/html, not a video type"),
    ("image", "face.jpg", "video/mp4", 415, "not an image type"),
])
def test_kind_and_type_limits(server, kind, name, content_type, status, says):
    answer = upload(server, b"\xff\xd8\xff" + b"\0" * 100, kind, name, content_type)
    assert answer.status_code == status and says in answer.json()["error_message"], answer.text


def test_a_video_file_is_accepted_as_the_new_audio(server, data_dir, tmp_path):
    """A browser sends a chosen .mp4 as video/mp4 even under kind=audio: its sound track is the
    audio (before: 415). A video without sound is refused by the probe, saying so."""
    answer = upload(server, (data_dir / "video" / "d12.mp4").read_bytes(), "audio", "d12.mp4", "video/mp4")
    assert answer.status_code == 201, answer.text
    assert answer.json()["media"]["has_audio"] and answer.json()["media"]["duration_s"] == pytest.approx(7.31, abs=0.05)
    silent = write_video(tmp_path / "silent.mp4", [np.full((64, 64, 3), 90, np.uint8)] * 25)
    refused = upload(server, Path(silent).read_bytes(), "audio", "silent.mp4", "video/mp4")
    assert refused.status_code == 422 and refused.json()["field"] == "audio", refused.text
    assert refused.json()["error_message"].startswith("silent.mp4: ")
    image = upload(server, (data_dir / "image" / "s33.jpg").read_bytes(), "audio", "s33.jpg", "image/jpeg")
    assert image.status_code == 415 and "not an audio type" in image.json()["error_message"]
    assert image.json()["error_message"].endswith("choose an audio file or a video with sound")


def test_uploads_get_the_same_probing_as_fetched_inputs(server, data_dir, tmp_path):
    html = upload(server, b"<!doctype html><html><body>Sign in</body></html>", "video", "clip.mp4")
    assert html.status_code == 422
    assert html.json()["error_message"].startswith("clip.mp4: looks like an HTML page")
    audio_as_video = upload(server, (data_dir / "audio" / "yongen.wav").read_bytes(), "video", "yongen.wav")
    assert audio_as_video.status_code == 422 and "has no video stream" in audio_as_video.json()["error_message"]
    dog = upload(server, (data_dir / "image" / "s33.jpg").read_bytes(), "video", "s33.jpg")
    assert dog.status_code == 422 and "still image" in dog.json()["error_message"]
    empty = upload(server, b"", "audio", "empty.wav")
    assert empty.status_code == 422 and "empty" in empty.json()["error_message"]
    cut = upload(server, (data_dir / "video" / "d12.mp4").read_bytes()[:300_000], "video", "cut.mp4")
    assert cut.status_code == 422 and "cut.mp4: " in cut.json()["error_message"], cut.text
    names = {p.name.split(".")[0] for p in (server.workdir / "lipsync-uploads").glob("*")}
    assert not names & {"clip", "yongen", "s33", "empty", "cut"}  # refused files are not kept under any name


def test_media_limits_apply_to_uploads(server, data_dir):
    # sun.wav is 22.5 s; this server admits inputs up to 8.5 s (LIPSYNC_MAX_DURATION_S)
    answer = upload(server, (data_dir / "audio" / "sun.wav").read_bytes(), "audio", "sun.wav", "audio/wav")
    assert answer.status_code == 422
    assert answer.json()["error_message"].startswith("sun.wav: ")
    assert "LIPSYNC_MAX_DURATION_S" in answer.json()["error_message"]


def test_unknown_malformed_and_expired_upload_urls_are_refused(server, data_dir):
    for url in ("upload://0123456789abcdef0123456789abcdef", "upload://../../etc/passwd", "upload://"):
        answer = httpx.post(f"{server.url}/detect-faces", json={"video_url": url}, timeout=60)
        assert answer.status_code == 422
        assert "is not a known upload or it expired" in answer.json()["error_message"]
    body = upload(server, (data_dir / "video" / "d12.mp4").read_bytes(), "video", "d12.mp4").json()
    stored = next((server.workdir / "lipsync-uploads").glob(f"{body['upload_id']}*"))
    old = time.time() - 3601  # written longer ago than LIPSYNC_UPLOAD_TTL_S
    os.utime(stored, (old, old))
    expired = httpx.post(f"{server.url}/detect-faces", json={"video_url": body["url"]}, timeout=60)
    assert expired.status_code == 422 and "expired" in expired.json()["error_message"]
    upload(server, b"", "audio", "sweep.wav")  # any upload sweeps expired files
    assert not stored.exists()


def test_the_ssrf_guard_is_unchanged(server):
    for url, says in (("file:///etc/passwd", "local paths are accepted only by the CLI"),
                      ("/etc/passwd", "local paths are accepted only by the CLI"),
                      (f"{server.url}/ui/app.js", "loopback"),
                      ("uploads://x", "only http and https URLs are accepted")):
        answer = httpx.post(f"{server.url}/detect-faces", json={"video_url": url}, timeout=60)
        assert answer.status_code == 422 and says in answer.json()["error_message"], (url, answer.text)


def test_results_are_served_only_by_a_live_random_id(server):
    for result_id in ("0123456789abcdef0123456789abcdef", "*", "x" * 32 + "-old"):
        answer = httpx.get(f"{server.url}/results/{result_id}")
        assert answer.status_code == 404 and answer.json()["field"] == "result"
    assert httpx.get(f"{server.url}/results/..%2Fserver.py").status_code == 404


def test_all_live_uploads_together_are_capped(tmp_path, data_dir):
    video = (data_dir / "video" / "d12.mp4").read_bytes()  # 596 KB; two do not fit in 1 MB
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LIPSYNC_UPLOAD_TOTAL_BYTES", "1000000")
        app = create_app(Settings(workdir=tmp_path, models_dir=tmp_path / "no-weights"))
    with LiveServer(app) as server:
        assert upload(server, video, "video", "first.mp4").status_code == 201
        declared = upload(server, video, "video", "second.mp4")
        streamed = httpx.post(f"{server.url}/uploads", params={"kind": "video", "name": "third.mp4"},
                              content=iter([video[:300_000], video[300_000:]]), timeout=60)
        for refused in (declared, streamed):
            assert refused.status_code == 507
            assert "LIPSYNC_UPLOAD_TOTAL_BYTES" in refused.json()["error_message"]
        assert len(list((tmp_path / "lipsync-uploads").glob("*"))) == 1
        old = time.time() - 3601  # once the first one expires there is room again
        for path in (tmp_path / "lipsync-uploads").glob("*"):
            os.utime(path, (old, old))
        assert upload(server, video, "video", "again.mp4").status_code == 201
