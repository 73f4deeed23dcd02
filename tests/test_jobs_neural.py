"""The full neural chain on the CPU with tiny random models in the official layouts:
MuseTalk -> LivePortrait -> composite -> CodeFormer. The output looks like noise; frames,
timestamps, segments, timing and the fidelity weight's effect must be right."""
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("diffusers")

from jobs.config import Settings  # noqa: E402
from jobs.detect import detect_faces
from jobs.lipsync import lipsync  # noqa: E402
from jobs.registry import shared_registry  # noqa: E402
from jobs.schema import FaceSpec  # noqa: E402
from models.codeformer import FaceRestorer  # noqa: E402
from models.liveportrait import LivePortraitAnimator  # noqa: E402
from tests.media import read_frames, read_pts, write_video  # noqa: E402
from tests.test_codeformer import TINY as TINY_CODEFORMER  # noqa: E402
from tests.test_liveportrait import TINY as TINY_LIVEPORTRAIT  # noqa: E402
from tests.tiny_stack import write_tiny_stack  # noqa: E402


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory) -> Path:
    return write_tiny_stack(tmp_path_factory.mktemp("tiny_models"))


@pytest.fixture(scope="module")
def settings(models_dir) -> Settings:
    settings = Settings(models_dir=models_dir)
    registry = shared_registry(settings)
    # small configs are not the official ones, so load them through the real loaders here
    registry.provide("liveportrait", LivePortraitAnimator.load(models_dir, config=TINY_LIVEPORTRAIT))
    registry.provide("codeformer", FaceRestorer.load(models_dir, **TINY_CODEFORMER))
    return settings


@pytest.fixture(scope="module")
def clip(tmp_path_factory, data_dir) -> Path:
    frames = read_frames(data_dir / "video" / "d20.mp4")[:25]
    return write_video(tmp_path_factory.mktemp("clip") / "one_second.mp4", frames)


def run(clip, data_dir, settings, out, fidelity) -> dict:
    bbox = detect_faces(clip, sample_fps=1, settings=settings)["frames"][0]["faces"][0]["bbox"]
    faces = [FaceSpec("a", bbox, 200, 1000)]
    return lipsync(clip, data_dir / "audio" / "yongen.wav", faces, out, settings,
                        enhance_quality=True, fidelity_weight=fidelity)


def test_full_chain_runs_end_to_end(tmp_path, clip, data_dir, settings):
    out = tmp_path / "full.mp4"
    result = run(clip, data_dir, settings, out, 0.7)
    assert result["engine"] == "musetalk" and result["liveportrait"] and result["enhanced"]
    assert read_pts(out) == read_pts(clip)
    segments = result["faces"]["results"][0]["segments"]
    assert segments[0]["start_ms"] == 200 and segments[-1]["end_ms"] == 1000
    assert result["timing"]["enhancement_ms"] > 0 and result["timing"]["lipsync_ms"] > 0
    assert not any("CodeFormer" in w for w in result["warnings"])
    before, after = read_frames(clip), read_frames(out)
    assert np.abs(after[2].astype(int) - before[2].astype(int)).mean() < 2  # before the range: untouched
    assert np.abs(after[12].astype(int) - before[12].astype(int)).max() > 30  # inside: re-rendered


def test_fidelity_weight_changes_the_restored_output(tmp_path, clip, data_dir, settings):
    low, high = tmp_path / "w0.mp4", tmp_path / "w1.mp4"
    result = run(clip, data_dir, settings, low, 0.0)
    run(clip, data_dir, settings, high, 1.0)
    a, b = read_frames(low), read_frames(high)
    x, y, w, h = result["faces"]["results"][0]["segments"][-1]["avg_bbox"]
    face = np.abs(a[12].astype(int) - b[12].astype(int))[y:y + h, x:x + w]
    # the weight re-renders the whole face, not a few pixels: measured mean 22 levels, 69% of
    # the face's pixels moved by more than 8 (the encoder's noise outside the face: under 1)
    assert face.mean() > 10 and (face > 8).mean() > 0.5
    # outside the range neither is touched (equal up to the encoder's inter-frame prediction)
    assert np.abs(a[2].astype(int) - b[2].astype(int)).mean() < 0.5
