"""resolve_targets' rules in-process: the probe order, the shot limit, the error text, the
matching; frame_at and shot_span on tiny synthetic videos (64x48, made in the test).

No sample media and no face model, so a mutation run (scripts/mutation.py jobs/targets.py)
takes seconds a mutant; tests/test_targets.py runs resolve_targets on a real clip.
"""
from __future__ import annotations

import av
import numpy as np
import pytest

from jobs import targets as targets_module
from jobs.schema import FaceSpec
from jobs.targets import FrameReader, _best_match, frame_at, resolve_targets, shot_span
from models.faces.face import Face
from stream.errors import InputError


def box_face(x1, y1, x2, y2) -> Face:
    return Face(bbox=[x1, y1, x2, y2], score=0.9, kps=np.zeros((5, 2)))


class ScriptedBackend:
    """Faces by probe time (ms), recording the times it was asked about."""

    def __init__(self, faces_at: dict[float, list[Face]]):
        self.faces_at = faces_at
        self.asked: list[float] = []
        self.current = None

    def detect(self, image, with_embedding=False):
        assert with_embedding is True  # asked for: the anchor's embedding follows the person later
        self.asked.append(image)
        return self.faces_at.get(image, [])


@pytest.fixture
def scripted(monkeypatch):
    """frame_at returns the probe time as the 'image'; shot_span a fixed span, counting its calls.
    Both check they are asked about the request's video ("v.mp4")."""
    spans: list[tuple] = []
    state = {"span": (float("-inf"), float("inf")), "missing": set()}

    def frame_at(path, time_ms):
        assert path == "v.mp4"
        return None if time_ms in state["missing"] else (time_ms, time_ms)

    def shot_span(path, time_ms, reach_ms):
        assert path == "v.mp4"
        spans.append((time_ms, reach_ms))
        return state["span"]

    monkeypatch.setattr(targets_module, "frame_at", frame_at)
    monkeypatch.setattr(targets_module, "shot_span", shot_span)
    return state, spans


def test_probes_go_0_plus_200_minus_200_plus_500_minus_500(scripted):
    state, spans = scripted
    backend = ScriptedBackend({})
    with pytest.raises(InputError) as refused:
        resolve_targets("v.mp4", [FaceSpec("carol", [0, 0, 10, 10], 1000, 2000)], backend, 5000)
    assert backend.asked == [1000, 1200, 800, 1500, 500]
    assert spans == [(1000, 500)]  # the shot is found once, as far as the farthest probe
    assert str(refused.value) == ("faces[0] (carol): bbox [0, 0, 10, 10] matches no face detected near 1000 ms "
                                  "(faces found there: none); use a bbox from /detect-faces at that time")


def test_probes_clamp_to_the_video_and_skip_repeats(scripted):
    backend = ScriptedBackend({})
    with pytest.raises(InputError):
        resolve_targets("v.mp4", [FaceSpec("c", [0, 0, 10, 10], 100, 2000)], backend, 400)
    assert backend.asked == [100, 300, 0, 399]  # -200 and -500 clamp to 0; +200 and +500 to the last ms


def test_probes_outside_the_shot_are_skipped(scripted):
    state, _ = scripted
    state["span"] = (900.0, 1200.0)  # [start, end): 1200 belongs to the next shot
    backend = ScriptedBackend({})
    with pytest.raises(InputError):
        resolve_targets("v.mp4", [FaceSpec("c", [0, 0, 10, 10], 1000, 2000)], backend, 5000)
    assert backend.asked == [1000]
    state["span"] = (800.0, 1201.0)
    backend = ScriptedBackend({})
    with pytest.raises(InputError):
        resolve_targets("v.mp4", [FaceSpec("c", [0, 0, 10, 10], 1000, 2000)], backend, 5000)
    assert backend.asked == [1000, 1200, 800]


def test_the_first_probe_with_a_match_wins_and_a_missing_frame_is_skipped(scripted):
    state, spans = scripted
    state["missing"] = {1200.0}
    near = box_face(100, 100, 200, 200)
    backend = ScriptedBackend({800: [near], 1500: [box_face(100, 100, 200, 200)]})
    (target,) = resolve_targets("v.mp4", [FaceSpec("alice", [100, 100, 100, 100], 1000, 2000)], backend, 5000)
    assert backend.asked == [1000, 800] and target.anchor is near
    assert (target.index, target.character_id, target.start_ms, target.end_ms) == (0, "alice", 1000, 2000)


def test_a_match_at_the_start_needs_no_shot_detection(scripted):
    _, spans = scripted
    backend = ScriptedBackend({1000: [box_face(100, 100, 200, 200)]})
    resolve_targets("v.mp4", [FaceSpec("a", [100, 100, 100, 100], 1000, 2000)], backend, 5000)
    assert spans == []


def test_the_error_lists_each_person_once_and_at_most_six(scripted):
    people = [box_face(100 * i, 0, 100 * i + 80, 80) for i in range(8)]
    moved = [box_face(100 * i + 5, 0, 100 * i + 85, 80) for i in range(8)]  # the same people, IoU 0.78
    backend = ScriptedBackend({1000: people[:2], 1200: moved[:3], 800: people[3:]})
    with pytest.raises(InputError) as refused:
        resolve_targets("v.mp4", [FaceSpec("c", [2000, 2000, 10, 10], 1000, 2000)], backend, 5000)
    listed = str(refused.value).split("faces found there: ")[1].split(");")[0]
    assert listed == "[0, 0, 80, 80], [100, 0, 80, 80], [205, 0, 80, 80], [300, 0, 80, 80], [400, 0, 80, 80], [500, 0, 80, 80]"


def test_start_at_or_past_the_end_is_outside_the_video(scripted):
    backend = ScriptedBackend({0: [box_face(0, 0, 10, 10)]})
    with pytest.raises(InputError) as refused:
        resolve_targets("v.mp4", [FaceSpec("a", [0, 0, 10, 10], 0, 10), FaceSpec("b", [0, 0, 10, 10], 5000, 6000)],
                        backend, 5000)
    assert str(refused.value) == "faces[1] (b): start_time_ms 5000 is outside the video (duration 5000 ms)"
    assert backend.asked == [0]  # faces[1] is refused before any frame is probed for it
    (target,) = resolve_targets("v.mp4", [FaceSpec("a", [0, 0, 10, 10], 4999, 6000)],
                                ScriptedBackend({4999: [box_face(0, 0, 10, 10)]}), 5000)
    assert target.start_ms == 4999


def test_best_match_prefers_overlap_then_a_contained_centre():
    spec = np.array([100, 100, 200, 200], np.float32)
    far = box_face(300, 300, 400, 400)
    half = box_face(100, 100, 200, 150)   # IoU 0.5
    most = box_face(100, 100, 200, 190)   # IoU 0.9
    assert _best_match(spec, [far, half, most]) is most
    assert _best_match(spec, [far]) is None
    assert _best_match(spec, []) is None
    big = box_face(0, 0, 400, 400)        # IoU 1/16, but its centre (200, 200) is on the box's corner
    assert _best_match(spec, [far, big]) is big
    edge = box_face(140, 100, 300, 200)   # IoU exactly 0.3, centre (220, 150) outside: accepted
    assert _best_match(spec, [edge, far]) is edge
    assert _best_match(spec, [box_face(141, 100, 301, 200)]) is None  # IoU 0.294, centre outside
    outside = box_face(150, 201, 250, 300)  # no overlap, centre outside
    assert _best_match(spec, [outside]) is None
    for corner in ((99, 150), (201, 150), (150, 99), (150, 201)):  # a centre just outside each edge
        cx, cy = corner
        assert _best_match(spec, [box_face(cx - 300, cy - 300, cx + 300, cy + 300)]) is None


def test_a_clamped_repeat_is_skipped_and_the_later_probes_still_run(scripted):
    backend = ScriptedBackend({})
    with pytest.raises(InputError):
        resolve_targets("v.mp4", [FaceSpec("c", [0, 0, 10, 10], 0, 2000)], backend, 5000)
    assert backend.asked == [0, 200, 500]  # -200 and -500 both clamp to 0, already probed


def test_a_probe_outside_the_shot_is_skipped_and_the_later_probes_still_run(scripted):
    state, _ = scripted
    state["span"] = (800.0, 1100.0)  # +200 is in the next shot, -200 in this one
    backend = ScriptedBackend({})
    with pytest.raises(InputError):
        resolve_targets("v.mp4", [FaceSpec("c", [0, 0, 10, 10], 1000, 2000)], backend, 5000)
    assert backend.asked == [1000, 800]


def test_no_decodable_frame_near_the_start_is_an_error_not_a_target(scripted):
    state, _ = scripted
    state["missing"] = {1000.0, 1200.0, 800.0, 1500.0, 500.0}
    with pytest.raises(InputError, match=r"faces found there: none"):
        resolve_targets("v.mp4", [FaceSpec("c", [0, 0, 10, 10], 1000, 2000)], ScriptedBackend({}), 5000)


def test_faces_overlapping_by_exactly_half_are_listed_once(scripted):
    """_SAME_FACE_IOU 0.5: a box and its top half (IoU exactly 0.5) are one person."""
    backend = ScriptedBackend({1000: [box_face(0, 0, 100, 100)], 1200: [box_face(0, 0, 100, 50)],
                               800: [box_face(0, 0, 100, 49)]})
    with pytest.raises(InputError) as refused:
        resolve_targets("v.mp4", [FaceSpec("c", [900, 900, 10, 10], 1000, 2000)], backend, 5000)
    listed = str(refused.value).split("faces found there: ")[1].split(");")[0]
    assert listed == "[0, 0, 100, 100], [0, 0, 100, 49]"  # IoU 0.49: another person


def test_the_targets_of_one_call_share_one_job_token(scripted):
    faces = {1000: [box_face(0, 0, 100, 100), box_face(200, 0, 300, 100)]}
    specs = [FaceSpec("a", [0, 0, 100, 100], 1000, 2000), FaceSpec("b", [200, 0, 100, 100], 1000, 2000)]
    first = resolve_targets("v.mp4", specs, ScriptedBackend(faces), 5000)
    again = resolve_targets("v.mp4", specs, ScriptedBackend(faces), 5000)
    assert [t.anchor.bbox[0] for t in first] == [0, 200] and [t.index for t in first] == [0, 1]
    (job,) = {t.job for t in first}
    assert len(job) == 12 and int(job, 16) >= 0  # 12 hex digits
    assert {t.job for t in again} != {job}


def test_best_match_reads_x_and_y_from_their_own_edges():
    """A box 100 wide and 200 tall (x 100-200, y 300-500): a face much larger than it (IoU
    under 0.3) is matched when its centre is inside, edges included."""
    spec = np.array([100, 300, 200, 500], np.float32)

    def around(cx, cy):
        return box_face(cx - 400, cy - 400, cx + 400, cy + 400)

    for centre in ((100, 300), (200, 500), (150, 400), (100, 500), (200, 300)):
        assert _best_match(spec, [around(*centre)]) is not None, centre
    for centre in ((99, 400), (201, 400), (150, 299), (150, 501), (250, 400), (150, 250)):
        assert _best_match(spec, [around(*centre)]) is None, centre


def test_best_match_keeps_the_first_of_equal_overlaps():
    spec = np.array([100, 100, 200, 200], np.float32)
    left, right = box_face(50, 100, 150, 200), box_face(150, 100, 250, 200)  # IoU 1/3 each
    assert _best_match(spec, [left, right]) is left and _best_match(spec, [right, left]) is right


# --- frame_at and shot_span on tiny synthetic videos -------------------------------------------
RAMP = [20 + 3 * i for i in range(40)]
"""Frame i of the ramp video is grey 20 + 3i, so a decoded frame's mean names it."""


def _video(path, lumas, gop: int = 12, rotation: int | None = None, audio: bool = False):
    """64x48 H.264 at 25 fps, frame i flat grey lumas[i] except a white top-left 8x8 corner;
    a keyframe every `gop` frames; an optional display rotation (degrees) and an AAC track
    (a 16 kHz tone as long as the video, muxed first)."""
    with av.open(str(path), "w") as out:
        sound = out.add_stream("aac", rate=16000, layout="mono") if audio else None
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.codec_context.gop_size = gop
        stream.options = {"crf": "1", "preset": "ultrafast", "scenecut": "0"}
        if rotation is not None:
            stream.set_display_rotation(rotation)
        if sound is not None:
            tone = (0.3 * np.sin(np.arange(len(lumas) * 640) / 16000 * 2 * np.pi * 440)).astype(np.float32)
            for start in range(0, tone.size, 1024):
                chunk = av.AudioFrame.from_ndarray(tone[None, start:start + 1024].copy(), format="fltp", layout="mono")
                chunk.sample_rate, chunk.pts = 16000, start
                out.mux(sound.encode(chunk))
            out.mux(sound.encode(None))
        for luma in lumas:
            image = np.full((48, 64, 3), luma, np.uint8)
            image[:8, :8] = 255
            out.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        out.mux(stream.encode(None))
    return str(path)


def _index(found) -> tuple[float, int]:
    """(time_ms, frame number) of a frame_at answer, the number read from its grey."""
    time_ms, image = found
    return time_ms, round((float(np.median(image)) - 20) / 3)


@pytest.fixture(scope="module")
def ramp(tmp_path_factory):
    return _video(tmp_path_factory.mktemp("targets") / "ramp.mp4", RAMP)


@pytest.mark.parametrize("time_ms,frame", [(0, 0), (1000, 25), (1010, 25), (1039, 25), (999, 24),
                                           (-300, 0), (500, 12), (1560, 39)])
def test_frame_at_is_the_frame_shown_at_that_time(ramp, time_ms, frame):
    """The frame starting at or before time_ms, by seeking to the keyframe before it (every 12
    frames) and decoding on; a time before the start is the first frame."""
    assert _index(frame_at(ramp, time_ms)) == (pytest.approx(frame * 40.0), frame)


def test_a_frame_reader_gives_frame_at_s_frames_in_any_order(ramp):
    """One decoder for many probes: on within a keyframe's reach (every 12 frames here),
    across keyframes, back, the same time twice, before the start and past the end."""
    times = [0, 100, 100, 130, 470, 520, 1000, 999, 1039, 40, -300, 1560, 5000, 1200, 300]
    seeks = []
    with FrameReader(ramp) as reader:
        seek = reader._seek
        reader._seek = lambda target: (seeks.append(target), seek(target))
        got = [_index(reader(t)) for t in times]
    assert got == [_index(frame_at(ramp, t)) for t in times]
    # keyframes at 0, 480, 960, 1440 ms: it seeks for 0, 1000 (past 960), 999 and 40 and -300
    # (back), 1560, 1200 and 300 (back), and decodes on for the rest, 5000 included
    assert len(seeks) == 8


def test_frame_at_turns_the_picture_upright(tmp_path):
    """A display rotation of 90 degrees (counter-clockwise): the 64x48 frame comes back 48x64,
    its white top-left corner at the bottom left."""
    path = _video(tmp_path / "turned.mp4", [100] * 5, rotation=90)
    _, image = frame_at(path, 40)
    assert image.shape == (64, 48, 3)
    assert image[-4, 4].min() > 200 and image[4, 4].max() < 150


@pytest.fixture(scope="module")
def three_shots(tmp_path_factory):
    """Grey 60, 200, 60: two seconds each, cuts at 2000 and 4000 ms; every frame a keyframe, so
    a seek lands exactly where it is asked to."""
    return _video(tmp_path_factory.mktemp("targets") / "shots.mp4", [60] * 50 + [200] * 50 + [60] * 50, gop=1)


@pytest.mark.parametrize("time_ms,reach_ms,span", [
    (2500, 500, (2000.0, float("inf"))),    # decodes 1000-3000 ms: the cut at 4000 is out of reach
    (1800, 500, (float("-inf"), 2000.0)),
    (2000, 500, (2000.0, float("inf"))),    # a boundary at the time itself starts its shot
    (2600, 200, (2000.0, float("inf"))),    # 1000 ms lead: from 1400 ms, so the cut at 2000 is seen
    (3700, 300, (float("-inf"), 4000.0)),   # decodes 2400-4000 ms, the frame at 4000 included
    (3000, 500, (2000.0, float("inf"))),
])
def test_shot_span_is_the_shot_holding_the_time_as_far_as_reach_shows(three_shots, time_ms, reach_ms, span):
    assert shot_span(three_shots, time_ms, reach_ms) == span


def test_frame_at_and_shot_span_read_the_video_stream_of_a_file_with_sound(tmp_path):
    """The AAC track comes first in the file; its frames are not pictures."""
    path = _video(tmp_path / "sound.mp4", RAMP[:25] + [220] * 25, audio=True)
    assert _index(frame_at(path, 400)) == (pytest.approx(400.0), 10)
    assert shot_span(path, 1500, 500) == (1000.0, float("inf"))


def test_shot_span_seeks_to_the_keyframe_before_its_lead(tmp_path):
    """Keyframes only at 0, 1000, 2000 ms...: from 1400 ms (2600 - 200 - 1000 lead) the seek must
    land on the keyframe at 1000 ms, or the cut at 2000 ms would be the first frame decoded."""
    path = _video(tmp_path / "gop.mp4", [60] * 50 + [200] * 50, gop=25)
    assert shot_span(path, 2600, 200) == (2000.0, float("inf"))
