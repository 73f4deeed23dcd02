"""POST /lipsync over real HTTP: two-face video, real speech, upload to a real PUT receiver."""
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image
from scipy.io import wavfile

from jobs.config import Settings
from models.faces.default import DefaultFaceBackend
from models.mouth_metrics import mouth_opening
from server import create_app
from service.delivery import UploadPolicy
from service.fetch import FetchPolicy
from stages.audio import load_audio
from tests.http_servers import FileServer, PutReceiver, closed_port_url
from tests.live_server import LiveServer
from tests.media import clip_frames, compose, psnr, read_frames, read_pts

RATE = 16000
SILENCE = (1.5, 2.5)  # seconds of silence in the new audio
B_RANGE = (1000, 2500)  # ms: the second face is synced only here


@pytest.fixture(scope="module")
def scene(tmp_path_factory, data_dir):
    folder = tmp_path_factory.mktemp("lipsync")
    left, right = clip_frames(data_dir / "video" / "d12.mp4", 360), clip_frames(data_dir / "video" / "d20.mp4", 360)
    compose(folder / "two.mp4", [{"frames": left[:100], "x": 0, "y": 20},
                                 {"frames": right[:100], "x": 420, "y": 20}], 800, 400, 4.0)
    speech = load_audio(data_dir / "audio" / "yongen.wav", RATE)
    audio = np.concatenate([speech[:int(SILENCE[0] * RATE)], np.zeros(int((SILENCE[1] - SILENCE[0]) * RATE)),
                            speech[int(2.0 * RATE):int(3.5 * RATE)]]).astype(np.float32)
    wavfile.write(folder / "speech.wav", RATE, (audio * 32767).astype(np.int16))
    compose(folder / "silent_video.mp4", [{"frames": left[:10], "x": 0, "y": 0}], 360, 360, 0.4)
    return folder, audio


@pytest.fixture(scope="module")
def files(scene):
    with FileServer(scene[0]) as server:
        yield server


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    settings = Settings(models_dir=Path(tmp_path_factory.mktemp("weights")), workdir=tmp_path_factory.mktemp("work"),
                        keep_failed_s=600)
    app = create_app(settings, FetchPolicy(allow_private_networks=True),
                     UploadPolicy(allow_private_networks=True, backoff_base_s=0.01))
    with LiveServer(app) as server:
        yield server, settings


def boxes(files_server) -> tuple[list[int], list[int]]:
    """The two faces' boxes at t=0, from the product's own detector (as a client would)."""
    image = read_frames(files_server.root / "two.mp4")[0]
    faces = sorted(DefaultFaceBackend().detect(image, with_embedding=False), key=lambda f: f.bbox[0])
    return faces[0].xywh, faces[1].xywh


def request_body(files, upload_url, **overrides):
    left, right = boxes(files)
    body = {"video_url": files.url("two.mp4"), "audio_url": files.url("speech.wav"), "upload_url": upload_url,
            "faces": [{"character_id": "left", "bbox": left, "start_time_ms": 0, "end_time_ms": 4000},
                      {"character_id": "right", "bbox": right, "start_time_ms": B_RANGE[0], "end_time_ms": B_RANGE[1]}],
            "enhance_quality": False, "fidelity_weight": 0.7}
    body.update(overrides)
    return body


@pytest.fixture(scope="module")
def synced(api, files, tmp_path_factory):
    server, _ = api
    with PutReceiver([500, 500, 200]) as receiver:
        response = httpx.post(server.url + "/lipsync", json=request_body(files, receiver.url("out/result.mp4")),
                              timeout=600)
        assert response.status_code == 200, response.text
        output = tmp_path_factory.mktemp("result") / "result.mp4"
        output.write_bytes(receiver.stored["/out/result.mp4"])
        return response.json(), output, receiver


def test_response_matches_the_contract(synced):
    result, output, _ = synced
    assert result["success"] is True and result["engine"] == "classical"
    faces = result["faces"]
    assert faces["processed"] == 2 and faces["total_detected"] == 2 and faces["unknown"] == 0
    assert [r["character_id"] for r in faces["results"]] == ["left", "right"]
    for face in faces["results"]:
        assert face["success"] is True
        for segment in face["segments"]:
            assert set(segment) == {"start_ms", "end_ms", "synced", "skip_reason", "avg_quality", "avg_bbox",
                                    "avg_head_pose"}
            assert (segment["avg_quality"] is None) == (not segment["synced"])
    assert result["output"]["width"] == 800 and result["output"]["height"] == 400
    assert result["output"]["fps"] == 25 and result["output"]["file_size_bytes"] == output.stat().st_size
    assert result["output"]["duration_ms"] == pytest.approx(4000, abs=50)
    assert set(result["timing"]) >= {"total_ms", "download_ms", "detection_ms", "lipsync_ms", "enhancement_ms",
                                     "encoding_ms", "upload_ms"}
    assert result["timing"]["total_ms"] >= result["timing"]["upload_ms"] > 0
    assert isinstance(result["warnings"], list)


def test_segments_and_summary_add_up(synced):
    for face, (start, end) in zip(synced[0]["faces"]["results"], [(0, 4000), B_RANGE]):
        segments = face["segments"]
        assert segments[0]["start_ms"] == pytest.approx(start, abs=40)
        assert segments[-1]["end_ms"] == pytest.approx(end, abs=40)
        for before, after in zip(segments, segments[1:]):
            assert before["end_ms"] == after["start_ms"] and before["synced"] != after["synced"] or \
                before["skip_reason"] != after["skip_reason"]
        summary = face["summary"]
        assert summary["total_ms"] == sum(s["end_ms"] - s["start_ms"] for s in segments)
        assert summary["synced_ms"] + summary["skipped_ms"] == summary["total_ms"]
        assert summary["synced_ms"] >= 0.9 * (end - start)


def test_upload_retried_after_two_500s(synced):
    result, output, receiver = synced
    # answered 500, 500, 200: three PUTs of the same whole file, and only the third one stored
    assert [(r.path, r.body) for r in receiver.puts] == [("/out/result.mp4", output.read_bytes())] * 3
    assert list(receiver.stored) == ["/out/result.mp4"]
    assert receiver.puts[-1].headers.get("content-type") == "video/mp4"
    assert result["upload"]["attempts"] == 3


def test_output_frames_timestamps_and_audio(synced, scene, files):
    _, output, _ = synced
    source = files.root / "two.mp4"
    assert read_pts(output) == read_pts(source)
    new_audio = scene[1]
    got = load_audio(output, RATE)
    assert len(got) == pytest.approx(len(new_audio), abs=RATE * 0.05)
    n = (min(len(got), len(new_audio)) // 640) * 640
    env = lambda x: np.sqrt((x[:n].reshape(-1, 640) ** 2).mean(axis=1))
    assert np.corrcoef(env(got), env(new_audio))[0, 1] > 0.95


def test_untouched_regions_are_unchanged(synced, files):
    _, output, _ = synced
    before, after = read_frames(files.root / "two.mp4"), read_frames(output)
    background, upper, right_face = [], [], []
    for i, (a, b) in enumerate(zip(before, after)):
        background.append(psnr(a[:, 780:], b[:, 780:]))
        upper.append(psnr(a[:150], b[:150]))  # eyes, brows and background above the mouths
        if not B_RANGE[0] - 40 <= i * 40 < B_RANGE[1] + 40:
            right_face.append(psnr(a[:, 420:780], b[:, 420:780]))  # the right face outside its range
    # "unchanged up to one encode": mean PSNR over the frames (crf 16), and no frame far off
    for values in (background, upper, right_face):
        assert np.mean(values) >= 40 and min(values) >= 37


def test_mouth_follows_the_speech(synced, scene):
    _, output, _ = synced
    audio = scene[1]
    backend = DefaultFaceBackend()
    openings, loudness, times = [], [], []
    for i, image in enumerate(read_frames(output)):
        faces = [f for f in backend.detect(image, with_embedding=False) if f.center[0] < 400]
        assert faces, f"left face lost at frame {i}"
        openings.append(mouth_opening(faces[0].landmarks))
        window = audio[max(0, int((i * 0.04 - 0.02) * RATE)):int((i * 0.04 + 0.02) * RATE)]
        loudness.append(20 * np.log10(np.sqrt(np.mean(window ** 2)) + 1e-4))
        times.append(i * 0.04)
    openings, loudness, times = map(np.asarray, (openings, loudness, times))
    assert np.corrcoef(openings, np.maximum(loudness, -50))[0, 1] >= 0.5
    quiet = (times > SILENCE[0] + 0.15) & (times < SILENCE[1] - 0.1)
    assert np.median(openings[quiet]) < 0.1  # closed mouth during silence
    assert np.mean(openings[quiet]) < np.mean(openings[~quiet]) / 2
    assert np.percentile(openings[~quiet], 90) > 0.15


def test_forbidden_upload_fails_clearly_and_keeps_the_output(api, files):
    server, _ = api
    with PutReceiver([403]) as receiver:
        body = request_body(files, receiver.url("expired.mp4"))
        body["faces"] = body["faces"][:1]
        response = httpx.post(server.url + "/lipsync", json=body, timeout=600)
    assert response.status_code in (403, 422, 502)
    payload = response.json()
    assert payload["success"] is False and "403" in payload["error_message"]
    assert len(receiver.puts) == 1  # no retry on 4xx
    assert Path(payload["output_path"]).is_file()


@pytest.mark.parametrize("change,fragment", [
    (lambda b: b["faces"][0].update(bbox=[700, 300, 50, 50]), "matches no face"),
    (lambda b: b["faces"][0].update(start_time_ms=3000, end_time_ms=1000), "must be after"),
    (lambda b: b["faces"][0].update(start_time_ms=9000, end_time_ms=9500), "outside the video"),
    (lambda b: b.update(audio_url=b["audio_url"].replace("speech.wav", "silent_video.mp4")), "audio"),
    (lambda b: b.update(upload_url=closed_port_url()), "cannot be reached"),
    (lambda b: b.update(sync_mode="stretch"), "sync_mode"),
])
def test_bad_lipsync_requests(api, files, change, fragment):
    server, settings = api
    body = request_body(files, "http://127.0.0.1:9/unused.mp4")
    with PutReceiver([200]) as receiver:
        body["upload_url"] = receiver.url("x.mp4")
        change(body)
        response = httpx.post(server.url + "/lipsync", json=body, timeout=600)
        # each is the caller's mistake, found before any work (an unreachable upload_url too): 422
        assert response.status_code == 422, response.text
        assert fragment in response.json()["error_message"]
        assert receiver.puts == []
    assert httpx.get(server.url + "/health").status_code == 200
    assert list(Path(settings.workdir).glob("lipsync-*")) == []


def test_people_not_requested_are_named_by_the_references(api, files, data_dir):
    """Only the left face is requested; the right one matches the `characters` headshot
    (a moment of its clip the video does not show), so it is reported under that id."""
    server, _ = api
    headshot = clip_frames(data_dir / "video" / "d20.mp4", 360)[160]
    Image.fromarray(headshot).save(files.root / "bob.png")
    body = request_body(files, None, characters=[{"id": "bob", "reference_image_url": files.url("bob.png")}])
    body["faces"] = body["faces"][:1]
    with PutReceiver([200]) as receiver:
        body["upload_url"] = receiver.url("out/named.mp4")
        response = httpx.post(server.url + "/lipsync", json=body, timeout=600)
    assert response.status_code == 200, response.text
    faces = response.json()["faces"]
    assert faces["total_detected"] == 2 and faces["processed"] == 1
    assert [u["character_id"] for u in faces["unknown_faces"]] == ["bob"]
