"""resolve_targets: which detected face each requested bbox means, and per-job track keys."""
from __future__ import annotations

import numpy as np
import pytest

from jobs.schema import FaceSpec
from jobs.targets import resolve_targets
from models.faces.face import Face
from stream.errors import InputError


class TwoFaces:
    """A backend that sees the same two faces on every frame."""

    def detect(self, image, with_embedding=True):
        return [Face(bbox=[x, 100, x + 120, 240], score=0.9, kps=np.zeros((5, 2))) for x in (50, 400)]


def test_each_bbox_takes_its_face_and_keys_are_unique_per_call(data_dir):
    video = str(data_dir / "video" / "d20.mp4")
    specs = [FaceSpec("alice", [390, 95, 130, 150], 0, 1000), FaceSpec("bob", [45, 100, 120, 140], 0, 1000)]
    first = resolve_targets(video, specs, TwoFaces(), 5000)
    again = resolve_targets(video, specs, TwoFaces(), 5000)
    assert [t.anchor.bbox[0] for t in first] == [400, 50]
    assert len({t.job for t in first}) == 1
    assert not {t.key for t in first} & {t.key for t in again}  # two jobs never share engine state


def test_a_bbox_over_no_face_names_the_faces_found(data_dir):
    video = str(data_dir / "video" / "d20.mp4")
    with pytest.raises(InputError, match=r"faces\[0\] \(carol\).*faces found there: \[50, 100, 120, 140\]"):
        resolve_targets(video, [FaceSpec("carol", [900, 600, 50, 50], 0, 1000)], TwoFaces(), 5000)


def test_a_bbox_over_no_face_in_a_one_person_clip_lists_that_one_face(data_dir):
    """Issue 22 item 17. Before: 5 "faces found there", 3 of them the same box (probes clamped to
    0 ms decoded the first frame three times), for a one-person clip."""
    from models.faces.default import DefaultFaceBackend

    video = str(data_dir / "video" / "d20.mp4")
    with pytest.raises(InputError) as refused:
        resolve_targets(video, [FaceSpec("carol", [0, 0, 40, 40], 0, 1000)], DefaultFaceBackend(), 7000)
    listed = str(refused.value).split("faces found there: ")[1].split(");")[0]
    print("listed:", listed)
    assert listed.count("[") == 1  # the one person, once
