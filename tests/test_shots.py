"""ShotDetector: cuts and fades found in edited videos, nothing found in uncut hand-held ones."""
from __future__ import annotations

import av
import numpy as np
import pytest

from stages.decode import DecodeStage
from stages.shots import ShotDetector, frame_thumbnail, thumbnail_change
from tests.media import clip_frames
from tests.shot_media import Keyframes, Person, Shot, edited_video, shot_at, uncut_video

FPS = 25


def _boundary_frames(detector: ShotDetector) -> list[int]:
    return [int(round(ms / 1000 * FPS)) for ms in detector.boundaries_ms]


@pytest.fixture(scope="module")
def clips(data_dir):
    return {name: clip_frames(data_dir / "video" / f"{name}.mp4", 144) for name in ("d12", "d20", "d11")}


@pytest.fixture(scope="module")
def edited(tmp_path_factory, clips):
    """R (d12) on the right; R left and an unknown (d20) right; a third person alone, fading
    out; R right again. 320x180, faces 144 px: the set is static, only the people change."""
    d12, d20, d11 = clips["d12"], clips["d20"], clips["d11"]
    shots = [Shot(1.2, [Person("R", d12, 170, 18)]),
             Shot(1.2, [Person("R", d12, 6, 18, 40), Person("U", d20, 170, 18)]),
             Shot(1.2, [Person("V", d11, 88, 18)], fade_out_frames=8),
             Shot(1.2, [Person("R", d12, 170, 18, 90)])]
    path = tmp_path_factory.mktemp("shots") / "edited.mp4"
    return path, edited_video(path, shots, 320, 180, FPS)


@pytest.mark.parametrize("clip", ["d12.mp4", "d10.mp4", "s29.mp4"])
def test_no_boundary_in_uncut_video(data_dir, clip):
    """d12 is hand-held and shaky (frame-to-frame change up to 26 grey levels), d10 steady,
    s29 portrait; none has a cut."""
    detector = ShotDetector()
    frames = list(DecodeStage(data_dir / "video" / clip, shots=detector).items())
    assert detector.frames == len(frames) > 100
    assert detector.boundaries_ms == []
    assert {f.notes["shot"] for f in frames} == {0}


@pytest.mark.parametrize("keyframes", [Keyframes(50, crf=40), Keyframes(50, crf=30, preset="medium"),
                                       Keyframes(100, scene_adaptive=True, crf=40)])
def test_no_cut_at_a_keyframe(tmp_path, data_dir, keyframes):
    """720p, three people side by side, nearly still (each clip frame held 4 frames): the
    first keyframe after the start pulses (its change 1.3 grey levels, 0.05 around it at
    crf 40), yet no cell changes by much."""
    people = [Person(name, clip_frames(data_dir / "video" / f"{name}.mp4", 200), 140 + 400 * k, 260, 30 * k)
              for k, name in enumerate(("d10", "d12", "d20"))]
    path = tmp_path / "uncut.mp4"
    keys = uncut_video(path, people, 1280, 720, 110, keyframes, hold=4)
    assert len(keys) >= 2
    detector = ShotDetector()
    frames = list(DecodeStage(path, sample_fps=3, shots=detector).items())
    assert detector.frames == 110 and frames
    assert detector.boundaries_ms == []


def test_cuts_and_fade_found_and_every_frame_labelled(edited):
    path, cuts = edited
    detector = ShotDetector()
    frames = list(DecodeStage(path, shots=detector).items())
    found = _boundary_frames(detector)
    assert len(found) == len(cuts)
    assert all(abs(a - b) <= 1 for a, b in zip(found, cuts)), (found, cuts)
    wrong = [f.index for f in frames if f.notes["shot"] != shot_at(found, f.index)]
    assert wrong == []
    assert [f.index for f in frames] == list(range(len(frames)))  # held back, never dropped
    shots = detector.shots(frames[-1].time_ms + 40)
    assert len(shots) == 4 and shots[0]["start_ms"] == 0 and shots[-1]["end_ms"] == 4800
    assert all(a["end_ms"] == b["start_ms"] for a, b in zip(shots, shots[1:]))


def test_sampled_frames_carry_the_shot_of_the_full_sequence(edited):
    """At 3 fps the decoder converts one frame in eight, yet every frame feeds the detector."""
    path, cuts = edited
    detector = ShotDetector()
    frames = list(DecodeStage(path, sample_fps=3, shots=detector).items())
    assert detector.frames == 120 and len(frames) < 20
    found = _boundary_frames(detector)
    assert len(found) == len(cuts)
    assert [f.notes["shot"] for f in frames] == [shot_at(found, f.index) for f in frames]


def test_flash_is_not_a_cut(clips):
    """One white frame in a shot changes the picture twice, there and back: not a boundary."""
    detector = ShotDetector()
    for k, image in enumerate(clips["d12"][:40]):
        shown = np.full_like(image, 255) if k == 20 else image
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(shown), format="rgb24").reformat(format="yuv420p")
        detector.push(frame_thumbnail(frame), k * 40.0)
    detector.finish()
    assert detector.boundaries_ms == []


def test_thumbnail_reads_the_planes_in_any_format(clips):
    image = np.ascontiguousarray(clips["d20"][0])
    frame = av.VideoFrame.from_ndarray(image, format="rgb24")
    planar = frame_thumbnail(frame.reformat(format="yuv420p"))
    assert planar.shape == (64, 64, 3)
    assert thumbnail_change(planar, frame_thumbnail(frame.reformat(format="nv12"))) < 1.0
    assert thumbnail_change(planar, frame_thumbnail(frame)) < 3.0  # rgb24: reformatted small


@pytest.fixture(scope="module")
def dissolved(tmp_path_factory, clips):
    """R (d12) right; dissolves of 8 frames (0.32 s) into U (d20) in R's place, and of 25
    frames (1.0 s) into V (d11) left and R right; a hard cut back to U alone."""
    d12, d20, d11 = clips["d12"], clips["d20"], clips["d11"]
    shots = [Shot(1.6, [Person("R", d12, 170, 18)]),
             Shot(1.6, [Person("U", d20, 170, 18)], dissolve_frames=8),
             Shot(1.6, [Person("V", d11, 6, 18), Person("R", d12, 170, 18, 50)], dissolve_frames=25),
             Shot(1.2, [Person("U", d20, 88, 18, 20)])]
    path = tmp_path_factory.mktemp("dissolves") / "dissolved.mp4"
    return path, edited_video(path, shots, 320, 180, FPS)


def test_dissolves_are_found_at_their_middle(dissolved):
    path, truth = dissolved
    detector = ShotDetector()
    frames = list(DecodeStage(path, shots=detector).items())
    found = _boundary_frames(detector)
    assert detector.kinds == ["dissolve", "dissolve", "cut"], (found, truth)
    assert [abs(a - b) for a, b in zip(found, truth)] <= [3, 6, 1], (found, truth)
    assert [f.notes["shot"] for f in frames] == [shot_at(found, f.index) for f in frames]


def test_a_dissolve_the_second_opinion_rejects_is_not_a_boundary(dissolved):
    asked = []

    def never(thumbs, middle):
        asked.append(middle)
        return False

    detector = ShotDetector(check=never)
    list(DecodeStage(dissolved[0], shots=detector).items())
    assert len(asked) == 2 and detector.kinds == ["cut"] and detector.dissolves_rejected == 2


def test_the_network_confirms_real_dissolves(dissolved):
    pytest.importorskip("torch")
    from models.transnet import load_transnet
    from stages.dissolves import network_check

    detector = ShotDetector(check=network_check(load_transnet()))
    list(DecodeStage(dissolved[0], shots=detector).items())
    assert detector.kinds == ["dissolve", "dissolve", "cut"] and detector.dissolves_rejected == 0
