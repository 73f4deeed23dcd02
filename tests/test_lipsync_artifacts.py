"""The worst lip-sync failures, each checked on the pixels of real faces.

- Another person's mouth on a face: an edit where a 0.5 s dissolve replaces person A with
  person B (who wears red lipstick) at the same place. A lipsync of A alone must leave B's
  frames untouched once the dissolve is over, and no red lip of B's may appear on A.
- A range that ends at the video's end, in silence, ends with the mouth closed (it does not
  fade back to the original's open mouth).
- Two faces side by side (d12 | d20), a stem each: issue 23's named frames, no white tear
  through the man's lips (31-32) and no dark band under his raised chin (127).
"""
from __future__ import annotations

import numpy as np
import pytest

from jobs.config import Settings
from jobs.lipsync import lipsync
from jobs.schema import FaceSpec
from models.faces.default import DefaultFaceBackend
from models.mouth_metrics import mouth_opening
from stages.audio import load_audio
from tests.media import clip_frames, psnr, read_frames, write_video

FPS = 25
SIZE = 320  # px, each person's square
CUT_S, DISSOLVE_S, SECONDS = 1.6, 0.5, 4.0
WIDTH, HEIGHT = 480, 360
X, Y = 80, 20  # where the person stands, in both shots
RED = (215, 30, 45)


@pytest.fixture(scope="module")
def backend() -> DefaultFaceBackend:
    return DefaultFaceBackend()


def lips_mask(landmarks: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """The outer-lip polygon (points 48-59) minus the inner mouth (60-67): the lips themselves."""
    import cv2

    mask = np.zeros(shape, np.uint8)
    cv2.fillPoly(mask, [np.round(landmarks[48:60]).astype(np.int32)], 1)
    cv2.fillPoly(mask, [np.round(landmarks[60:68]).astype(np.int32)], 0)
    return mask.astype(bool)


def red_share(image: np.ndarray, box: tuple[slice, slice]) -> float:
    """Share of strongly red pixels (lipstick, not skin) in a region."""
    patch = image[box].astype(np.int32)
    red = (patch[..., 0] > 150) & (patch[..., 0] - patch[..., 1] > 110) & (patch[..., 0] - patch[..., 2] > 100)
    return float(red.mean())


def mouth_region(landmarks: np.ndarray, margin: int = 14) -> tuple[slice, slice]:
    lo = np.floor(landmarks[48:68].min(axis=0)).astype(int) - margin
    hi = np.ceil(landmarks[48:68].max(axis=0)).astype(int) + margin
    return slice(max(lo[1], 0), hi[1]), slice(max(lo[0], 0), hi[0])


@pytest.fixture(scope="module")
def speech(data_dir) -> np.ndarray:
    return load_audio(data_dir / "audio" / "yongen.wav", 16000)


@pytest.fixture(scope="module")
def dissolve(tmp_path_factory, data_dir, backend, speech):
    """A (d12) stands at (X, Y) in shot 1; a 0.5 s dissolve; B (d20, red lips) stands there in shot 2."""
    folder = tmp_path_factory.mktemp("dissolve")
    frames = int(SECONDS * FPS)
    a = clip_frames(data_dir / "video" / "d12.mp4", SIZE)[:frames]
    b = clip_frames(data_dir / "video" / "d20.mp4", SIZE)[:frames]
    for image in b:  # B wears red lipstick: her lips are unmistakable wherever they end up
        face = backend.detect(image, with_embedding=False)[0]
        image[lips_mask(face.landmarks, image.shape[:2])] = RED
    background = np.full((HEIGHT, WIDTH, 3), 90, np.uint8)

    def shot(person: list[np.ndarray], i: int) -> np.ndarray:
        canvas = background.copy()
        canvas[Y:Y + SIZE, X:X + SIZE] = person[i]
        return canvas

    def picture(i: int) -> np.ndarray:
        t = i / FPS
        if t < CUT_S:
            return shot(a, i)
        if t >= CUT_S + DISSOLVE_S:
            return shot(b, i)
        w = (t - CUT_S) / DISSOLVE_S
        return np.round((1 - w) * shot(a, i) + w * shot(b, i)).astype(np.uint8)

    video = write_video(folder / "dissolve.mp4", (picture(i) for i in range(frames)), fps=FPS)
    audio = folder / "speech.wav"
    write_wav(audio, speech[:int(SECONDS * 16000)], 16000)
    source = read_frames(video)
    first = backend.detect(source[0], with_embedding=False)[0]
    out = folder / "out.mp4"
    result = lipsync(video, audio, [FaceSpec("A", first.xywh, 0.0, SECONDS * 1000)], out,
                     settings=Settings.from_env())
    return source, read_frames(out), result


def write_wav(path, samples: np.ndarray, rate: int) -> None:
    from scipy.io import wavfile

    wavfile.write(str(path), rate, np.round(np.clip(samples, -1, 1) * 32767).astype(np.int16))


def test_a_dissolve_never_carries_a_mouth_onto_the_next_person(dissolve, backend):
    """Once the dissolve is over (plus 0.2 s to re-identify), B's face is the original's."""
    source, output, _ = dissolve
    start = int(round((CUT_S + DISSOLVE_S + 0.2) * FPS))
    changed = []
    for i in range(start, len(source)):
        face = backend.detect(source[i], with_embedding=False)[0]
        box = mouth_region(face.landmarks, margin=24)
        if psnr(source[i][box], output[i][box]) < 36.0:
            changed.append(i)
    assert changed == [], f"B's mouth was re-rendered on frames {changed} (only A was requested)"


def test_no_red_lip_of_b_is_ever_painted_on_a(dissolve, backend):
    """A's frames in shot 1 (before the dissolve starts) show no lipstick red: B's mouth
    samples must never reach A's mouth bank or A's render."""
    source, output, _ = dissolve
    reddened = []
    for i in range(0, int(CUT_S * FPS)):
        face = backend.detect(source[i], with_embedding=False)[0]
        box = mouth_region(face.landmarks)
        assert red_share(source[i], box) < 0.002  # A's own lips are not lipstick red
        if red_share(output[i], box) > 0.01:
            reddened.append(i)
    assert reddened == [], f"B's red lips appear on A on frames {reddened}"


@pytest.fixture(scope="module")
def ends_in_silence(tmp_path_factory, data_dir, speech, backend):
    """d12 whole (its last frames show the man's mouth open), synced to speech that stops
    2 s before the end: the range runs to the video's end."""
    folder = tmp_path_factory.mktemp("end")
    video = data_dir / "video" / "d12.mp4"
    source = read_frames(video)
    seconds = len(source) / FPS
    audio = np.zeros(int(seconds * 16000), np.float32)
    speaking = int((seconds - 2.0) * 16000)
    audio[:speaking] = speech[:speaking]
    wav = folder / "speech_then_silence.wav"
    write_wav(wav, audio, 16000)
    first = backend.detect(source[0], with_embedding=False)[0]
    out = folder / "out.mp4"
    lipsync(video, wav, [FaceSpec("man", first.xywh, 0.0, seconds * 1000)], out, settings=Settings.from_env())
    return source, read_frames(out)


def test_a_range_ending_at_the_videos_end_stays_closed_in_silence(ends_in_silence, backend):
    source, output = ends_in_silence
    last = range(len(output) - 12, len(output))
    original = [mouth_opening(backend.detect(source[i], with_embedding=False)[0].landmarks) for i in last]
    assert max(original) > 0.15  # the original mouth is open here: fading back to it would show
    got = [mouth_opening(backend.detect(output[i], with_embedding=False)[0].landmarks) for i in last]
    # dlib reads 0.04-0.11 on this closed, smiling mouth (it moves with the encoder's rounding);
    # the original's is 0.37-0.40 and a half-open mouth about 0.2
    assert max(got) < 0.15, f"the mouth reopens in the silence at the end: openings {np.round(got, 2).tolist()}"


TWO_FRAMES = 130  # 5.2 s: the frames issue 23 names lie within it


@pytest.fixture(scope="module")
def two_faces(tmp_path_factory, data_dir, backend):
    """d12 (left) and d20 (right) side by side at their own 512 px, each synced to its own
    stem (yongen.wav and sun.wav): (source frames, output frames)."""
    from jobs.schema import Voice
    from tests.media import compose

    folder = tmp_path_factory.mktemp("two")
    left, right = clip_frames(data_dir / "video" / "d12.mp4"), clip_frames(data_dir / "video" / "d20.mp4")
    video = compose(folder / "two.mp4", [{"frames": left[:TWO_FRAMES], "x": 0, "y": 0},
                                         {"frames": right[:TWO_FRAMES], "x": 512, "y": 0}], 1024, 512, TWO_FRAMES / FPS)
    source = read_frames(video)
    man, boy = sorted(backend.detect(source[0], with_embedding=False), key=lambda f: f.bbox[0])
    faces = [FaceSpec("man", man.xywh, 0.0, TWO_FRAMES * 40.0, Voice(str(data_dir / "audio" / "yongen.wav"))),
             FaceSpec("boy", boy.xywh, 0.0, TWO_FRAMES * 40.0, Voice(str(data_dir / "audio" / "sun.wav")))]
    out = folder / "out.mp4"
    lipsync(video, data_dir / "audio" / "yongen.wav", faces, out, settings=Settings.from_env())
    return source, read_frames(out)


def left_face(backend: DefaultFaceBackend, image: np.ndarray):
    return min(backend.detect(image, with_embedding=False), key=lambda f: f.bbox[0])


def white_on_lips(image: np.ndarray, landmarks: np.ndarray) -> float:
    """Share of the lips (outer polygon minus the inner mouth) that is white: bright (HSV
    value over 170) and unsaturated (under 0.3), as teeth torn through the lips would be."""
    import cv2

    hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV)
    lips = lips_mask(landmarks, image.shape[:2])
    return float(((hsv[..., 1][lips] < 0.3 * 255) & (hsv[..., 2][lips] > 170)).mean())


def test_two_faces_no_white_tear_through_the_lips(two_faces, backend):
    """Issue 23, face 1 at 31-32: a white vertical tear ran through the mouth. The lips are
    lip-coloured (measured 0.0 white; a 2 px white line drawn through them reads 0.03)."""
    _, output = two_faces
    for i in (31, 32):
        face = left_face(backend, output[i])
        assert white_on_lips(output[i], face.landmarks) < 0.01, i


def test_two_faces_no_dark_band_under_the_raised_chin(two_faces, backend):
    """Issue 23, face 1 at 127: a dark, beard-like band under the chin. The man's mouth is
    wide open there (0.39) and closes to the new speech: just under his original chin line
    the output shows his collar's colour (measured 12.9; the source itself 11.9; a band
    darkened by 40 levels reads 77)."""
    source, output = two_faces
    i = 127
    face = left_face(backend, source[i])
    assert mouth_opening(face.landmarks) > 0.3  # the original is wide open: the chin must rise
    chin = face.landmarks[8]
    s = float(np.linalg.norm(face.landmarks[42:48].mean(axis=0) - face.landmarks[36:42].mean(axis=0)))
    collar = source[i][int(chin[1] + 0.45 * s):int(chin[1] + 0.6 * s), int(chin[0] - 0.3 * s):int(chin[0] + 0.3 * s)]
    reference = collar.reshape(-1, 3).mean(axis=0)
    band = output[i][int(chin[1] + 0.12 * s):int(chin[1] + 0.3 * s), int(chin[0] - 0.3 * s):int(chin[0] + 0.3 * s)]
    assert float(np.linalg.norm(band.reshape(-1, 3).mean(axis=0) - reference)) < 20.0


def beside_the_jaw(landmarks: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Mask of what lies just outside the face beside its jaw (points 3-5 and 11-13, from
    0.04 to 0.25 inter-ocular distances out from the nose): background, hair, an earring."""
    import cv2

    s = float(np.linalg.norm(landmarks[45] - landmarks[36]))
    mask = np.zeros(shape, np.uint8)
    for side in ((3, 4, 5), (11, 12, 13)):
        points = landmarks[list(side)]
        out = (points - landmarks[33]) / np.linalg.norm(points - landmarks[33], axis=1, keepdims=True)
        ring = np.concatenate([points + 0.04 * s * out, (points + 0.25 * s * out)[::-1]])
        cv2.fillPoly(mask, [np.round(ring).astype(np.int32)], 1)
    return mask.astype(bool)


def test_nothing_beside_the_jaw_moves_with_it(data_dir, backend, tmp_path):
    """d10 + sun.wav, 11.0-13.3 s: her mouth closes from wide open, so her chin rises. What
    lies beside her jaw (the dark hair and her earring's tip, 0.04-0.25 inter-ocular
    distances out from points 3-5 and 11-13) is not part of the face and stays as it was:
    on every fourth frame the 99th percentile of the output's difference from the source
    there is the codec's (measured 8-18 levels). Before, the mask reached out there at the
    sides, and so did the band of skin under the jaw that moves with it: 11-115 levels,
    her earring's tip dragged up and ghosted (a blind tester's giveaway in 9 of 16 pairs)."""
    video = data_dir / "video" / "d10.mp4"
    source = read_frames(video)
    fps = 30.0
    first, last = int(11.0 * fps), int(13.3 * fps)
    face = backend.detect(source[first], with_embedding=False)[0]
    out = tmp_path / "out.mp4"
    lipsync(video, data_dir / "audio" / "sun.wav", [FaceSpec("her", face.xywh, 11_000.0, 13_300.0)], out,
            settings=Settings.from_env())
    output = read_frames(out)
    worst = []
    for i in range(first, last, 4):
        landmarks = backend.detect(source[i], with_embedding=False)[0].landmarks
        beside = beside_the_jaw(landmarks, source[i].shape[:2])
        diff = np.abs(source[i].astype(np.int16) - output[i].astype(np.int16)).max(axis=2)[beside]
        worst.append(float(np.percentile(diff, 99)))
    assert max(worst) <= 40, f"beside the jaw, the 99th percentile differences were {np.round(worst).tolist()}"
