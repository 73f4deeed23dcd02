"""Limits that hold against what a file holds, not what its header says (LIPSYNC_MAX_PIXELS,
LIPSYNC_MAX_DURATION_S, LIPSYNC_MAX_HEADSHOT_PIXELS), and per-request counts of faces and characters.

Media built with PyAV in the test: an MPEG-TS whose resolution changes mid-stream, the real
7 s MP4 with its mvhd/tkhd/mdhd durations patched to 1 s, a 9000x9000 PNG of a few KiB.
Jobs go through real uvicorn on 127.0.0.1 with inputs from a real file server.
"""
from __future__ import annotations

import struct
import time
from fractions import Fraction
from pathlib import Path

import av
import httpx
import numpy as np
import pytest
from PIL import Image

from jobs.config import Settings
from jobs.probe import probe_media
from server import create_app
from service.admission import Limits
from service.delivery import UploadPolicy
from service.fetch import FetchPolicy
from stages.decode import DecodeStage
from stream.errors import MediaError
from tests.http_servers import FileServer, PutReceiver
from tests.live_server import LiveServer
from tests.media import write_video


def resolution_change_ts(path: Path, sizes=((320, 240), (640, 480)), frames_each: int = 25, fps: int = 25) -> Path:
    """An H.264 MPEG-TS: `frames_each` frames at each size in turn, SPS in-band, one timeline."""
    with av.open(str(path), "w", format="mpegts") as out:
        stream = out.add_stream("h264", rate=fps)
        stream.width, stream.height = sizes[0]
        for part, (width, height) in enumerate(sizes):
            encoder = av.CodecContext.create("libx264", "w")
            encoder.width, encoder.height, encoder.pix_fmt = width, height, "yuv420p"
            encoder.time_base, encoder.framerate = Fraction(1, fps), Fraction(fps)
            encoder.options = {"preset": "ultrafast", "bframes": "0"}
            offset = part * frames_each
            frames = [av.VideoFrame.from_ndarray(np.full((height, width, 3), 9 * i % 255, np.uint8), format="rgb24")
                      for i in range(frames_each)]
            for i, frame in enumerate([*frames, None]):
                if frame is not None:
                    frame = frame.reformat(format="yuv420p")
                    frame.pts, frame.time_base = i, encoder.time_base
                for packet in encoder.encode(frame):
                    packet.time_base, packet.stream = encoder.time_base, stream
                    packet.pts, packet.dts = packet.pts + offset, packet.dts + offset
                    out.mux(packet)
    return path


def patch_durations(source: Path, target: Path, seconds: float) -> Path:
    """Copy an MP4 with the durations in mvhd, every tkhd and mdhd set to `seconds` (samples untouched)."""
    data = bytearray(source.read_bytes())
    movie_scale = 1

    def walk(start: int, end: int) -> None:
        nonlocal movie_scale
        pos = start
        while pos + 8 <= end:
            size, kind = struct.unpack(">I4s", data[pos:pos + 8])
            header = 8
            if size == 1:
                size, header = struct.unpack(">Q", data[pos + 8:pos + 16])[0], 16
            body = pos + header
            if kind in (b"moov", b"trak", b"mdia"):
                walk(body, pos + size)
            elif kind in (b"mvhd", b"mdhd", b"tkhd"):
                wide = data[body] == 1
                t = 8 if wide else 4
                if kind == b"tkhd":  # version/flags, ctime, mtime, track_ID, reserved, duration
                    at, scale = body + 4 + 2 * t + 8, movie_scale
                else:  # version/flags, ctime, mtime, timescale, duration
                    scale = struct.unpack(">I", data[body + 4 + 2 * t:body + 8 + 2 * t])[0]
                    at = body + 8 + 2 * t
                    movie_scale = scale if kind == b"mvhd" else movie_scale
                struct.pack_into(">Q" if wide else ">I", data, at, int(seconds * scale))
            pos += size

    walk(0, len(data))
    target.write_bytes(bytes(data))
    return target


@pytest.fixture(scope="module")
def media(tmp_path_factory, data_dir):
    folder = tmp_path_factory.mktemp("limits")
    resolution_change_ts(folder / "change.ts")
    patch_durations(data_dir / "video" / "d20.mp4", folder / "patched.mp4", 1.0)
    Image.new("1", (9000, 9000)).save(folder / "huge.png")
    write_video(folder / "short.mp4", [np.full((64, 64, 3), 128, np.uint8)] * 10)
    return folder


@pytest.fixture(scope="module")
def api(tmp_path_factory, media):
    settings = Settings(models_dir=Path(tmp_path_factory.mktemp("weights")), workdir=tmp_path_factory.mktemp("work"))
    limits = Limits(concurrency=1, max_waiting=4, max_duration_s=3.0, max_pixels=640 * 480, max_faces=3,
                    max_characters=2)
    app = create_app(settings, FetchPolicy(allow_private_networks=True), UploadPolicy(allow_private_networks=True),
                     limits)
    with LiveServer(app) as server, FileServer(media) as files, PutReceiver() as sink, \
            httpx.Client(base_url=server.url, timeout=120) as client:
        yield client, files, sink


# ---------------------------------------------------------------- every decoded frame, in-process


def test_decoder_refuses_a_mid_stream_resolution_change(media):
    stage = DecodeStage(media / "change.ts")
    sizes = []
    with pytest.raises(MediaError, match=r"changes resolution mid-stream, from 320x240 to 640x480 at 1\.00 s"):
        for frame in stage.items():
            sizes.append(frame.image.shape[:2])
    assert sizes == [(240, 320)] * 25  # no frame of the new size was converted or passed on


def test_probe_checks_the_decoded_picture_and_the_packet_timestamps(media, data_dir):
    with pytest.raises(MediaError, match=r"480x480 \(230400 pixels per frame\).*LIPSYNC_MAX_PIXELS"):
        probe_media(data_dir / "video" / "d20.mp4", "video", max_pixels=100_000)
    # the header says 320x240; a later keyframe is bigger, or just of another size
    with pytest.raises(MediaError, match=r"640x480 \(307200 pixels per frame\).*at most 76800"):
        probe_media(media / "change.ts", "video", max_pixels=320 * 240)
    with pytest.raises(MediaError, match=r"changes resolution mid-stream, from 320x240 to 640x480 at 1\.00 s"):
        probe_media(media / "change.ts", "video", max_pixels=640 * 480)
    assert probe_media(media / "patched.mp4", "video").duration_s == pytest.approx(1.0)  # the header lies
    with pytest.raises(MediaError, match=r"runs past 3 s.*LIPSYNC_MAX_DURATION_S"):
        probe_media(media / "patched.mp4", "video", max_duration_s=3.0)
    assert probe_media(media / "patched.mp4", "video", max_duration_s=8.0).frame_count == 175



def test_duration_of_a_raw_stream_without_timestamps(media, data_dir, tmp_path):
    raw = tmp_path / "raw.h264"  # Annex B H.264: no container, packets carry no timestamps
    with av.open(str(data_dir / "video" / "d20.mp4")) as source, av.open(str(raw), "w", format="h264") as out:
        stream = out.add_stream_from_template(source.streams.video[0])
        for packet in source.demux(video=0):
            if packet.size:
                packet.stream = stream
                out.mux(packet)
    # before: 0 s covered, so any length passed LIPSYNC_MAX_DURATION_S
    assert probe_media(raw, "video").duration_s == pytest.approx(7.0, abs=0.1)
    with pytest.raises(MediaError, match=r"runs past 3 s: its video packets reach 3\.0\d s"):
        probe_media(raw, "video", max_duration_s=3.0)


def test_headshot_pixels_are_checked_before_decoding(media):
    assert (media / "huge.png").stat().st_size < 100_000
    with pytest.raises(MediaError, match=r"9000x9000 \(81000000 pixels\).*LIPSYNC_MAX_HEADSHOT_PIXELS"):
        probe_media(media / "huge.png", "image", max_pixels=4096 * 4096)


# ---------------------------------------------------------------- through the server


def test_resolution_change_fails_the_job_with_422(api):
    client, files, _ = api
    answer = client.post("/detect-faces", json={"video_url": files.url("change.ts"), "sample_fps": 25})
    # before: 200, with bboxes of 640x480 frames reported against a 320x240 video
    assert answer.status_code == 422, answer.text
    assert "video_url" in answer.json()["error_message"]
    assert "changes resolution mid-stream, from 320x240 to 640x480" in answer.json()["error_message"]


def test_header_patched_mp4_is_refused_on_its_timestamps(api):
    client, files, sink = api
    answer = client.post("/lipsync", json={"video_url": files.url("patched.mp4"), "audio_url": files.url("patched.mp4"),
                                           "upload_url": sink.url("out.mp4"),
                                           "faces": [{"character_id": "a", "bbox": [100, 100, 100, 100],
                                                      "start_time_ms": 0, "end_time_ms": 900}]})
    # before: the 1 s header passed the 3 s limit and all 175 frames were processed
    assert answer.status_code == 422, answer.text
    assert "runs past 3 s" in answer.json()["error_message"] and sink.puts == []


def test_too_many_faces_or_characters_and_duplicates_are_refused(api):
    client, files, sink = api
    face = {"character_id": "a", "bbox": [1, 1, 50, 50], "start_time_ms": 0, "end_time_ms": 500}
    body = {"video_url": files.url("patched.mp4"), "audio_url": files.url("patched.mp4"),
            "upload_url": sink.url("out.mp4")}
    answer = client.post("/jobs/lipsync", json={**body, "faces": [{**face, "start_time_ms": i} for i in range(4)]})
    assert answer.status_code == 422 and "LIPSYNC_MAX_FACES" in answer.json()["error_message"]
    answer = client.post("/jobs/lipsync", json={**body, "faces": [face, face]})
    assert answer.status_code == 422 and "faces[1]' repeats faces[0]" in answer.json()["error_message"]
    voices = [{"character_id": f"face_{i}", "audio_url": files.url("patched.mp4")} for i in range(4)]
    answer = client.post("/jobs/lipsync", json={**body, "auto": True, "faces": voices})  # a stem per person
    assert answer.status_code == 422 and "LIPSYNC_MAX_FACES" in answer.json()["error_message"]
    characters = [{"id": str(i), "reference_image_url": files.url("huge.png")} for i in range(3)]
    answer = client.post("/jobs/detect-faces", json={"video_url": files.url("patched.mp4"), "characters": characters})
    assert answer.status_code == 422 and "LIPSYNC_MAX_CHARACTERS" in answer.json()["error_message"]


def test_huge_headshot_is_refused_without_decoding_it(api):
    client, files, _ = api
    started = time.monotonic()
    answer = client.post("/detect-faces", json={"video_url": files.url("short.mp4"), "characters": [
        {"id": "a", "reference_image_url": files.url("huge.png")}]})
    # before: 8 s and 1.46 GB of RSS to decode the 81-megapixel PNG
    assert answer.status_code == 422, answer.text
    message = answer.json()["error_message"]
    assert "characters[0].reference_image_url" in message and "LIPSYNC_MAX_HEADSHOT_PIXELS" in message
    assert time.monotonic() - started < 30


def test_limits_from_env():
    limits = Limits.from_env({"LIPSYNC_MAX_FACES": "4", "LIPSYNC_MAX_CHARACTERS": "0",
                              "LIPSYNC_MAX_HEADSHOT_PIXELS": "1000000"})
    assert (limits.max_faces, limits.max_characters, limits.max_headshot_pixels) == (4, 0, 1_000_000)
    defaults = Limits.from_env({})
    assert (defaults.max_faces, defaults.max_characters, defaults.max_headshot_pixels) == (16, 16, 4096 * 4096)
    assert defaults.probe_limits("image") == {"max_pixels": 4096 * 4096}
    assert defaults.probe_limits("audio") == {"max_duration_s": 600.0, "max_pixels": None}
    with pytest.raises(ValueError, match="LIPSYNC_MAX_FACES"):
        Limits.from_env({"LIPSYNC_MAX_FACES": "many"})
