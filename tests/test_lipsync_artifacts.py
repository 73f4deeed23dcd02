"""The worst lip-sync failures, each checked on the pixels of real faces.

- Another person's mouth on a face: an edit where a 0.5 s dissolve replaces person A with
  person B (who wears red lipstick) at the same place. A lipsync of A alone must leave B's
  frames untouched once the dissolve is over, and no red lip of B's may appear on A.
- A range that ends at the video's end, in silence, ends with the mouth closed (it does not
  fade back to the original's open mouth).
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
    assert max(got) < 0.1, f"the mouth reopens in the silence at the end: openings {np.round(got, 2).tolist()}"
