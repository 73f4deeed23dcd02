"""Shared by the job API tests (in-process and queue mode): short talking-head clips,
a speech track, and a poll loop on GET /jobs/{id}."""
from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import numpy as np
from scipy.io import wavfile

from stages.audio import load_audio
from tests.media import clip_frames, compose

RATE = 16000
FINAL = ("succeeded", "failed", "cancelled")


def write_job_media(folder: Path, data_dir: Path, clips: dict[str, float]) -> Path:
    """d12's face at 320x320 as `name -> seconds` clips (looping after 6 s), plus speech.wav (6 s)."""
    face = clip_frames(data_dir / "video" / "d12.mp4", 320)
    for name, seconds in clips.items():
        compose(folder / name, [{"frames": face[:min(150, int(seconds * 25))], "x": 0, "y": 0}], 320, 320, seconds)
    speech = load_audio(data_dir / "audio" / "yongen.wav", RATE)[:6 * RATE]
    wavfile.write(folder / "speech.wav", RATE, (speech * 32767).astype(np.int16))
    return folder


def wait_for(server, job_id: str, until, timeout: float = 120) -> dict:
    """Poll the job's record until `until(record)` holds; fail with the last record."""
    deadline = time.monotonic() + timeout
    record = None
    while time.monotonic() < deadline:
        record = httpx.get(f"{server.url}/jobs/{job_id}").json()
        if until(record):
            return record
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} never reached the expected state: {record}")


def follow_events(server, job_id: str, timeout: float = 120) -> list[tuple[str | None, dict]]:
    """A job's server-sent events, (event name, JSON data), read until the server ends the stream."""
    events: list[tuple[str | None, dict]] = []
    with httpx.stream("GET", f"{server.url}/jobs/{job_id}/events", timeout=timeout) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        event = None
        for line in stream.iter_lines():
            if line.startswith("event: "):
                event = line.removeprefix("event: ")
            elif line.startswith("data: "):
                events.append((event, json.loads(line.removeprefix("data: "))))
    return events
