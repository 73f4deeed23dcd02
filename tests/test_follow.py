"""TrackStage's speed paths: no identity embeddings when anchors decide, known boxes passed on."""
from __future__ import annotations

from fractions import Fraction

import numpy as np

from models.faces.face import Face
from stages.follow import NOT_VISIBLE, SYNCED, Target, TrackStage
from stream.frame import Frame


def _face(x: float, y: float, size: float = 200.0, embedding: np.ndarray | None = None) -> Face:
    box = np.array([x, y, x + size, y + size], np.float32)
    kps = np.array([[x + 60, y + 80], [x + 140, y + 80], [x + 100, y + 120], [x + 70, y + 160], [x + 130, y + 160]])
    return Face(bbox=box, score=0.9, kps=kps, pose=(0.0, 0.0, 0.0), embedding=embedding)


class ScriptedBackend:
    """Returns fixed faces; records what the track stage asks of it."""

    def __init__(self, faces: list[Face], with_known_boxes: bool = True) -> None:
        self.faces = faces
        self.embedded: list[int] = []
        self.known: list[list[np.ndarray]] = []
        if not with_known_boxes:
            self.detect = self._detect_plain

    def detect(self, image, with_embedding=True, known_boxes=()):
        self.known.append([np.asarray(b) for b in known_boxes])
        return self._detect_plain(image, with_embedding)

    def _detect_plain(self, image, with_embedding=True):
        return [_face(*f.bbox[:2], size=f.width) for f in self.faces]

    def landmarks(self, image, boxes, scores=None):
        return [_face(*np.asarray(b)[:2], size=float(b[2] - b[0])) for b in boxes]

    def embed(self, image, faces):
        if faces:  # an empty call costs nothing, as in the real backends
            self.embedded.append(len(faces))
        for face in faces:
            face.embedding = np.array([1.0, 0.0], np.float32) if face.bbox[0] < 500 else np.array([0.0, 1.0], np.float32)

    def similarity(self, a, b):
        return float(np.dot(a, b))


def _targets(*anchors: Face) -> list[Target]:
    return [Target(i, f"p{i}", 0, 10_000, a)
            for i, a in enumerate(anchors)]


def _frames(count: int):
    image = np.zeros((720, 1280, 3), np.uint8)
    return [Frame(i, i * 40, Fraction(1, 1000), image) for i in range(count)]


def test_anchors_match_without_embeddings_and_known_boxes_skip_reverification():
    people = [_face(100, 200), _face(800, 200)]
    backend = ScriptedBackend(people)
    anchors = [_face(105, 205, embedding=np.array([1.0, 0.0])), _face(795, 195, embedding=np.array([0.0, 1.0]))]
    stage = TrackStage(backend, _targets(*anchors), detect_interval=5)
    for frame in _frames(6):
        (out,) = stage.process(frame)
        states = {i: o.state for i, o in out.notes["targets"].items()}
        assert states == {0: SYNCED, 1: SYNCED}
    assert backend.embedded == []  # each anchor overlapped exactly one detection
    assert len(backend.known) == 2  # frames 0 and 5
    assert backend.known[0] == []
    followed = sorted(float(b[0]) for b in backend.known[1])
    assert followed == [100.0, 800.0]  # the followed faces' boxes of frame 4


def test_ambiguous_anchor_needs_identity():
    people = [_face(100, 200), _face(150, 220)]  # both overlap the anchor at IoU >= 0.5
    backend = ScriptedBackend(people)
    anchor = _face(120, 210, embedding=np.array([1.0, 0.0]))
    stage = TrackStage(backend, _targets(anchor), detect_interval=5)
    (out,) = stage.process(_frames(1)[0])
    assert backend.embedded and backend.embedded[0] == 2
    assert out.notes["targets"][0].face is not None


def test_backend_without_known_boxes_still_works():
    backend = ScriptedBackend([_face(100, 200)], with_known_boxes=False)
    stage = TrackStage(backend, _targets(_face(100, 200, embedding=np.array([1.0, 0.0]))), detect_interval=2)
    for frame in _frames(3):
        (out,) = stage.process(frame)
        assert out.notes["targets"][0].state == SYNCED
    assert backend.known == []


def _shot_frames(count: int, cut: int):
    """Frames 0..count-1; the shot changes at frame `cut`."""
    image = np.zeros((720, 1280, 3), np.uint8)
    return [Frame(i, i * 40, Fraction(1, 1000), image, notes={"shot": int(i >= cut)}) for i in range(count)]


class SwappingBackend(ScriptedBackend):
    """Person A (embedding [1, 0]) and B ([0, 1]); before frame `cut` A is on the left,
    from it on B is on the left and A on the right (or gone, with `a_leaves`)."""

    def __init__(self, cut: int, a_leaves: bool = False) -> None:
        super().__init__([])
        self.cut, self.a_leaves, self.frame = cut, a_leaves, 0

    def _people(self):
        if self.frame < self.cut:
            return [(100, np.array([1.0, 0.0]))]
        people = [(100, np.array([0.0, 1.0]))]
        return people if self.a_leaves else people + [(800, np.array([1.0, 0.0]))]

    def _detect_plain(self, image, with_embedding=True):
        return [_face(x, 200) for x, _ in self._people()]

    def embed(self, image, faces):
        if faces:
            self.embedded.append(len(faces))
        for face in faces:
            face.embedding = next(e for x, e in self._people() if abs(face.bbox[0] - x) < 50)


def _run(stage: TrackStage, backend: SwappingBackend, frames):
    observed = []
    for frame in frames:
        backend.frame = frame.index
        (out,) = stage.process(frame)
        observed.append(out.notes["targets"][0])
    return observed


def test_a_cut_reacquires_the_requested_person_by_identity_not_position():
    backend = SwappingBackend(cut=7)
    stage = TrackStage(backend, _targets(_face(100, 200, embedding=np.array([1.0, 0.0]))), detect_interval=5)
    observed = _run(stage, backend, _shot_frames(12, 7))
    assert all(o.state == SYNCED for o in observed)
    assert [float(o.face.bbox[0]) for o in observed] == [100.0] * 7 + [800.0] * 5  # A moved right
    assert stage.people_seen == {"p0", "face_1"}
    assert [s.character_id for s in stage.unknown_sightings] == ["face_1", "face_1"]  # frames 7 and 10
    (warning,) = stage.place_warnings()
    assert "0.28 s (face_1)" in warning and "p0" in warning


def test_after_a_cut_an_absent_person_is_not_visible_even_with_someone_in_their_place():
    backend = SwappingBackend(cut=7, a_leaves=True)
    stage = TrackStage(backend, _targets(_face(100, 200, embedding=np.array([1.0, 0.0]))), detect_interval=5)
    observed = _run(stage, backend, _shot_frames(12, 7))
    assert [o.state for o in observed] == [SYNCED] * 7 + [NOT_VISIBLE] * 5
    assert all(o.face is None for o in observed[7:])


def test_references_name_people_who_are_not_requested():
    backend = SwappingBackend(cut=7)
    stage = TrackStage(backend, _targets(_face(100, 200, embedding=np.array([1.0, 0.0]))), detect_interval=5)
    stage.add_references([("bob", np.array([0.0, 1.0])), ("p0", np.array([0.5, 0.5]))])
    _run(stage, backend, _shot_frames(12, 7))
    assert stage.people_seen == {"p0", "bob"}
    assert {s.character_id for s in stage.unknown_sightings} == {"bob"}


def test_a_due_identity_check_needs_no_detection():
    """A steady face is re-identified every REID_MS on the face the landmark path followed:
    an embedding, no full detection (each costs ~30 ms at 720p)."""
    backend = ScriptedBackend([_face(100, 200)])
    stage = TrackStage(backend, _targets(_face(100, 200, embedding=np.array([1.0, 0.0]))), detect_interval=1000)
    for frame in _frames(60):  # 2.4 s: checks due 1 s and 2 s after the first (frame 1)
        (out,) = stage.process(frame)
        assert out.notes["targets"][0].state == SYNCED
    assert stage.identity_checks == 2
    assert len(backend.known) == 1  # frame 0's detection only


def test_a_due_check_that_finds_someone_else_drops_the_face():
    """B takes A's place with no cut and no jump in the picture (a slow dissolve, say): the
    check due 1 s after the first (frame 1) finds B on the followed face; that frame gets a
    detection, the face is dropped and A, gone, is not visible from then on."""
    backend = SwappingBackend(cut=20, a_leaves=True)
    stage = TrackStage(backend, _targets(_face(100, 200, embedding=np.array([1.0, 0.0]))), detect_interval=1000)
    states = [o.state for o in _run(stage, backend, _frames(40))]
    assert states[:26] == [SYNCED] * 26  # frames 20-25: B, unchecked until the check falls due
    assert states[26:] == [NOT_VISIBLE] * 14
    assert stage.identity_drops == 1
    assert len(backend.known) == 2  # frame 0, and frame 26 where the check failed


def test_detections_shared_by_the_bank_pass_replace_the_stages_own():
    """Frames the mouth-bank pass detected on (0 and 5 of a 5-frame interval) take its faces:
    no detection of the track stage's own there, the same faces followed; an entry for a
    frame that needs no detection is let go unused, and an embedding the first pass
    computed on a face serves the match."""
    from stages.follow import SharedDetections

    people = [_face(100, 200), _face(800, 200)]
    anchors = [_face(105, 205, embedding=np.array([1.0, 0.0])), _face(795, 195, embedding=np.array([0.0, 1.0]))]
    plain = ScriptedBackend(people)
    expected = [stage_out.notes["targets"] for stage_out in
                (TrackStage(plain, _targets(*anchors), detect_interval=5).process(f)[0] for f in _frames(8))]
    shared = SharedDetections()
    for index in (0, 3, 5):
        shared.put(index, [_face(100, 200, embedding=np.array([1.0, 0.0])), _face(800, 200)])
    backend = ScriptedBackend(people)
    stage = TrackStage(backend, _targets(*anchors), detect_interval=5, shared=shared)
    observed = [stage.process(frame)[0].notes["targets"] for frame in _frames(8)]
    assert backend.known == []  # frames 0 and 5 came from the shared detections
    assert shared.taken == 2 and shared.faces == {}  # frame 3's entry went unused
    for mine, theirs in zip(observed, expected):
        assert {i: o.state for i, o in mine.items()} == {i: o.state for i, o in theirs.items()}
        assert [float(o.face.bbox[0]) for o in mine.values()] == [float(o.face.bbox[0]) for o in theirs.values()]
    assert backend.embedded == []


def test_shared_detections_are_copies():
    from stages.follow import SharedDetections

    face = _face(100, 200)
    face.landmarks = np.zeros((68, 2), np.float32)
    shared = SharedDetections()
    shared.put(7, [face])
    face.bbox[0] = 999.0
    face.landmarks[0, 0] = 5.0
    (kept,) = shared.take(7)
    assert float(kept.bbox[0]) == 100.0 and float(kept.landmarks[0, 0]) == 0.0
    assert shared.take(7) is None


class TexturedBackend(ScriptedBackend):
    """ScriptedBackend whose faces carry 68 landmarks spread over their box, fixed in place."""

    def _detect_plain(self, image, with_embedding=True):
        return [self._with_landmarks(_face(*f.bbox[:2], size=f.width)) for f in self.faces]

    def landmarks(self, image, boxes, scores=None):
        return [self._with_landmarks(face) for face in super().landmarks(image, boxes, scores)]

    @staticmethod
    def _with_landmarks(face: Face) -> Face:
        rng = np.random.default_rng(3)
        face.landmarks = (rng.uniform(0.1, 0.9, size=(68, 2)) * face.width + face.bbox[:2]).astype(np.float32)
        return face


def _textured_frames(count: int, texture: bool):
    import cv2

    rng = np.random.default_rng(7)
    grey = cv2.resize(rng.normal(size=(90, 160)).astype(np.float32), (1280, 720), interpolation=cv2.INTER_CUBIC)
    image = np.repeat(np.clip(128 + 60 * grey, 0, 255).astype(np.uint8)[:, :, None], 3, axis=2)
    if not texture:
        image = np.full_like(image, 90)
    return [Frame(i, i * 40, Fraction(1, 1000), image) for i in range(count)]


def test_a_face_the_optical_flow_follows_is_reidentified_every_3_s():
    """A steady face on a textured picture: the flow confirms every fit, so after the check
    that starts its run (frame 1) the next falls due 3 s later (frame 76), not each second.
    On a flat picture the flow cannot judge: a check every second (frames 26, 51, 76)."""
    for texture, checks in ((True, 1), (False, 3)):
        backend = TexturedBackend([_face(100, 200)])
        stage = TrackStage(backend, _targets(_face(100, 200, embedding=np.array([1.0, 0.0]))), detect_interval=1000)
        for frame in _textured_frames(100, texture):
            (out,) = stage.process(frame)
            assert out.notes["targets"][0].state == SYNCED
        assert stage.identity_checks == checks, texture
        assert len(backend.known) == 1


def test_a_shaken_face_is_followed_where_the_flow_went_without_a_detection():
    """The picture jumps by (6, -3) px between frames 2 and 3 (a hand-held shake: its
    thumbnail changes by ~31 grey levels, above JUMP_GREY_LEVELS and under SWAP_GREY_LEVELS).
    The fit starts from the box moved by the optical flow, so it lands on the face: no
    detection beyond the first, and the box follows the picture."""
    import cv2

    rng = np.random.default_rng(7)
    grey = cv2.resize(rng.normal(size=(90, 160)).astype(np.float32), (1280, 720), interpolation=cv2.INTER_CUBIC)

    def picture(dx: float, dy: float) -> np.ndarray:
        moved = cv2.warpAffine(grey, np.array([[1, 0, dx], [0, 1, dy]], np.float32), (1280, 720),
                               borderMode=cv2.BORDER_REFLECT)
        return np.repeat(np.clip(128 + 60 * moved, 0, 255).astype(np.uint8)[:, :, None], 3, axis=2)

    backend = TexturedBackend([_face(100, 200)])
    stage = TrackStage(backend, _targets(_face(100, 200, embedding=np.array([1.0, 0.0]))), detect_interval=1000)
    still, shaken = picture(0, 0), picture(6, -3)
    for i in range(6):
        (out,) = stage.process(Frame(i, i * 40, Fraction(1, 1000), still if i < 3 else shaken))
        assert out.notes["targets"][0].state == SYNCED
        if i == 3:
            follow = stage._follows[0]
            assert follow.jumped and not follow.verify
    assert len(backend.known) == 1
    np.testing.assert_allclose(out.notes["targets"][0].face.bbox[:2], [106, 197], atol=1.0)


def test_a_calm_face_is_flow_checked_every_fifth_frame_a_moving_one_every_frame(monkeypatch):
    """A still picture: the fit starts from the last box on the same pixels, so the optical
    flow checks one fit in CALM_UNCHECKED + 1 (frames 5, 10, 15 of 1-19); a picture that moves
    by 4 px a frame changes its thumbnail by more than CALM_GREY_LEVELS: every fit is checked."""
    import cv2

    import stages.follow as follow
    from stages.follow import CALM_UNCHECKED

    rng = np.random.default_rng(7)
    grey = cv2.resize(rng.normal(size=(90, 160)).astype(np.float32), (1280, 720), interpolation=cv2.INTER_CUBIC)

    def picture(dx: float) -> np.ndarray:
        moved = cv2.warpAffine(grey, np.array([[1, 0, dx], [0, 1, 0]], np.float32), (1280, 720),
                               borderMode=cv2.BORDER_REFLECT)
        return np.repeat(np.clip(128 + 60 * moved, 0, 255).astype(np.uint8)[:, :, None], 3, axis=2)

    checked: list[int] = []
    flow_points = follow.flow_points
    every = CALM_UNCHECKED + 1
    for step, expected in ((0.0, list(range(every, 20, every))), (4.0, list(range(1, 20)))):
        checked.clear()
        backend = TexturedBackend([_face(100, 200)])
        stage = TrackStage(backend, _targets(_face(100, 200, embedding=np.array([1.0, 0.0]))), detect_interval=1000)
        for i in range(20):
            monkeypatch.setattr(follow, "flow_points", lambda patch, image, i=i: checked.append(i) or flow_points(patch, image))
            (out,) = stage.process(Frame(i, i * 40, Fraction(1, 1000), picture(step * i)))
            assert out.notes["targets"][0].state == SYNCED
        assert checked == expected, step
        assert len(backend.known) == 1  # no detection after the first
