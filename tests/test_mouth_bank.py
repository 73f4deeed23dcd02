"""The mouth bank: canonical samples and descriptors on real frames, a bounded diverse bank,
selection, and the bank pass naming people by identity."""
from __future__ import annotations

from dataclasses import replace

import av
import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.faces.default import DefaultFaceBackend
import models.mouth_bank as mouth_bank
from models.lip_contour import refine_outer_lips
from models.mouth_bank import (
    BAND_SAMPLES,
    CANONICAL_SIZE,
    CLOSED_GAP,
    MAX_PX_PER_S,
    OPEN_GAP,
    PX_PER_S,
    INNER_PAIRS,
    FaceAxes,
    MouthBank,
    canonical_size,
    inner_bands,
    lip_thickness,
    sample_mouth,
    sample_resolution,
)
from models.mouth_geometry import WarpConfig, articulate_many
from models.mouth_transfer import WeightedSample, paint_bank_mouth
from stages.decode import DecodeStage
from stages.mouth_bank import MouthBankStage
from stream.pipeline import Pipeline


@pytest.fixture(scope="module")
def backend() -> DefaultFaceBackend:
    return DefaultFaceBackend()


def frame_at(path, time_ms: float) -> np.ndarray:
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            if frame.time * 1000 >= time_ms - 1:
                return frame.to_ndarray(format="rgb24")
    raise AssertionError(f"no frame at {time_ms} ms")


@pytest.fixture(scope="module")
def d12_samples(data_dir, backend):
    """d12 at 0 ms (lips closed), 1000 ms (a toothy smile) and 5000 ms (a wide-open 'o')."""
    out = {}
    for t in (0, 1000, 5000):
        image = frame_at(data_dir / "video" / "d12.mp4", t)
        face = backend.detect(image, with_embedding=False)[0]
        out[t] = sample_mouth(image, face.landmarks, face.pose, t)
    return out


def test_samples_are_canonical_patches_with_descriptors(d12_samples):
    closed, smile, wide = d12_samples[0], d12_samples[1000], d12_samples[5000]
    for sample in (closed, smile, wide):
        assert sample.patch.shape == (CANONICAL_SIZE[1], CANONICAL_SIZE[0], 3)
        assert 0.6 < sample.width < 1.2  # mouth width in inter-ocular units
        assert sample.sharpness > 0 and 60 < sample.brightness < 220
    assert closed.opening < CLOSED_GAP
    assert wide.opening > 0.3
    assert smile.opening > OPEN_GAP
    assert smile.teeth > 0.2  # his teeth show in the smile
    assert closed.teeth < 0.05
    # Landmark-aligned: the mouth centre sits at the same canonical place in every sample.
    centres = [s.uv[[48, 54]].mean(axis=0) for s in d12_samples.values()]
    assert np.abs(np.array(centres)).max() < 1e-6


@given(scale=st.floats(1.0, 1000.0))
def test_a_sample_is_taken_at_the_faces_own_resolution_within_bounds(scale):
    """Never under the base resolution, never over the cap, a multiple of 10 px per s, and
    at least the face's own inside the bounds: a face is never sampled coarser than it is."""
    px = sample_resolution(scale)
    assert PX_PER_S <= px <= MAX_PX_PER_S and px % 10 == 0
    assert px >= min(scale, MAX_PX_PER_S)
    assert sample_resolution(scale + 10) >= px


def test_a_close_up_keeps_its_mouths_detail(data_dir, backend, monkeypatch):
    """d12's smile at twice its size, with pixel-sharp detail (each pixel a 2x2 block, as a
    1080p close-up has: s ~ 180 px), sampled and painted back on its own lips: the sample
    is taken at the face's resolution, and the painted lips keep at least twice the fine
    detail (the Laplacian's variance) that a sample at the base 100 px per s keeps."""
    image = cv2.resize(frame_at(data_dir / "video" / "d12.mp4", 1000), None, fx=2, fy=2,
                       interpolation=cv2.INTER_NEAREST)
    face = backend.detect(image, with_embedding=False)[0]
    axes = FaceAxes.from_landmarks(refine_outer_lips(image, face.landmarks))
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)

    def detail_kept() -> tuple[float, int]:
        sample = sample_mouth(image, face.landmarks, face.pose, 1000)
        painted = image.copy()
        assert paint_bank_mouth(painted, axes, sample.uv.astype(np.float64), np.zeros(2), [WeightedSample(sample, 1.0)])
        mouth = np.zeros(grey.shape, np.uint8)
        cv2.fillPoly(mouth, [np.round(axes.to_image(sample.uv[48:60])).astype(np.int32)], 1)
        lap = [cv2.Laplacian(g.astype(np.float32), cv2.CV_32F)[mouth > 0].var()
               for g in (grey, cv2.cvtColor(painted, cv2.COLOR_RGB2GRAY))]
        assert sample.patch.shape == (*canonical_size(sample.px_per_s)[::-1], 3)
        return float(lap[1] / lap[0]), sample.px_per_s

    own, own_px = detail_kept()
    monkeypatch.setattr(mouth_bank, "sample_resolution", lambda scale: PX_PER_S)
    base, base_px = detail_kept()
    assert own_px == sample_resolution(axes.scale) > 170 and base_px == PX_PER_S
    assert own > 2 * base and own > 0.15, (own, base)


def test_sharpness_reads_focus_not_contrast(data_dir, backend):
    """A motion-blurred mouth scores well under the same mouth in focus, while the same
    mouth at half its contrast (dimmer light, a paler mouth) scores about the same: a
    toothy mouth's bright edges must not read as sharper than closed lips in the same focus."""
    import cv2

    image = frame_at(data_dir / "video" / "d12.mp4", 5000)
    face = backend.detect(image, with_embedding=False)[0]
    sharp = sample_mouth(image, face.landmarks, face.pose, 5000)
    kernel = np.zeros((9, 9), np.float32)
    kernel[4, :] = 1 / 9  # a 9-pixel horizontal motion blur
    blurred = sample_mouth(cv2.filter2D(image, -1, kernel), face.landmarks, face.pose, 5000)
    mean = image.reshape(-1, 3).mean(axis=0)
    dim = np.clip(mean + 0.5 * (image.astype(np.float32) - mean), 0, 255).astype(np.uint8)
    faded = sample_mouth(dim, face.landmarks, face.pose, 5000)
    assert blurred.sharpness < 0.6 * sharp.sharpness
    assert faded.sharpness == pytest.approx(sharp.sharpness, rel=0.2)


def test_a_blurred_sample_costs_more_than_a_sharp_one_of_the_same_shape(d12_samples):
    """Between two samples of one shape, the plan takes the one in focus."""
    base = d12_samples[1000]
    bank = MouthBank(capacity=8)
    for sharpness in (4.0, 4.0, 4.0, 1.0):
        bank.add(replace(base, sharpness=sharpness))
    cost = bank.costs(base.opening, base.width, base.pose)
    assert cost[3] - cost[0] > 0.5  # two halvings under the bank's sharp end


def test_full_bank_keeps_the_range_of_shapes_not_the_first_n(d12_samples):
    base = d12_samples[1000]
    bank = MouthBank(capacity=8)
    openings = [0.01, 0.02, 0.02, 0.03] * 6 + [0.45]  # 24 nearly-closed mouths, then one wide
    for k, opening in enumerate(openings):
        bank.add(replace(base, opening=opening, sharpness=10.0 + k))
    assert len(bank.samples) == 8
    assert bank.seen == len(openings)
    kept = sorted(s.opening for s in bank.samples)
    assert kept[0] <= 0.01 and kept[-1] == pytest.approx(0.45)


def test_costs_prefer_the_matching_shape_and_pose(d12_samples):
    bank = MouthBank()
    for sample in d12_samples.values():
        bank.add(sample)
    wide = int(np.argmin(bank.costs(0.4, 0.75, (0.0, 0.0, 0.0))))
    closed = int(np.argmin(bank.costs(0.0, 0.8, (0.0, 0.0, 0.0))))
    assert bank.samples[wide].time_ms == 5000
    assert bank.samples[closed].time_ms == 0
    coverage = bank.coverage()
    assert coverage.has_open and coverage.has_closed and coverage.samples == 3


def test_samples_alone_in_their_frame_carry_their_own_phones_shape(d12_samples):
    """Video Rewrite: a sample whose face was the only one in its frame is labelled with
    the mouth shape of the phone the video's audio sounds then; others stay unlabelled."""
    bank = MouthBank()
    for t, alone in ((0, True), (1000, False), (5000, True)):
        bank.add(replace(d12_samples[t], alone=alone))
    said = {0: "A", 1000: "C", 5000: "D"}
    assert bank.label_visemes(lambda t: said[int(t)]) == 2
    assert [s.viseme for s in bank.samples] == ["A", None, "D"]


def test_a_sample_whose_own_phone_matches_the_target_shape_costs_less(d12_samples):
    """Two samples alike in every descriptor: the one labelled with the target's shape is
    chosen; labelled with another shape it loses to the unlabelled one."""
    bank = MouthBank()
    bank.add(replace(d12_samples[5000], alone=True))
    bank.add(replace(d12_samples[5000], alone=False))
    bank.label_visemes(lambda t: "D")
    wide = np.array([0.4])
    cost = bank.cost_matrix(wide, np.array([0.75]), None, visemes=np.array(["D"]))[0]
    assert cost[0] < cost[1]
    cost = bank.cost_matrix(wide, np.array([0.75]), None, visemes=np.array(["F"]))[0]
    assert cost[0] > cost[1]
    unlabelled = bank.cost_matrix(wide, np.array([0.75]), None)[0]
    assert unlabelled[0] == pytest.approx(unlabelled[1])


def test_lip_thickness_matches_rounded_lips_to_rounded_targets(d12_samples):
    """The chosen sample's lips are shown whole, so a pouted sample on a spread target reads
    as another sound: with the target's lip thickness known, the sample whose lips match it
    wins; without it, the two cost the same. A rounded target is thicker than a spread one."""
    plain = d12_samples[5000]
    uv = plain.uv.copy()
    uv[[49, 50, 51, 52, 53], 1] -= 0.05  # the outer lips pushed out: a pout
    uv[[55, 56, 57, 58, 59], 1] += 0.05
    pouted = replace(plain, uv=uv)
    assert lip_thickness(uv) - lip_thickness(plain.uv) == pytest.approx(0.1 / plain.width, rel=0.05)
    bank = MouthBank()
    bank.add(plain)
    bank.add(pouted)
    opening, width = np.array([plain.opening]), np.array([plain.width])
    spread = bank.cost_matrix(opening, width, None, thicknesses=np.array([lip_thickness(plain.uv)]))[0]
    rounded = bank.cost_matrix(opening, width, None, thicknesses=np.array([lip_thickness(uv)]))[0]
    assert spread[0] + 0.5 < spread[1] and rounded[1] + 0.5 < rounded[0]
    unknown = bank.cost_matrix(opening, width, None)[0]
    assert unknown[0] == pytest.approx(unknown[1])
    neutral = d12_samples[0].uv.astype(np.float64)
    width_now = float(neutral[54, 0] - neutral[48, 0])
    targets = articulate_many(neutral, np.array([[0.6, 0.0, 0.0], [0.6, 0.0, 1.0]]), width_now, WarpConfig())
    assert lip_thickness(targets[1]) > lip_thickness(targets[0]) + 0.05


def test_a_toothy_sample_is_not_squeezed_into_a_slit(d12_samples):
    """Teeth are preferred only from a sample that needs little squeezing: a target much
    narrower than the toothy sample takes the toothless one of its own opening, even while
    the person grins; near the toothy sample's own opening, its teeth still win."""
    toothy, plain = replace(d12_samples[5000], teeth=0.6), replace(d12_samples[5000], teeth=0.0)
    bank = MouthBank()
    bank.add(replace(toothy, opening=0.24))
    bank.add(replace(plain, opening=0.14))
    narrow = bank.cost_matrix(np.array([0.13]), np.array([0.75]), None, show_teeth=1.0)[0]
    assert narrow[1] < narrow[0]
    near = bank.cost_matrix(np.array([0.2]), np.array([0.75]), None, show_teeth=1.0)[0]
    assert near[0] < near[1]


def test_teeth_beyond_the_cap_earn_no_more_preference(d12_samples):
    """A toothy target prefers teeth up to `teeth_cap` only: uncapped, the toothiest sample
    wins over a better-fitting clearly toothy one (one distinctive mouth on every toothy
    frame); capped at the person's own teeth, the better fit wins. A closed target still
    pays for every bit of a sample's teeth."""
    bank = MouthBank()
    bank.add(replace(d12_samples[5000], teeth=0.5, opening=0.2))
    bank.add(replace(d12_samples[5000], teeth=0.9, opening=0.23))
    target = np.array([0.2]), np.array([0.75])
    uncapped = bank.cost_matrix(*target, None, show_teeth=1.0)[0]
    assert uncapped[1] < uncapped[0]
    capped = bank.cost_matrix(*target, None, show_teeth=1.0, teeth_cap=0.5)[0]
    assert capped[0] < capped[1]
    assert np.isclose(capped[0], uncapped[0])  # under the cap nothing changes
    closed = np.array([0.0]), np.array([0.75])
    assert np.allclose(bank.cost_matrix(*closed, None, teeth_cap=0.5), bank.cost_matrix(*closed, None))


def test_open_shape_labels_do_not_cost_a_person_their_teeth(d12_samples):
    """Open shapes (B, C, D, H) differ mainly in how far the lips part, which the shape
    cost matches: for a "B" target, the person's toothy sample labelled "C" beats their
    toothless one labelled "B" at the same opening. A closed or rounded label still
    outweighs teeth."""
    toothy, plain = replace(d12_samples[5000], teeth=0.5), replace(d12_samples[5000], teeth=0.0)
    bank = MouthBank()
    bank.add(replace(toothy, opening=0.2, viseme="C"))
    bank.add(replace(plain, opening=0.2, viseme="B"))
    cost = bank.cost_matrix(np.array([0.2]), np.array([0.75]), None, visemes=np.array(["B"]))[0]
    assert cost[0] < cost[1]
    bank = MouthBank()
    bank.add(replace(toothy, opening=0.2, viseme="C"))
    bank.add(replace(plain, opening=0.2, viseme="F"))
    cost = bank.cost_matrix(np.array([0.2]), np.array([0.75]), None, visemes=np.array(["F"]))[0]
    assert cost[1] < cost[0]


def test_viseme_match_is_graded_by_shape_family():
    from models.mouth_bank import OPEN_SHAPE_MATCH, viseme_match

    term = viseme_match(np.array(["B", "F", "A"]), np.array(["B", "C", "F", "A", ""]))
    assert term.shape == (3, 5)
    assert term[0].tolist() == [-OPEN_SHAPE_MATCH, 0.0, 1.0, 1.0, 0.0]
    assert term[1].tolist() == [1.0, 1.0, -1.0, 1.0, 0.0]
    assert term[2].tolist() == [1.0, 1.0, 1.0, -1.0, 0.0]


def test_coverage_says_when_a_person_never_opens(d12_samples):
    bank = MouthBank()
    bank.add(d12_samples[0])
    coverage = bank.coverage()
    assert coverage.has_closed and not coverage.has_open
    assert bank.opening_scale() is None


def test_bank_pass_names_people_by_identity_not_position(data_dir, backend, tmp_path):
    """Two people side by side; the bank of one holds only that person's mouths."""
    from tests.media import read_frames, write_video

    a = read_frames(data_dir / "video" / "d12.mp4")[:50:5]
    b = read_frames(data_dir / "video" / "d20.mp4")[:50:5]
    b = [np.asarray(frame[:480, :480]) for frame in b]
    frames = [np.concatenate([fa[16:496, 16:496], fb], axis=1) for fa, fb in zip(a, b)]
    # Half-way through, the two swap sides (a cut): the banks must follow the people.
    frames = frames[:5] + [np.concatenate([f[:, 480:], f[:, :480]], axis=1) for f in frames[5:]]
    path = write_video(tmp_path / "two.mp4", frames, fps=5)
    ref_a = backend.detect(a[0])[0].embedding
    ref_b = backend.detect(b[0])[0].embedding
    stage = MouthBankStage(backend, {"a": ref_a, "b": ref_b})
    Pipeline(DecodeStage(path, sample_fps=5), [stage]).run()
    assert stage.banks["a"].seen == len(frames) and stage.banks["b"].seen == len(frames)
    for key in ("a", "b"):
        for sample in stage.banks[key].samples:
            # Each sample's mouth centre lies on the side where that person stood then.
            index = int(round(sample.time_ms / 200))
            left_person = "a" if index < 5 else "b"
            x_centre = sample.centre_xy[0]
            assert (x_centre < 480) == (key == left_person), (key, index, x_centre)


def dissolve_clip(data_dir, tmp_path):
    """A at the left for 2 s, a 1 s dissolve, then B where A stood for 2 s (5 fps)."""
    from tests.media import read_frames, write_video

    a = [f[16:496, 16:496] for f in read_frames(data_dir / "video" / "d12.mp4")[:125:5]]
    b = [np.asarray(f[:480, :480]) for f in read_frames(data_dir / "video" / "d20.mp4")[:125:5]]
    frames = a[:10]
    for k in range(1, 6):
        t = k / 6
        frames.append(np.clip((1 - t) * a[10 + k - 1] + t * b[k - 1] + 0.5, 0, 255).astype(np.uint8))
    frames += b[5:15]
    return write_video(tmp_path / "dissolve.mp4", frames, fps=5), a[0], b[0]


def test_a_dissolve_does_not_carry_another_persons_mouths_into_a_bank(data_dir, backend, tmp_path):
    """Issue 28: the track follows A through a dissolve onto B; every sample A's bank keeps
    must be A's own face, checked on that sample (B's mouths after the dissolve go)."""
    path, first_a, _ = dissolve_clip(data_dir, tmp_path)
    ref_a = backend.detect(first_a)[0].embedding
    stage = MouthBankStage(backend, {"a": ref_a})
    Pipeline(DecodeStage(path, sample_fps=5), [stage]).run()
    times = sorted(s.time_ms for s in stage.banks["a"].samples)
    assert times and times[0] < 2000  # A's own mouths are kept
    assert max(times) < 2600, times  # none from B (fully shown from 3000 ms on)
    assert stage.dropped_by_identity >= 1  # the track did carry A's name onto B


def test_carried_samples_are_checked_at_a_fraction_of_an_embedding_each(data_dir, backend):
    """d12 (one man, 7.3 s): most banked samples were carried along his track; the pass
    confirms them with about one embedding a second (`stages.run_checks`), not one each,
    and keeps them all (they are all his)."""
    video = data_dir / "video" / "d12.mp4"
    first = frame_at(video, 0)
    stage = MouthBankStage(backend, {"man": backend.detect(first)[0].embedding})
    Pipeline(DecodeStage(video, sample_fps=5), [stage]).run()
    assert stage.carried_judged >= 10
    assert stage.dropped_by_identity == 0
    assert 1 <= stage.identity_checks <= stage.carried_judged // 2


def test_bank_samples_are_frames_the_track_stage_detects_on():
    """About 5 fps (at most 200 frames), as every k-th frame with k a multiple of the track
    stage's detection interval, so the track stage can take the bank pass's detections."""
    from fractions import Fraction

    from jobs.mouth_banks import BANK_MAX_FRAMES, bank_sample_fps
    from stages.decode import VideoInfo

    def info(fps: float, seconds: float) -> VideoInfo:
        return VideoInfo("x.mp4", 1280, 720, fps, Fraction(1, 12800), int(fps * seconds), seconds * 1000, 0,
                         "h264", False, None, None)

    assert bank_sample_fps(info(25, 10), 5) == 5.0
    assert bank_sample_fps(info(30, 10), 5) == 6.0
    assert bank_sample_fps(info(60, 10), 5) == 6.0
    assert bank_sample_fps(info(25, 10), 1) == 5.0
    for fps, seconds, interval in ((25, 60, 5), (30, 300, 5), (24, 45, 4), (50, 3600, 5)):
        rate = bank_sample_fps(info(fps, seconds), interval)
        step = fps / rate
        assert abs(step - round(step)) < 1e-9 and round(step) % interval == 0
        assert rate * seconds <= BANK_MAX_FRAMES


def test_a_bank_pass_that_shares_detects_every_sample_and_keeps_each(data_dir, backend):
    """detect_every=1 with `shared`: each sampled frame's full detection is kept by its frame
    index (d12: one face, every 5th frame at 5 fps), with landmarks, for the track stage."""
    from stages.follow import SharedDetections

    video = data_dir / "video" / "d12.mp4"
    first = frame_at(video, 0)
    shared = SharedDetections()
    stage = MouthBankStage(backend, {"man": backend.detect(first)[0].embedding}, detect_every=1, shared=shared)
    Pipeline(DecodeStage(video, sample_fps=5), [stage]).run()
    assert stage.detections == stage.banks["man"].seen == len(shared.faces) >= 30
    assert sorted(shared.faces)[:4] == [0, 5, 10, 15]
    assert all(len(faces) == 1 and faces[0].landmarks is not None for faces in shared.faces.values())
    assert shared.faces[0][0].embedding is not None  # named there: its embedding goes along


def test_the_videos_own_phones_label_the_bank_or_say_why_not(tmp_path):
    """The video's phones are recognised beside the bank pass (`original_phones`) and label
    the banks after it (`label_with_original_phones`); each reason it cannot is said."""
    from dataclasses import replace
    from fractions import Fraction

    from jobs.mouth_banks import label_with_original_phones, original_phones
    from stages.decode import VideoInfo

    silent = VideoInfo(str(tmp_path / "none.mp4"), 64, 48, 25.0, Fraction(1, 25), 25, 1000.0, 0, "h264", False, None, None)
    assert original_phones(silent.path, silent) == (None, "the video has no audio")
    missing = original_phones(silent.path, replace(silent, has_audio=True))
    assert missing[0] is None and missing[1].startswith("the video's audio could not be read")

    class Bank:
        def __init__(self) -> None:
            self.asked: list[float] = []

        def label_visemes(self, shape_of) -> int:
            self.asked.append(shape_of(100.0))
            return 3

    bank = Bank()
    assert label_with_original_phones({}, ([], "speech")) == "no mouth bank"
    assert label_with_original_phones({"a": bank}, (None, "the video has no audio")) == "the video has no audio"
    assert bank.asked == []
    from models.phones import Phone

    said = label_with_original_phones({"a": bank, "b": bank}, ([Phone("AA", 0.0, 500.0)], "speech fits"))
    assert said == "3 samples labelled with the video's own phones (speech fits)" and len(bank.asked) == 1


def _line_mouth(top: float, bottom: float, gap_px: int = 60, bright: int = 200, dark: int = 40) -> tuple[np.ndarray, np.ndarray]:
    """A canonical grey patch whose three central inner-lip lines (vertical, `gap_px` long)
    read `bright` over the top share, `dark` between and `bright` over the bottom share."""
    grey = np.full((100, 120), 120, np.uint8)
    uv_px = np.zeros((68, 2))
    y0 = 30
    for x, (a, b) in zip((50, 60, 70), INNER_PAIRS):
        uv_px[a], uv_px[b] = (x, y0), (x, y0 + gap_px)
    grey[y0:y0 + gap_px + 1, 40:81] = dark
    grey[y0:y0 + int(round(top * gap_px)) + 1, 40:81] = bright
    if bottom > 0:
        grey[y0 + gap_px - int(round(bottom * gap_px)):y0 + gap_px + 1, 40:81] = bright
    return grey, uv_px


@settings(max_examples=300, deadline=None)
@given(top=st.floats(0.1, 0.6), bottom=st.one_of(st.just(0.0), st.floats(0.1, 0.3)))
def test_inner_bands_find_the_teeth_next_to_each_lip(top, bottom):
    """Invariant: the upper and lower bright bands of each line are found to within one of
    its BAND_SAMPLES steps, the dark between them is left out."""
    grey, uv_px = _line_mouth(top, bottom)
    bands = inner_bands(grey, uv_px, opening=0.3)
    step = 1.0 / (BAND_SAMPLES - 1)
    assert bands.shape == (3, 2)
    assert np.all(np.abs(bands[:, 0] - top) <= 0.75 * step), bands
    assert np.all(np.abs(bands[:, 1] - bottom) <= 0.75 * step), bands
    assert np.all(bands.sum(axis=1) <= 1.0 + 1e-6)


def test_a_closed_or_featureless_mouth_is_one_band():
    """Nothing to tell apart: the whole gap is one band, (1, 0), as before bands existed."""
    grey, uv_px = _line_mouth(0.4, 0.2)
    assert np.array_equal(inner_bands(grey, uv_px, opening=0.02), np.tile([1.0, 0.0], (3, 1)))
    flat, _ = _line_mouth(0.4, 0.2, bright=130, dark=120)
    assert np.array_equal(inner_bands(flat, uv_px, opening=0.3), np.tile([1.0, 0.0], (3, 1)))
