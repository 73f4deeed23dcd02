"""The mouth-bank pass's detections: landmarks only where a requested person may be, and the
same bank as when every face is fitted (`stages.mouth_bank.MouthBankStage._detected`)."""
from __future__ import annotations

import numpy as np
import pytest

from models.faces.default import DefaultFaceBackend
from models.faces.face import Face
from stages.decode import DecodeStage
from stages.follow import SharedDetections
from stages.mouth_bank import MouthBankStage
from stream.pipeline import Pipeline
from tests.media import read_frames, write_video


@pytest.fixture(scope="module")
def backend() -> DefaultFaceBackend:
    return DefaultFaceBackend()


class EveryFaceFitted:
    """The default backend without `fit_near`: its detection fits every face (the bank pass
    as it was before it asked for landmarks only near requested people)."""

    def __init__(self, backend: DefaultFaceBackend) -> None:
        self.backend = backend
        self.landmarks = backend.landmarks
        self.embed = backend.embed
        self.similarity = backend.similarity

    def detect(self, image: np.ndarray, with_embedding: bool = True, known_boxes=()) -> list[Face]:
        return self.backend.detect(image, with_embedding=with_embedding, known_boxes=known_boxes)


@pytest.fixture(scope="module")
def two_people(data_dir, tmp_path_factory):
    """d12's man (A) left and d20's young man (B) right at 5 fps for 2 s, then a cut where
    they swap sides for 2 s more; and A's and B's first frames."""
    a = read_frames(data_dir / "video" / "d12.mp4")[:100:5]
    b = [np.asarray(frame[:480, :480]) for frame in read_frames(data_dir / "video" / "d20.mp4")[:100:5]]
    frames = [np.concatenate([fa[16:496, 16:496], fb], axis=1) for fa, fb in zip(a, b)]
    frames = frames[:10] + [np.concatenate([f[:, 480:], f[:, :480]], axis=1) for f in frames[10:]]
    return write_video(tmp_path_factory.mktemp("bank") / "two.mp4", frames, fps=5), a[0], b[0]


def bank_pass(backend, video, people: dict[str, np.ndarray]) -> tuple[MouthBankStage, SharedDetections]:
    """The lipsync job's bank pass: every sample detected, its faces shared."""
    shared = SharedDetections()
    stage = MouthBankStage(backend, people, detect_every=1, shared=shared)
    Pipeline(DecodeStage(video, sample_fps=5), [stage]).run()
    return stage, shared


def assert_same_samples(one: MouthBankStage, other: MouthBankStage) -> None:
    assert one.banks.keys() == other.banks.keys()
    for key in one.banks:
        mine, theirs = one.banks[key].samples, other.banks[key].samples
        assert len(mine) == len(theirs) > 0
        for s, t in zip(sorted(mine, key=lambda s: s.time_ms), sorted(theirs, key=lambda s: s.time_ms)):
            assert s.time_ms == t.time_ms and s.alone == t.alone and s.pose == t.pose
            assert np.array_equal(s.patch, t.patch) and np.array_equal(s.uv, t.uv)


def test_only_a_requested_persons_face_is_fitted_and_the_bank_is_the_same(backend, two_people):
    """One of two people requested: the other's face keeps the detector's box (no landmarks,
    no pose) on every sample but the one where it was named, the requested face is fitted
    exactly as before, and the bank holds the same samples, bit for bit, across the cut where
    the requested person moves to where the other stood."""
    video, first_a, _ = two_people
    people = {"a": backend.detect(first_a)[0].embedding}
    stage, shared = bank_pass(backend, video, people)
    before, before_shared = bank_pass(EveryFaceFitted(backend), video, people)
    assert_same_samples(stage, before)
    assert sorted(shared.faces) == sorted(before_shared.faces) and len(shared.faces) == 20
    unfitted = 0
    for index, faces in shared.faces.items():
        assert len(faces) == 2 and all(f.landmarks is not None and f.pose is not None for f in before_shared.faces[index])
        a_side = 0 if index < 10 else 1  # A is left, then right after the cut
        for face in faces:
            side = int((face.bbox[0] + face.bbox[2]) / 2 >= 480)
            if side == a_side:  # A: the same fit as when every face was fitted
                same = next(f for f in before_shared.faces[index] if int((f.bbox[0] + f.bbox[2]) / 2 >= 480) == side)
                assert face.pose == same.pose and np.array_equal(face.landmarks, same.landmarks)
                assert np.array_equal(face.bbox, same.bbox)
            else:
                unfitted += face.pose is None
    assert unfitted == 19  # B: fitted on one sample of 20, at the cut, where it stood in A's place
    late = [s for s in stage.banks["a"].samples if s.time_ms >= 2000]
    assert late and all(s.centre_xy[0] >= 480 for s in late)  # A's mouths after the cut, on the right


def test_every_requested_person_is_fitted_as_before(backend, two_people):
    """Both people requested: every face is a requested person's, fitted as before, and the
    banks are the same bit for bit."""
    video, first_a, first_b = two_people
    people = {"a": backend.detect(first_a)[0].embedding, "b": backend.detect(first_b)[0].embedding}
    stage, shared = bank_pass(backend, video, people)
    before, before_shared = bank_pass(EveryFaceFitted(backend), video, people)
    assert_same_samples(stage, before)
    for index, faces in shared.faces.items():
        assert all(f.pose is not None for f in faces)
        key = lambda f: float(f.bbox[0])  # noqa: E731 (the same faces, maybe in another order)
        for face, same in zip(sorted(faces, key=key), sorted(before_shared.faces[index], key=key)):
            assert np.array_equal(face.landmarks, same.landmarks) and np.array_equal(face.bbox, same.bbox)


def test_a_carried_samples_crop_is_scaled_only_when_checked_to_the_same_pixels(data_dir, backend, monkeypatch):
    """A face under ~230 px keeps its crop at its own resolution (at most ~2x the pixels)
    and is scaled to CHECK_FACE_PX only for a check of its own: the same crop and face,
    bit for bit, as scaling it when it is cut; a larger face is scaled when it is cut."""
    import cv2

    import stages.mouth_bank as bank

    image = read_frames(data_dir / "video" / "d12.mp4")[0]
    face = backend.detect(image, with_embedding=False)[0]
    for size in (512, 880):  # d12's face ~215 px wide (k ~ 0.74), then twice as large (k ~ 0.37)
        frame = image if size == 512 else cv2.resize(image, (size, size), interpolation=cv2.INTER_LINEAR)
        seen = face if size == 512 else backend.detect(frame, with_embedding=False)[0]
        late = bank._face_crop(frame, seen)
        monkeypatch.setattr(bank, "LATE_SCALE", 1.01)  # every crop scaled when cut
        at_once = bank._face_crop(frame, seen)
        monkeypatch.undo()
        k = bank.CHECK_FACE_PX / float(seen.bbox[2] - seen.bbox[0])
        assert at_once.scale == 1.0
        if k >= bank.LATE_SCALE:
            assert late.scale == pytest.approx(k) and late.crop.size <= at_once.crop.size / bank.LATE_SCALE ** 2 * 1.05
        else:
            assert late.scale == 1.0 and late.crop.shape == at_once.crop.shape
        (crop, moved), (crop_now, moved_now) = late.scaled(), at_once.scaled()
        assert np.array_equal(crop, crop_now)
        for a, b in ((moved.bbox, moved_now.bbox), (moved.kps, moved_now.kps), (moved.landmarks, moved_now.landmarks)):
            assert a.dtype == b.dtype and np.array_equal(a, b)
        assert float(moved.bbox[2] - moved.bbox[0]) == pytest.approx(bank.CHECK_FACE_PX, abs=1)
    assert face.bbox[2] - face.bbox[0] < bank.CHECK_FACE_PX / bank.LATE_SCALE  # d12 itself took the late path
