"""Pathological request bodies get a 422 that names the field or the problem, before any work.

Real uvicorn on 127.0.0.1 and a real PUT receiver (to prove nothing was uploaded).
"""
from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from jobs.config import Settings
from jobs.probe import probe_media
from jobs.schema import MAX_ID_CHARS
from server import create_app
from service.admission import Limits
from service.delivery import UploadPolicy
from service.fetch import FetchPolicy
from stream.errors import MediaError
from tests.http_servers import PutReceiver
from tests.live_server import LiveServer

HUGE = "1" + "0" * 400  # an integer too large for a float


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    settings = Settings(models_dir=Path(tmp_path_factory.mktemp("weights")), workdir=tmp_path_factory.mktemp("work"))
    app = create_app(settings, FetchPolicy(allow_private_networks=True),
                     UploadPolicy(allow_private_networks=True), Limits(concurrency=1, max_waiting=4))
    with LiveServer(app) as server, httpx.Client(base_url=server.url, timeout=30) as client, \
            PutReceiver() as sink:
        yield client, sink


def face(**extra) -> str:
    fields = {"character_id": '"a"', "bbox": "[10, 10, 50, 50]", "start_time_ms": "0", "end_time_ms": "1000"}
    fields.update(extra)
    return "{" + ", ".join(f'"{k}": {v}' for k, v in fields.items()) + "}"


def lipsync_body(sink, faces: str) -> str:
    return ('{"video_url": "http://127.0.0.1:9/v.mp4", "audio_url": "http://127.0.0.1:9/a.wav", '
            f'"upload_url": "{sink.url("out.mp4")}", "faces": [{faces}]}}')


def post(client, path: str, body: str) -> httpx.Response:
    return client.post(path, content=body.encode(), headers={"Content-Type": "application/json"})


@pytest.mark.parametrize("field,body_faces", [
    ("bbox[2]", face(bbox=f"[10, 10, {HUGE}, 50]")),
    ("start_time_ms", face(start_time_ms=HUGE)),
    ("end_time_ms", face(end_time_ms=HUGE)),
])
@pytest.mark.parametrize("path", ["/lipsync", "/jobs/lipsync"])
def test_integer_too_large_for_a_float_is_422_naming_the_field(api, path, field, body_faces):
    client, sink = api
    answer = post(client, path, lipsync_body(sink, body_faces))  # before: 500 with a traceback
    assert answer.status_code == 422, answer.text
    message = answer.json()["error_message"]
    assert f"faces[0].{field}" in message and "finite number" in message
    assert len(message) < 300  # the 401-digit number is not echoed


def test_huge_sample_fps_is_422(api):
    client, _ = api
    answer = post(client, "/detect-faces", '{"video_url": "http://127.0.0.1:9/v.mp4", "sample_fps": ' + HUGE + "}")
    assert answer.status_code == 422 and "'sample_fps'" in answer.json()["error_message"]


def test_integer_literal_over_4300_digits_is_422(api):
    client, _ = api
    answer = post(client, "/detect-faces", '{"video_url": "x", "sample_fps": ' + "9" * 5000 + "}")
    assert answer.status_code == 422, answer.text
    message = answer.json()["error_message"]
    assert "number too long" in message and len(message) < 400


@pytest.mark.parametrize("opener", ["[", '{"a":'])
def test_deep_nesting_is_422(api, opener):
    client, _ = api
    answer = post(client, "/jobs/detect-faces", opener * 100_000)
    assert answer.status_code == 422, answer.text
    assert "more than 32 levels deep" in answer.json()["error_message"]
    assert client.get("/health").status_code == 200  # and the server keeps serving


@pytest.mark.parametrize("depth", [33, 500, 990])
def test_nesting_deeper_than_32_levels_is_422(api, depth):
    client, _ = api
    body = '{"video_url": "http://127.0.0.1:9/v.mp4", "x": ' + "[" * depth + "]" * depth + "}"
    answer = post(client, "/jobs/detect-faces", body)
    # before: 500 (RecursionError copying the record) for depths json.loads still accepts
    assert answer.status_code == 422, answer.text
    assert "more than 32 levels deep" in answer.json()["error_message"]


@pytest.mark.parametrize("path", ["/lipsync", "/jobs/lipsync"])
def test_lone_surrogate_in_an_id_is_refused_before_any_work(api, path):
    client, sink = api
    answer = post(client, path, lipsync_body(sink, face(character_id='"\\ud800"')))
    # before: the job ran and uploaded, then the response failed with 500
    assert answer.status_code == 422, answer.text
    assert "faces[0].character_id" in answer.json()["error_message"]
    assert "valid Unicode" in answer.json()["error_message"]
    assert sink.puts == []


def test_lone_surrogate_anywhere_is_refused(api):
    client, _ = api
    answer = post(client, "/jobs/detect-faces", '{"video_url": "http://127.0.0.1:9/v.mp4", '
                                                '"characters": [{"id": "a", "name": "x\\udfff", '
                                                '"reference_image_url": "http://127.0.0.1:9/a.png"}]}')
    assert answer.status_code == 422
    assert "'characters[0].name'" in answer.json()["error_message"]


@pytest.mark.parametrize("where", ["faces", "characters"])
def test_id_over_128_characters_is_refused(api, where):
    client, sink = api
    long_id = "x" * (MAX_ID_CHARS + 1)
    if where == "faces":
        answer = post(client, "/jobs/lipsync", lipsync_body(sink, face(character_id=f'"{long_id}"')))
        field = "faces[0].character_id"
    else:
        answer = post(client, "/jobs/detect-faces", '{"video_url": "http://127.0.0.1:9/v.mp4", "characters": '
                                                    f'[{{"id": "{long_id}", "reference_image_url": "http://x/a.png"}}]}}')
        field = "characters[0].id"
    assert answer.status_code == 422, answer.text
    message = answer.json()["error_message"]
    assert field in message and f"at most {MAX_ID_CHARS}" in message and long_id not in message


def test_an_id_of_128_characters_is_accepted(api):
    client, _ = api
    answer = post(client, "/jobs/detect-faces", '{"video_url": "http://127.0.0.1:9/v.mp4", "characters": '
                                                f'[{{"id": "{"y" * MAX_ID_CHARS}", "reference_image_url": '
                                                '"http://127.0.0.1:9/a.png"}]}')
    assert answer.status_code == 202, answer.text


def test_huge_values_are_not_echoed_in_full(api):
    client, _ = api
    long_url = "http://127.0.0.1:9/" + "v" * 60_000 + ".mp4"  # httpx refuses URLs over 64 KiB
    answer = client.post("/detect-faces", json={"video_url": long_url})
    assert answer.status_code == 502, answer.text  # nothing listens on port 9
    assert len(answer.text) < 2000 and f"({len(long_url)} characters)" in answer.json()["error_message"]
    answer = client.get("/jobs/" + "j" * 5000)
    assert answer.status_code == 404 and len(answer.text) < 500


def test_wording_names_the_kind_with_the_right_article(tmp_path):
    page = tmp_path / "page.bin"
    page.write_bytes(b"<html><body>sign in</body></html>")
    for kind, said in (("audio", "not an audio"), ("image", "not an image"), ("video", "not a video")):
        with pytest.raises(MediaError, match=said):
            probe_media(page, kind)
