"""How real the classical engine's mouths look, end to end on the sample clips.

Measured with this project's landmarks on the input and output frames:
- self-reenactment: a clip re-synced to its own audio is compared with the original in
  the mouth box; the bank engine must beat the synthesised mouth clearly;
- ghosting: with silent audio every mouth closes; on frames where the original mouth is
  wide open, the output's lips hold no dark cavity or teeth;
- teeth: where the output mouth opens wide, the person's teeth show;
- stability: the mouth box changes frame to frame about as much as the original's.
"""
from __future__ import annotations

import wave
from dataclasses import replace

import cv2
import numpy as np
import pytest

from jobs.config import Settings
from jobs.lipsync import lipsync
from jobs.schema import FaceSpec
from models.faces.default import DefaultFaceBackend
from models.faces.face import Face
from models.mouth_bank import FaceAxes, mouth_opening, sample_mouth
from tests.media import read_frames

EVERY = 3
"""Measure every third frame (landmarks cost ~20 ms a frame)."""


@pytest.fixture(scope="module")
def backend() -> DefaultFaceBackend:
    return DefaultFaceBackend()


def first_face(backend, image: np.ndarray) -> Face | None:
    faces = backend.detect(image, with_embedding=False)
    return faces[0] if faces else None


RESULTS: dict[str, dict] = {}
"""Each run's job result, by output path."""


def run(video, audio, out, bank: int) -> list[np.ndarray]:
    """Lip-sync the whole clip's one face; the output frames (the result in RESULTS)."""
    frames = read_frames(video)
    face = first_face(DefaultFaceBackend(), frames[0])
    spec = FaceSpec("person", face.xywh, 0.0, 60_000.0)
    settings = replace(Settings.from_env(), mouth_bank=bank)
    RESULTS[str(out)] = lipsync(video, audio, [spec], out, settings=settings)
    return read_frames(out)


def mouth_box(face: Face, margin: int = 6) -> tuple[slice, slice]:
    lo = np.floor(face.landmarks[48:68].min(axis=0)).astype(int) - margin
    hi = np.ceil(face.landmarks[48:68].max(axis=0)).astype(int) + margin
    return slice(max(lo[1], 0), hi[1]), slice(max(lo[0], 0), hi[0])


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(((a.astype(np.float64) - b.astype(np.float64)) ** 2).mean())
    return 10 * np.log10(255.0 ** 2 / max(mse, 1e-6))


@pytest.fixture(scope="module")
def inputs(data_dir, backend):
    """Per clip: frames and the input faces on the measured frames."""
    out = {}
    for name in ("d12", "d20"):
        frames = read_frames(data_dir / "video" / f"{name}.mp4")
        out[name] = (frames, {i: first_face(backend, frames[i]) for i in range(0, len(frames), EVERY)})
    return out


@pytest.fixture(scope="module")
def self_reenacted(data_dir, tmp_path_factory):
    """Each clip re-synced to its own audio, with the mouth bank and without it."""
    folder = tmp_path_factory.mktemp("self")
    out = {}
    for name in ("d12", "d20"):
        video = data_dir / "video" / f"{name}.mp4"
        for bank in (48, 0):
            out[name, bank] = run(video, video, folder / f"{name}_{bank}.mp4", bank)
    return out


@pytest.mark.parametrize("clip", ["d12", "d20"])
def test_self_reenactment_beats_the_synthesised_mouth(clip, inputs, self_reenacted):
    frames, faces = inputs[clip]
    scores = {}
    for bank in (48, 0):
        output = self_reenacted[clip, bank]
        values = [psnr(frames[i][mouth_box(f)], output[i][mouth_box(f)]) for i, f in faces.items() if f is not None]
        scores[bank] = float(np.mean(values))
    # Measured (round 10: exact colour conversion, bicubic texture): d20 19.50 -> 20.92 dB;
    # PSNR rewards blur under a slight misalignment, and the sharper bicubic texture costs
    # it ~0.07 dB on both paths.
    assert scores[48] > scores[0] + 1.2, scores


def test_teeth_show_where_the_mouth_opens_wide(inputs, self_reenacted, backend):
    """d12's man shows his teeth when he speaks; the re-synced open mouths keep them."""
    frames, faces = inputs["d12"]
    output = self_reenacted["d12", 48]
    teeth = []
    for i in faces:
        face = first_face(backend, output[i])
        if face is None:
            continue
        sample = sample_mouth(output[i], face.landmarks, face.pose, 0.0)
        if sample is not None and sample.opening >= 0.2:
            teeth.append(sample.teeth)
    assert len(teeth) >= 5
    # Measured: 0.076 of the inner mouth with the bank (0.043 painted by the synthesised
    # mouth; 0.20 on the original's open frames, whose openings the new audio does not follow).
    assert float(np.mean(teeth)) > 0.05, teeth


@pytest.mark.parametrize("clip", ["d12", "d20"])
def test_mouth_changes_frame_to_frame_about_as_the_original(clip, inputs, self_reenacted):
    frames, faces = inputs[clip]
    output = self_reenacted[clip, 48]
    change_in, change_out = [], []
    for i, face in faces.items():
        if face is None or i + 1 >= len(output):
            continue
        box = mouth_box(face)
        change_in.append(np.abs(frames[i + 1][box].astype(float) - frames[i][box]).mean())
        change_out.append(np.abs(output[i + 1][box].astype(float) - output[i][box]).mean())
    assert float(np.mean(change_out)) < 1.3 * float(np.mean(change_in)) + 1.0, (np.mean(change_in), np.mean(change_out))


def write_silence(path, seconds: float, rate: int = 16000) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.zeros(int(seconds * rate), np.int16).tobytes())


def dark_or_teeth_share(image: np.ndarray, face: Face) -> float:
    """Share of the pixels inside the outer lips that are cavity-dark or teeth-bright,
    against the skin around the mouth."""
    axes = FaceAxes.from_landmarks(face.landmarks)
    lips = np.zeros(image.shape[:2], np.uint8)
    cv2.fillPoly(lips, [np.round(face.landmarks[48:60]).astype(np.int32)], 1)
    ring = cv2.dilate(lips, np.ones((int(0.25 * axes.scale),) * 2, np.uint8)) - cv2.dilate(lips, np.ones((5, 5), np.uint8))
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float64)
    hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV)
    skin = float(np.median(grey[ring > 0]))
    inside = lips > 0
    dark = grey[inside] < 0.5 * skin
    teeth = (hsv[..., 1][inside] < 0.3 * 255) & (grey[inside] > 0.95 * skin)
    return float((dark | teeth).mean())


def test_closing_a_wide_open_mouth_leaves_no_ghost(data_dir, inputs, backend, tmp_path):
    """Silent audio closes every mouth; where d12's man has his mouth wide open, the
    output's lips must not show his original cavity or teeth."""
    frames, faces = inputs["d12"]
    silence = tmp_path / "silence.wav"
    write_silence(silence, len(frames) / 25.0)
    output = run(data_dir / "video" / "d12.mp4", silence, tmp_path / "closed.mp4", 48)
    wide = [i for i, f in faces.items()
            if f is not None and mouth_opening(FaceAxes.from_landmarks(f.landmarks).to_local(f.landmarks)) > 0.3]
    assert len(wide) >= 5
    shares_in = [dark_or_teeth_share(frames[i], faces[i]) for i in wide]
    shares_out = []
    for i in wide:
        face = first_face(backend, output[i])
        assert face is not None
        shares_out.append(dark_or_teeth_share(output[i], face))
    # Closed lips alone score ~0.09 (the dark line where they meet). Measured: the original
    # 0.14-0.28 on these frames; the synthesised mouth 0.25-0.36 (its ghost); the bank 0.08-0.21.
    assert float(np.mean(shares_in)) > 0.15  # the original really is open there
    assert float(np.mean(shares_out)) < 0.14 and max(shares_out) < 0.25, shares_out


def test_bank_mouth_follows_the_new_speech_and_closes_in_silence(data_dir, inputs, backend, tmp_path):
    """d12 re-synced to another voice: the output opening (its landmarks) follows the
    audio's target opening, and the mouth is shut where the audio says closed."""
    from models.classical_lipsync import ClassicalLipSync
    from stages.audio import load_audio

    frames, faces = inputs["d12"]
    audio = data_dir / "audio" / "yongen.wav"
    output = run(data_dir / "video" / "d12.mp4", audio, tmp_path / "dub.mp4", 48)
    track = ClassicalLipSync().prepare_audio(load_audio(audio, 16000), 16000, 25.0)
    target, measured, closed = [], [], []
    for i in faces:
        face = first_face(backend, output[i])
        if face is None:
            continue
        shape = track.at(i * 40.0)
        target.append(shape.openness)
        closed.append(shape.closed)
        measured.append(mouth_opening(FaceAxes.from_landmarks(face.landmarks).to_local(face.landmarks)))
    target, measured, closed = np.array(target), np.array(measured), np.array(closed)
    assert np.corrcoef(target, measured)[0, 1] >= 0.5
    assert (closed > 0.7).sum() >= 3
    assert float(np.median(measured[closed > 0.7])) < 0.08


def test_a_person_who_never_opens_their_mouth_gets_synthesised_open_mouths_and_a_warning(data_dir, tmp_path):
    """A still of d12's man with his lips closed: the bank holds no open mouth, so open
    targets are synthesised, and the response says who and why."""
    from tests.media import write_video

    still = read_frames(data_dir / "video" / "d12.mp4")[0]
    video = write_video(tmp_path / "still.mp4", [still] * 50, fps=25)
    face = first_face(DefaultFaceBackend(), still)
    result = lipsync(video, data_dir / "audio" / "yongen.wav", [FaceSpec("silent_man", face.xywh, 0.0, 2000.0)],
                     tmp_path / "out.mp4")
    (bank,) = result["mouth_bank"]
    assert bank["character_id"] == "silent_man" and bank["samples"] >= 1
    assert bank["frames_synthesised"] > 0 and bank["frames_from_bank"] > 0
    assert bank["phone_labelled"] == 0  # the still video has no audio of its own to label them by
    assert any("silent_man" in w and "never shows this person's mouth open" in w for w in result["warnings"])


# -- the quick start's artifact frames (issue 23), by their pixels ---------------------------

@pytest.fixture(scope="module")
def quick_start(data_dir, tmp_path_factory):
    """d12 + yongen.wav (the README's quick start), the whole clip synced: (input, output)."""
    out = tmp_path_factory.mktemp("quick") / "out.mp4"
    frames = read_frames(data_dir / "video" / "d12.mp4")
    return frames, run(data_dir / "video" / "d12.mp4", data_dir / "audio" / "yongen.wav", out, 48), RESULTS[str(out)]


@pytest.fixture(scope="module")
def grin_with_sun(data_dir, tmp_path_factory):
    """d12 + sun.wav, the whole clip synced: (input, output)."""
    out = tmp_path_factory.mktemp("sun") / "out.mp4"
    frames = read_frames(data_dir / "video" / "d12.mp4")
    return frames, run(data_dir / "video" / "d12.mp4", data_dir / "audio" / "sun.wav", out, 48), RESULTS[str(out)]


def local(face: Face) -> np.ndarray:
    return FaceAxes.from_landmarks(face.landmarks).to_local(face.landmarks)


def test_the_last_frames_do_not_fade_back_to_the_original_open_mouth(quick_start, backend):
    """Frames 180-182: the range ends with the video, so the synced mouth holds to the end;
    the original's wide-open mouth (his laugh) must not come back."""
    frames, output, _ = quick_start
    for i in (180, 181, 182):
        original, synced = first_face(backend, frames[i]), first_face(backend, output[i])
        assert mouth_opening(local(original)) > 0.3  # the original is wide open there
        # Measured 0.03-0.05 (before: 0.13, 0.23, 0.37: the fade showed the original again).
        assert mouth_opening(local(synced)) < 0.1, i


def sweater_distance(image: np.ndarray, face: Face, reference: np.ndarray) -> float:
    """Mean colour distance to `reference` (RGB) of a band 0.12-0.3 s below the chin."""
    axes = FaceAxes.from_landmarks(face.landmarks)
    chin, s = face.landmarks[8], axes.scale
    band = image[int(chin[1] + 0.12 * s):int(chin[1] + 0.3 * s), int(chin[0] - 0.3 * s):int(chin[0] + 0.3 * s)]
    return float(np.linalg.norm(band.reshape(-1, 3).mean(axis=0) - reference))


def test_no_second_jaw_line_under_a_raised_chin(quick_start, backend):
    """Frames 93-94: the mouth closes, the chin rises; under the original chin line the
    output shows the collar, not a grey mix of the old chin and the collar."""
    frames, output, _ = quick_start
    for i in (93, 94):
        original = first_face(backend, frames[i])
        axes = FaceAxes.from_landmarks(original.landmarks)
        chin, s = original.landmarks[8], axes.scale
        collar = frames[i][int(chin[1] + 0.45 * s):int(chin[1] + 0.6 * s), int(chin[0] - 0.3 * s):int(chin[0] + 0.3 * s)]
        reference = collar.reshape(-1, 3).mean(axis=0)
        # The band just under the original chin line, in the output: collar-coloured.
        # Measured 10.5 / 10.1 (before: 30.7 / 29.5, the grey mix; the original's chin 45-48).
        assert sweater_distance(output[i], original, reference) < 20.0, i


def test_open_smiling_mouths_show_teeth_not_a_flat_cavity(quick_start, backend):
    """Frames 20-23 and 65-67: the man smiles with his teeth showing; where the output
    mouth is open it shows teeth (his own, from the bank), and the smile's width stays."""
    frames, output, _ = quick_start
    teeth, widths = [], []
    for i in (20, 21, 22, 23, 65, 66, 67):
        original, synced = first_face(backend, frames[i]), first_face(backend, output[i])
        sample = sample_mouth(output[i], synced.landmarks, synced.pose, 0.0)
        if sample.opening >= 0.12:
            teeth.append(sample.teeth)
        widths.append(mouth_width_of(synced) / mouth_width_of(original))
    # Measured: teeth 0.09 of the open inner mouths, width 0.99 of the original's (before:
    # 0.01, a flat cavity, and 0.88, the smile narrowed to the average mouth).
    assert teeth and float(np.mean(teeth)) > 0.05, teeth
    assert float(np.median(widths)) > 0.94, widths


def mouth_width_of(face: Face) -> float:
    uv = local(face)
    return float(uv[54, 0] - uv[48, 0])


@pytest.mark.parametrize("run_name, audio, share", [("quick_start", "yongen.wav", 0.6), ("grin_with_sun", "sun.wav", 0.7)])
def test_a_grin_keeps_its_teeth_while_it_speaks(request, backend, data_dir, run_name, audio, share):
    """Frames 15-74: the man grins, teeth showing, through most of his speech. Where the new
    speech is not a closure (p/b/m) or a pause, his teeth stay in view: the output's inner
    mouth shows teeth on most frames where the original's does. Before (one closed, neutral
    mouth for every low opening, and toothless samples for a smile): teeth on 40% of them
    with yongen.wav. With sun.wav, whose syllables ask for narrower lips than his grin's,
    a toothy sample squeezed to them was avoided (it showed its teeth as a slit), so a
    toothless one showed a grey band: teeth on 54% (21 of 39); now the lower lip covers
    the teeth instead of squashing them, 82%."""
    from models.mouth_front_end import mouth_track
    from models.mouth_params import MouthParamConfig
    from stages.audio import load_audio

    frames, output, _ = request.getfixturevalue(run_name)
    speech = mouth_track(load_audio(data_dir / "audio" / audio, 16000), 16000, 25.0, MouthParamConfig())
    toothy, kept = 0, 0
    for i in range(15, 75):
        if speech.at(i * 40.0).closed >= 0.5:
            continue  # a closure or a pause: the lips must close, teeth or not
        original, synced = first_face(backend, frames[i]), first_face(backend, output[i])
        if sample_mouth(frames[i], original.landmarks, original.pose, 0.0).teeth < 0.3:
            continue
        toothy += 1
        kept += sample_mouth(output[i], synced.landmarks, synced.pose, 0.0).teeth >= 0.2
    assert toothy >= 30
    assert kept / toothy >= share, f"teeth kept on {kept} of {toothy} grinning speech frames"


def test_the_mans_own_mouths_carry_the_phones_he_says(quick_start):
    """d12 shows one face, so its own audio is his: every banked mouth carries the shape of
    the phone he says at its time (Video Rewrite), which the selection matches."""
    _, _, result = quick_start
    (bank,) = result["mouth_bank"]
    assert bank["samples"] >= 10 and bank["phone_labelled"] == bank["samples"]


def test_a_person_who_never_closes_their_mouth_keeps_her_grin_in_silence(data_dir, backend, tmp_path):
    """s29's woman grins with her teeth through the whole clip: her bank holds no closed
    mouth. In silence she keeps her grin, from her own bank on every frame: lips pressed
    shut are a face her video never shows, and a viewer picked them as edited every time
    (5 of 14 blind pairs). Measured: output opening median 0.21 against her own 0.22 (lips
    pressed shut: 0.013); teeth-or-dark share 0.30 against 0.32 (shut: ~0.08)."""
    video = data_dir / "video" / "s29.mp4"
    frames = read_frames(video)
    silence = tmp_path / "silence.wav"
    write_silence(silence, len(frames) / 25.0)
    face = first_face(backend, frames[0])
    result = lipsync(video, silence, [FaceSpec("grin", face.xywh, 0.0, 1e9)], tmp_path / "grin.mp4")
    (bank,) = result["mouth_bank"]
    assert bank["frames_synthesised"] == 0 and bank["frames_from_bank"] >= 0.9 * len(frames), bank
    assert any("never shows this person's mouth closed" in w for w in result["warnings"])
    output = read_frames(tmp_path / "grin.mp4")

    def opening_and_share(image: np.ndarray) -> tuple[float, float]:
        found = first_face(backend, image)
        assert found is not None
        return (mouth_opening(FaceAxes.from_landmarks(found.landmarks).to_local(found.landmarks)),
                dark_or_teeth_share(image, found))

    source = np.array([opening_and_share(frames[i]) for i in range(0, len(frames), 8)])
    dubbed = np.array([opening_and_share(output[i]) for i in range(0, len(frames), 8)])
    assert float(np.median(dubbed[:, 0])) > 0.7 * float(np.median(source[:, 0])), (source, dubbed)
    assert float(np.mean(dubbed[:, 1])) > 0.7 * float(np.mean(source[:, 1])), (source, dubbed)


def test_a_person_who_never_closes_their_mouth_still_closes_it_cleanly_on_p_b_m(data_dir, backend):
    """Her p/b/m closures (closed for under `PAUSE_MS`) do close, with her own least open
    lips pressed together (from the bank), not by warping the grin's lips shut, which
    smeared them into a twisted streak. A track of 120 ms closures every 400 ms."""
    from models.classical_lipsync import ClassicalLipSync
    from models.engine import MouthRequest
    from models.mouth_bank import MouthBank
    from models.mouth_params import PAUSE_MS, MouthTrack

    frames = read_frames(data_dir / "video" / "s29.mp4")
    faces = [first_face(backend, frames[i]) for i in range(len(frames))]
    bank = MouthBank()
    for i in range(0, len(frames), 6):
        sample = sample_mouth(frames[i], faces[i].landmarks, faces[i].pose, i * 40.0)
        if sample is not None:
            bank.add(sample)
    assert not bank.coverage().has_closed  # she never closes her mouth
    times = np.arange(0, len(frames) * 40 + 40, 10.0)
    closed = ((times % 400) < 120).astype(np.float64)
    assert 120 < PAUSE_MS
    track = MouthTrack(times, 0.6 * (1 - closed), np.zeros_like(times), np.zeros_like(times), closed,
                       1 - closed, fps=25.0)
    engine = ClassicalLipSync()
    openings, shares = [], []
    for i, (image, face) in enumerate(zip(frames, faces)):
        (patch,) = engine.render([MouthRequest(i, i * 40.0, image, face, "grin", 1.0, bank)], track)
        if track.at(i * 40.0).closed < 1.0 or i % 2:
            continue
        out = image.astype(np.float64)
        box = out[patch.y:patch.y + patch.pixels.shape[0], patch.x:patch.x + patch.pixels.shape[1]]
        box += patch.alpha[..., None] * (patch.pixels - box)
        out = out.round().astype(np.uint8)
        found = first_face(backend, out)
        assert found is not None
        openings.append(mouth_opening(FaceAxes.from_landmarks(found.landmarks).to_local(found.landmarks)))
        shares.append(dark_or_teeth_share(out, found))
    assert bank.frames_synthesised == 0, bank.frames_synthesised
    assert len(openings) >= 8
    # Measured: openings median 0.026 over 32 closure frames, teeth-or-dark share 0.067
    # (closed lips score ~0.08 here, the dark line where they meet; the grin 0.32). All from
    # the bank: the synthesised path is the one that warped the grin shut.
    assert float(np.median(openings)) < 0.04 and float(np.mean(shares)) < 0.12, (openings, shares)


def test_an_animated_speaker_opens_about_as_much_as_she_does(data_dir, backend, tmp_path):
    """d11's girl opens wide and often: her usual opening (75th percentile) is 0.24 s units.
    The phones' targets on her own widest gave her dub 0.17 (0.73x): it looked half-hearted
    beside her real speech. Her opening curve now lifts the mid openings (measured 0.84x)."""
    video = data_dir / "video" / "d11.mp4"
    frames = read_frames(video)
    face = first_face(backend, frames[0])
    lipsync(video, data_dir / "audio" / "yongen.wav", [FaceSpec("girl", face.xywh, 0.0, 1e9)], tmp_path / "dub.mp4")
    output = read_frames(tmp_path / "dub.mp4")

    def usual_opening(images: list[np.ndarray]) -> float:
        openings = []
        for image in images[0:200:2]:
            found = first_face(backend, image)
            if found is not None:
                openings.append(mouth_opening(FaceAxes.from_landmarks(found.landmarks).to_local(found.landmarks)))
        return float(np.percentile(openings, 75))

    own, dub = usual_opening(frames), usual_opening(output)
    assert dub >= 0.79 * own, (dub, own)
