"""/health and /detect-faces over real HTTP, on multi-face videos built from the sample clips."""
from collections import Counter
from pathlib import Path

import cv2
import httpx
import pytest

from jobs.config import Settings
from server import create_app
from service.delivery import UploadPolicy
from service.fetch import FetchPolicy
from tests.http_servers import FileServer, closed_port_url
from tests.live_server import LiveServer
from tests.media import clip_frames, compose

SECONDS = 4.0


@pytest.fixture(scope="module")
def scene(tmp_path_factory, data_dir):
    """alice (d12) all along, bob (d20) from 1 s to 3 s, an unknown girl (d11), a tiny face (d10)."""
    folder = tmp_path_factory.mktemp("scene")
    alice, bob, girl = (clip_frames(data_dir / "video" / name, 300) for name in ("d12.mp4", "d20.mp4", "d11.mp4"))
    tiny = clip_frames(data_dir / "video" / "d10.mp4", 110)
    compose(folder / "scene.mp4", [
        {"frames": alice[:100], "x": 10, "y": 50},
        {"frames": bob[:100], "x": 330, "y": 50, "start_s": 1.0, "end_s": 3.0},
        {"frames": girl[:100], "x": 650, "y": 50},
        {"frames": tiny[:100], "x": 960, "y": 200},
    ], 1080, 400, SECONDS)
    # references: the same people at another moment of their clips (not in the video)
    for name, frames in (("alice.png", alice), ("bob.png", bob)):
        cv2.imwrite(str(folder / name), cv2.cvtColor(frames[160], cv2.COLOR_RGB2BGR))
    dog = data_dir / "image" / "s33.jpg"
    (folder / "dog.jpg").write_bytes(dog.read_bytes())
    (folder / "speech.wav").write_bytes((data_dir / "audio" / "yongen.wav").read_bytes())
    return folder


@pytest.fixture(scope="module")
def files(scene):
    with FileServer(scene) as server:
        yield server


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    settings = Settings(models_dir=Path(tmp_path_factory.mktemp("weights")), workdir=tmp_path_factory.mktemp("work"))
    app = create_app(settings, FetchPolicy(allow_private_networks=True),
                     UploadPolicy(allow_private_networks=True, backoff_base_s=0.01))
    with LiveServer(app) as server:
        yield server, settings


def post(api, path, body, timeout=300):
    server, _ = api
    return httpx.post(server.url + path, json=body, timeout=timeout)


def test_health_reports_the_embedded_default(api):
    server, _ = api
    health = httpx.get(server.url + "/health").json()
    assert health["status"] == "ok"
    assert health["insightface_loaded"] is False and health["musetalk_loaded"] is False
    assert health["liveportrait_loaded"] is False and health["codeformer_loaded"] is False
    assert health["gpu_available"] is False
    assert health["device"] == "cpu" and health["nvenc_available"] is False
    assert health["face_backend"].startswith("default")
    assert any("buffalo_l" in name for name in health["missing_weights"])


@pytest.fixture(scope="module")
def detected(api, files):
    response = post(api, "/detect-faces", {
        "video_url": files.url("scene.mp4"), "sample_fps": 4,
        "characters": [{"id": "alice", "name": "Alice", "reference_image_url": files.url("alice.png")},
                       {"id": "bob", "name": "Bob", "reference_image_url": files.url("bob.png")}],
    })
    assert response.status_code == 200, response.text
    return response.json()


def face_in_column(frame: dict, x_min: int, x_max: int) -> dict | None:
    for face in frame["faces"]:
        center = face["bbox"][0] + face["bbox"][2] / 2
        if x_min <= center < x_max:
            return face
    return None


def test_detect_faces_contract(detected):
    assert (detected["frame_width"], detected["frame_height"]) == (1080, 400)
    assert detected["sample_fps"] == 4
    assert detected["video_duration_ms"] == pytest.approx(SECONDS * 1000, abs=50)
    assert len(detected["frames"]) == 16
    for k, frame in enumerate(detected["frames"]):  # the frame nearest to each k/4 s (25 fps)
        assert abs(frame["timestamp_ms"] - 250 * k) <= 20
    for frame in detected["frames"]:
        for face in frame["faces"]:
            assert set(face) >= {"character_id", "bbox", "confidence", "head_pose", "syncable",
                                 "sync_quality", "skip_reason"}
            assert len(face["bbox"]) == 4 and all(isinstance(v, int) for v in face["bbox"])
            assert len(face["head_pose"]) == 3
            assert (face["sync_quality"] is None) == (not face["syncable"])
            assert (face["skip_reason"] is None) == face["syncable"]
    assert sorted(detected["characters_detected"]) == ["alice", "bob"]


def test_identities_are_right_and_stable(detected):
    frames = detected["frames"]
    alice = [face_in_column(f, 0, 320) for f in frames]
    assert sum(1 for f in alice if f and f["character_id"] == "alice") >= 0.95 * len(frames)
    bob_frames = [f for f in frames if 1000 <= f["timestamp_ms"] < 3000]
    bob = [face_in_column(f, 320, 640) for f in bob_frames]
    assert sum(1 for f in bob if f and f["character_id"] == "bob") >= 0.95 * len(bob_frames)
    assert all(face_in_column(f, 320, 640) is None for f in frames if not 1000 <= f["timestamp_ms"] < 3000)
    girl = Counter(f["character_id"] for f in (face_in_column(fr, 640, 960) for fr in frames) if f)
    assert girl.most_common(1)[0] == ("face_1", len(frames))  # stable unknown id, first to appear
    for frame in frames:  # no character twice in one frame
        ids = [face["character_id"] for face in frame["faces"]]
        assert len(ids) == len(set(ids))


def test_similarity_is_to_a_headshot_and_null_for_unnamed_faces(detected):
    """Issue 22 item 19. Before: every face_N entry said similarity 1.0, with no headshot to compare."""
    faces = [face for frame in detected["frames"] for face in frame["faces"]]
    named = [f for f in faces if f["character_id"] in ("alice", "bob")]
    unnamed = [f for f in faces if f["character_id"].startswith("face_")]
    assert named and unnamed
    assert all(0.5 <= f["similarity"] <= 1.0 for f in named)  # at least the threshold, to their own headshot
    assert all(f["similarity"] is None for f in unnamed)
    assert all(isinstance(f["track_id"], int) for f in faces)


def test_syncability(detected):
    for frame in detected["frames"]:
        big = [face_in_column(frame, 0, 320), face_in_column(frame, 640, 960)]
        assert all(f is not None and f["syncable"] and 0 < f["sync_quality"] <= 1 for f in big)
        tiny = face_in_column(frame, 960, 1080)
        if tiny is not None:
            assert tiny["bbox"][2] < 64
            assert tiny["syncable"] is False and tiny["skip_reason"] == "face_too_small"


def test_reference_without_a_face_is_422(api, files):
    response = post(api, "/detect-faces", {
        "video_url": files.url("scene.mp4"),
        "characters": [{"id": "rex", "name": "Rex", "reference_image_url": files.url("dog.jpg")}]})
    assert response.status_code == 422
    assert "rex" in response.json()["error_message"] and "no detectable face" in response.json()["error_message"]


@pytest.mark.parametrize("body,status,fragment", [
    ("{not json", 422, "not valid JSON"),
    ({"sample_fps": 3}, 422, "video_url"),
    ({"video_url": "FILES/html"}, 422, "HTML"),
    ({"video_url": "FILES/speech.wav"}, 422, "video"),
    ({"video_url": "FILES/missing"}, 422, "404"),
    ({"video_url": closed_port_url("x.mp4")}, 502, "connect"),
])
def test_bad_requests_get_clear_errors_and_server_keeps_serving(api, files, body, status, fragment):
    server, settings = api
    if isinstance(body, dict) and "video_url" in body:
        body = {**body, "video_url": body["video_url"].replace("FILES/", files.url(""))}
    if isinstance(body, str):
        response = httpx.post(server.url + "/detect-faces", content=body, timeout=60,
                              headers={"Content-Type": "application/json"})
    else:
        response = post(api, "/detect-faces", body)
    assert response.status_code == status, response.text
    assert response.json()["success"] is False
    assert fragment.lower() in response.json()["error_message"].lower()
    assert httpx.get(server.url + "/health").status_code == 200
    assert list(Path(settings.workdir).glob("lipsync-*")) == []  # temp files removed


def test_private_urls_refused_by_default(tmp_path, files):
    app = create_app(Settings(models_dir=tmp_path, workdir=tmp_path), FetchPolicy(), UploadPolicy())
    with LiveServer(app) as server:
        response = httpx.post(server.url + "/detect-faces", json={"video_url": files.url("scene.mp4")}, timeout=60)
    assert response.status_code == 422
    assert "loopback" in response.json()["error_message"] or "private" in response.json()["error_message"]
