"""One voice per character: each face moves to its own stem; the output carries the mix.

Two real talking heads side by side, two real speech stems with different on/off timing
(the right one placed by audio_offset_ms), over real HTTP; mouths measured with the
project's landmarks (DefaultFaceBackend)."""
import json
from pathlib import Path

import httpx
import numpy as np
import pytest
from scipy.io import wavfile

from jobs.auto import auto_faces_with_stems, faces_from_detection
from jobs.config import Settings
from jobs.detect import detect_faces
from jobs.lipsync import lipsync
from jobs.passthrough import passthrough
from jobs.schema import FaceSpec, Voice, parse_lipsync
from jobs.stems import mix_stems, place_stem, speech_ranges
from models.classical_lipsync import ClassicalLipSync
from models.faces.default import DefaultFaceBackend
from models.mouth_metrics import mouth_opening
from server import create_app
from service.admission import Limits
from service.delivery import UploadPolicy
from service.fetch import FetchPolicy
from stages.audio import load_audio
from stream.errors import InputError
from tests.http_servers import FileServer, PutReceiver
from tests.live_server import LiveServer
from tests.media import clip_frames, compose, read_frames

RATE = 48000  # the stems' rate: the mix and the output track keep it
SECONDS = 3.0
LEFT_SPEAKS = [(0.0, 1.3), (2.1, 3.0)]  # s on the video's timeline
RIGHT_OFFSET_MS = 1000  # the right stem starts 1 s into the video...
RIGHT_SPEAKS = [(0.0, 1.5)]  # ...and speaks for its first 1.5 s (1.0-2.5 s of the video)


def speech_with_gaps(source: np.ndarray, spans: list[tuple[float, float]], seconds: float) -> np.ndarray:
    out = np.zeros(int(seconds * RATE), np.float32)
    cursor = 0
    for start, end in spans:
        n = int((end - start) * RATE)
        out[int(start * RATE):int(start * RATE) + n] = source[cursor:cursor + n]
        cursor += n
    return out


def as_int16(samples: np.ndarray, gain: float = 1.0) -> np.ndarray:
    return np.round(np.clip(samples * gain, -1, 1) * 32767).astype(np.int16)


@pytest.fixture(scope="module")
def scene(tmp_path_factory, data_dir):
    folder = tmp_path_factory.mktemp("stems")
    left, right = clip_frames(data_dir / "video" / "d12.mp4", 320), clip_frames(data_dir / "video" / "d20.mp4", 320)
    compose(folder / "two.mp4", [{"frames": left[:75], "x": 0, "y": 20},
                                 {"frames": right[:75], "x": 360, "y": 20}], 680, 360, SECONDS)
    # at -6 dB each, as dialogue stems are delivered, so that their sum does not clip
    a = as_int16(speech_with_gaps(load_audio(data_dir / "audio" / "yongen.wav", RATE), LEFT_SPEAKS, SECONDS), 0.5)
    b = as_int16(speech_with_gaps(load_audio(data_dir / "audio" / "sun.wav", RATE)[3 * RATE:], RIGHT_SPEAKS, 1.6), 0.5)
    wavfile.write(folder / "left.wav", RATE, a)
    wavfile.write(folder / "right.wav", RATE, b)
    (folder / "page.wav").write_bytes(b"<!DOCTYPE html><html><body>sign in</body></html>")
    # what each face should follow and what the output should carry, on the video's timeline
    left_line = a.astype(np.float32) / 32768
    right_line = place_stem(b.astype(np.float32) / 32768, RATE, RIGHT_OFFSET_MS)
    mix = np.zeros(int(SECONDS * RATE), np.float32)
    mix[:len(left_line)] += left_line
    mix[:len(right_line)] += right_line[:len(mix)]
    return folder, left_line, right_line, mix


@pytest.fixture(scope="module")
def files(scene):
    with FileServer(scene[0]) as server:
        yield server


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    settings = Settings(models_dir=Path(tmp_path_factory.mktemp("weights")), workdir=tmp_path_factory.mktemp("work"))
    app = create_app(settings, FetchPolicy(allow_private_networks=True), UploadPolicy(allow_private_networks=True))
    with LiveServer(app) as server:
        yield server


def body(files) -> dict:
    image = read_frames(files.root / "two.mp4")[0]
    left, right = sorted(DefaultFaceBackend().detect(image, with_embedding=False), key=lambda f: f.bbox[0])
    end = SECONDS * 1000
    return {"video_url": files.url("two.mp4"), "upload_url": None,
            "faces": [{"character_id": "left", "bbox": left.xywh, "start_time_ms": 0, "end_time_ms": end,
                       "audio_url": files.url("left.wav")},
                      {"character_id": "right", "bbox": right.xywh, "start_time_ms": 0, "end_time_ms": end,
                       "audio_url": files.url("right.wav"), "audio_offset_ms": RIGHT_OFFSET_MS}]}


@pytest.fixture(scope="module")
def synced(api, files, tmp_path_factory):
    with PutReceiver([200]) as receiver:
        request = body(files) | {"upload_url": receiver.url("out.mp4")}  # no audio_url: the stems mixed
        response = httpx.post(api.url + "/lipsync", json=request, timeout=600)
        assert response.status_code == 200, response.text
        output = tmp_path_factory.mktemp("result") / "out.mp4"
        output.write_bytes(receiver.stored["/out.mp4"])
    return response.json(), output


def loudness(samples: np.ndarray, t: float) -> float:
    window = samples[max(0, int((t - 0.02) * RATE)):int((t + 0.02) * RATE)]
    return max(20 * np.log10(np.sqrt(np.mean(window ** 2)) + 1e-5) if len(window) else -50.0, -50.0)


def openings(output: Path) -> dict[str, np.ndarray]:
    backend = DefaultFaceBackend()
    found: dict[str, list[float]] = {"left": [], "right": []}
    for i, image in enumerate(read_frames(output)):
        faces = sorted(backend.detect(image, with_embedding=False), key=lambda f: f.bbox[0])
        assert len(faces) == 2, f"frame {i}: {len(faces)} faces"
        found["left"].append(mouth_opening(faces[0].landmarks))
        found["right"].append(mouth_opening(faces[1].landmarks))
    return {k: np.asarray(v) for k, v in found.items()}


def test_each_face_follows_its_own_stem_not_the_other(synced, scene):
    result, output = synced
    _, left_line, right_line, _ = scene
    assert result["success"] and result["engine"] == "classical" and result["expressiveness_applied"] is True
    assert [r["summary"]["synced_ms"] >= 2700 for r in result["faces"]["results"]] == [True, True]
    mouths = openings(output)
    times = np.arange(len(mouths["left"])) / 25
    lines = {"left": np.array([loudness(left_line, t) for t in times]),
             "right": np.array([loudness(right_line, t) for t in times])}
    r = {(face, line): float(np.corrcoef(mouths[face], lines[line])[0, 1]) for face in mouths for line in lines}
    print("mouth opening vs stem loudness r:", {f"{f}~{l}": round(v, 3) for (f, l), v in r.items()})
    for face, other in (("left", "right"), ("right", "left")):
        assert r[(face, face)] >= 0.5
        assert r[(face, other)] <= r[(face, face)] - 0.4


def snr(got: np.ndarray, want: np.ndarray) -> float:
    """Signal-to-error ratio (dB); identical samples give over 200 dB."""
    error = np.sum((got - want).astype(np.float64) ** 2)
    return float(10 * np.log10(np.sum(want.astype(np.float64) ** 2) / max(error, 1e-20)))


def test_without_audio_url_the_output_carries_the_stems_mixed(synced, scene, tmp_path):
    result, output = synced
    mix = scene[3]
    assert any("stem(s) mixed" in w for w in result["warnings"])
    got = load_audio(output, RATE)
    assert abs(len(got) - len(mix)) <= 1024  # one AAC frame
    n = min(len(got), len(mix))
    lags = range(-48, 49)
    best = max(lags, key=lambda lag: float(np.dot(got[max(lag, 0):n + min(lag, 0)], mix[max(-lag, 0):n - max(lag, 0)])))
    # the AAC tolerance: the same mix, written by this test, through the product's plain encode
    wavfile.write(tmp_path / "mix.wav", RATE, mix)
    passthrough(scene[0] / "two.mp4", tmp_path / "plain.mp4", tmp_path / "mix.wav")
    plain = load_audio(tmp_path / "plain.mp4", RATE)
    snr_mix, snr_plain = snr(got[:n], mix[:n]), snr(got[:n], plain[:n])
    print(f"muxed vs stems mixed: lag {best} samples, SNR {snr_mix:.1f} dB (AAC alone: {snr(plain[:n], mix[:n]):.1f} "
          f"dB), vs the mix AAC-encoded: SNR {snr_plain:.1f} dB, lengths {len(got)} / {len(mix)}")
    assert best == 0 and snr_mix >= snr(plain[:n], mix[:n]) - 1  # aligned, and no worse than AAC's own noise
    assert snr_plain >= 40  # the same samples went in


def test_the_mix_file_is_the_sum_of_the_stems_sample_for_sample(scene, tmp_path):
    folder, left_line, right_line, mix = scene
    stems = [Voice(str(folder / "left.wav")), Voice(str(folder / "right.wav"), RIGHT_OFFSET_MS)]
    path, warnings = mix_stems(stems, tmp_path / "mix.wav")
    written = load_audio(path, RATE)
    assert len(written) == max(len(left_line), len(right_line))
    assert np.max(np.abs(written[:len(mix)] - mix)) < 1e-6 and len(warnings) == 1


def test_a_mix_that_would_clip_is_scaled_down_and_said(tmp_path):
    loud = as_int16(np.full(RATE // 2, 0.8, np.float32))
    wavfile.write(tmp_path / "a.wav", RATE, loud)
    path, warnings = mix_stems([Voice(str(tmp_path / "a.wav")), Voice(str(tmp_path / "a.wav"), 100)],
                               tmp_path / "mix.wav")
    assert np.max(np.abs(load_audio(path, RATE))) <= 1.0 and "scaled down" in warnings[-1]


def test_an_offset_delays_or_cuts_the_stem():
    samples = np.arange(1, 11, dtype=np.float32)
    assert place_stem(samples, 1000, 3).tolist() == [0, 0, 0, *range(1, 11)]
    assert place_stem(samples, 1000, -4).tolist() == list(range(5, 11))


def test_speech_ranges_find_the_lines(scene):
    _, left_line, right_line, _ = scene
    for line, spans in ((left_line, LEFT_SPEAKS), (right_line, [(1.0, 2.5)])):
        found = speech_ranges(line, RATE)
        assert len(found) == len(spans)
        for (start, end), (s, e) in zip(found, spans):
            assert start == pytest.approx(s * 1000, abs=250) and end == pytest.approx(e * 1000, abs=250)


def test_expressiveness_scales_how_wide_the_mouth_opens(data_dir):
    engine = ClassicalLipSync()
    track = engine.prepare_audio(load_audio(data_dir / "audio" / "yongen.wav", 16000)[:3 * 16000], 16000, 25)
    image = clip_frames(data_dir / "video" / "d12.mp4")[0]
    landmarks = DefaultFaceBackend().detect(image, with_embedding=False)[0].landmarks
    mean_opening = {}
    for amount in (0.2, 0.5, 0.9):
        scaled = engine.with_expressiveness(track, amount) if amount != 0.5 else track
        mean_opening[amount] = np.mean([mouth_opening(engine.target_landmarks(landmarks, scaled.at(t), "k", i))
                                        for i, t in enumerate(range(0, 3000, 40))])
    assert mean_opening[0.2] < 0.7 * mean_opening[0.5] and mean_opening[0.9] > 1.3 * mean_opening[0.5]


@pytest.mark.parametrize("change,message", [
    (lambda b: b["faces"][1].update(audio_url=b["faces"][1]["audio_url"].replace("right.wav", "page.wav")),
     "faces[1].audio_url: looks like an HTML page"),
    (lambda b: b["faces"][0].update(audio_url=b["faces"][0]["audio_url"].replace("left.wav", "missing")),
     "faces[0].audio_url"),
    (lambda b: b["faces"][1].update(expressiveness=1.5), "faces[1].expressiveness"),
    (lambda b: b["faces"][0].pop("audio_url"), "audio_url"),
])
def test_a_bad_stem_is_refused_naming_it(api, files, change, message):
    request = body(files) | {"upload_url": files.url("unused.mp4")}
    change(request)
    response = httpx.post(api.url + "/lipsync", json=request, timeout=120)
    assert response.status_code == 422, response.text
    assert message in response.json()["error_message"]


def test_schema_needs_the_mix_or_a_stem_for_every_face():
    face = {"character_id": "a", "bbox": [0, 0, 10, 10], "start_time_ms": 0, "end_time_ms": 100}
    with pytest.raises(InputError, match="audio_url"):
        parse_lipsync({"video_url": "v", "upload_url": "u",
                       "faces": [face, face | {"audio_url": "s", "bbox": [1, 1, 9, 9]}]})
    with pytest.raises(InputError, match="audio_offset_ms"):
        parse_lipsync({"video_url": "v", "audio_url": "m", "upload_url": "u", "faces": [face | {"audio_offset_ms": 5}]})
    auto = parse_lipsync({"video_url": "v", "upload_url": "u", "auto": True,
                          "faces": [{"character_id": "face_1", "audio_url": "s", "audio_offset_ms": -250}]})
    assert auto.faces is None and auto.voices["face_1"] == Voice("s", -250.0, None)


def test_the_given_mix_is_muxed_and_expressiveness_scales_each_face(api, files, scene, synced, tmp_path):
    folder, _, _, mix = scene
    final = mix + np.float32(0.05) * np.sin(2 * np.pi * 220 * np.arange(len(mix)) / RATE).astype(np.float32)
    wavfile.write(folder / "final.wav", RATE, final)  # the final mix: the stems plus a music bed
    request = body(files) | {"audio_url": files.url("final.wav"), "expressiveness": 0.1}
    request["faces"][1]["expressiveness"] = 1.0  # the right face's own; the left takes the request's
    with PutReceiver([200]) as receiver:
        response = httpx.post(api.url + "/lipsync", json=request | {"upload_url": receiver.url("out.mp4")},
                              timeout=600)
        assert response.status_code == 200, response.text
        (tmp_path / "out.mp4").write_bytes(receiver.stored["/out.mp4"])
    assert response.json()["expressiveness_applied"] is True
    got = load_audio(tmp_path / "out.mp4", RATE)
    passthrough(folder / "two.mp4", tmp_path / "plain.mp4", folder / "final.wav")
    plain = load_audio(tmp_path / "plain.mp4", RATE)
    n = min(len(got), len(final))
    print(f"muxed vs the given mix: SNR {snr(got[:n], final[:n]):.1f} dB (AAC alone "
          f"{snr(plain[:n], final[:n]):.1f} dB), vs the mix AAC-encoded alone: {snr(got[:n], plain[:n]):.1f} dB")
    assert snr(got[:n], plain[:n]) >= 40 and snr(got[:n], final[:n]) >= 20
    before, after = openings(synced[1]), openings(tmp_path / "out.mp4")
    print({face: (round(float(before[face].mean()), 3), round(float(after[face].mean()), 3)) for face in before})
    print("motion (std)", {face: (round(float(before[face].std()), 3), round(float(after[face].std()), 3)) for face in before})
    assert after["left"].mean() < 0.7 * before["left"].mean()  # expressiveness 0.1 < 0.5
    assert after["left"].std() < 0.8 * before["left"].std()  # less motion, not only a smaller mouth
    assert after["right"].mean() > 1.2 * before["right"].mean()  # 1.0 > 0.5


def test_auto_mode_syncs_a_face_only_while_its_own_stem_speaks(scene, tmp_path):
    folder = scene[0]
    settings = Settings(models_dir=tmp_path / "weights")  # no Light-ASD: the presence rule, cut by the stems
    detected = detect_faces(folder / "two.mp4", settings=settings)
    first = sorted(detected["frames"][0]["faces"], key=lambda f: f["bbox"][0])
    left, right = first[0]["character_id"], first[1]["character_id"]
    voices = {left: Voice(str(folder / "left.wav")), right: Voice(str(folder / "right.wav"), RIGHT_OFFSET_MS)}
    result = lipsync(folder / "two.mp4", None, None, tmp_path / "auto.mp4", settings, voices=voices)
    synced = {left: [], right: []}
    for face in result["faces"]["results"]:
        synced[face["character_id"]] += [(s["start_ms"], s["end_ms"]) for s in face["segments"] if s["synced"]]
    print("auto mode synced ranges:", synced)
    for person, speaks in ((left, LEFT_SPEAKS), (right, [(1.0, 2.5)])):
        assert synced[person], f"{person} never synced"
        for start, end in synced[person]:  # inside a line of its stem (padded by its speech detection)
            assert any(s * 1000 - 250 <= start and end <= e * 1000 + 250 for s, e in speaks), (person, start, end)
        covered = sum(end - start for start, end in synced[person])
        assert covered >= 0.8 * sum(e - s for s, e in speaks) * 1000
    assert any("while present and their own stem has speech" in w for w in result["warnings"])


def test_musetalk_says_it_cannot_apply_expressiveness_but_takes_each_stem(scene, data_dir, tmp_path):
    pytest.importorskip("diffusers")
    from benchmarks.tiny_models import write_tiny_musetalk

    settings = Settings(models_dir=write_tiny_musetalk(tmp_path / "weights"))
    clip = compose(tmp_path / "one.mp4", [{"frames": clip_frames(data_dir / "video" / "d20.mp4", 320)[:25],
                                           "x": 0, "y": 0}], 320, 320, 1.0)
    bbox = detect_faces(clip, sample_fps=1, settings=settings)["frames"][0]["faces"][0]["bbox"]
    face = FaceSpec("a", bbox, 0, 1000, Voice(str(scene[0] / "left.wav"), -500, 0.9))
    result = lipsync(clip, None, [face], tmp_path / "out.mp4", settings)
    assert result["engine"].startswith("musetalk") and result["expressiveness_applied"] is False
    assert any("expressiveness 0.9 was not applied" in w and "musetalk" in w for w in result["warnings"])
    assert result["faces"]["results"][0]["summary"]["synced_ms"] > 800


def test_cli_takes_stems_in_faces_json_relative_to_it(scene, files, tmp_path, capsys):
    from jobs.cli import main

    folder = scene[0]
    faces = body(files)["faces"]
    faces[0]["audio_url"], faces[1]["audio_url"] = "left.wav", str(folder / "right.wav")
    (folder / "faces.json").write_text(json.dumps(faces))
    video = str(folder / "two.mp4")
    assert main(["lipsync", "--video", video, "--faces", str(folder / "faces.json"), "--out", str(tmp_path / "o.mp4"),
                 "--expressiveness", "0.7"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert [r["summary"]["synced_ms"] >= 2700 for r in result["faces"]["results"]] == [True, True]
    assert result["expressiveness_applied"] and any("stem(s) mixed" in w for w in result["warnings"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.mp4"]  # the mix's temp folder is gone
    refused = ["lipsync", "--video", video, "--faces", str(folder / "faces.json"), "--out", str(tmp_path / "x.mp4")]
    faces[1]["audio_url"] = "absent.wav"
    (folder / "faces.json").write_text(json.dumps(faces))
    assert main(refused) == 2
    assert "faces[1].audio_url" in json.loads(capsys.readouterr().out)["error_message"]
    del faces[1]["audio_url"], faces[1]["audio_offset_ms"]
    (folder / "faces.json").write_text(json.dumps(faces))
    assert main(refused) == 2
    assert "--audio is required" in json.loads(capsys.readouterr().out)["error_message"]


# ---------------------------------------------------------------- offsets are bounded (issue 22, item 1 and 10)


def test_a_huge_offset_places_no_silence_past_the_length():
    samples = np.arange(1, 11, dtype=np.float32)
    assert place_stem(samples, 48000, 1e12, length=5).tolist() == [0] * 5  # 1e12 ms: no 58 TiB of zeros
    assert place_stem(samples, 1000, 3, length=6).tolist() == [0, 0, 0, 1, 2, 3]
    assert place_stem(samples, 1000, -4, length=3).tolist() == [5, 6, 7]


@pytest.mark.parametrize("offset", [1e12, 3.6e6, -1e12])
def test_an_offset_past_the_longest_video_is_refused_at_submit(api, files, offset):
    request = body(files)
    request["faces"][1]["audio_offset_ms"] = offset
    response = httpx.post(api.url + "/jobs/lipsync", json=request, timeout=30)
    if offset < 0:  # not known to be too far until the stem is read: the job says so
        assert response.status_code == 202, response.text
        return
    assert response.status_code == 422, response.text
    message = response.json()["error_message"]
    assert "faces[1].audio_offset_ms" in message and "LIPSYNC_MAX_DURATION_S" in message


@pytest.mark.parametrize("offset,audio,message", [
    (5000, False, "starts the stem after the video ends (3.00 s)"),  # 7 s clip, 3.6e6 ms: a 693 MB mix before
    (5000, True, "starts the stem after the video ends (3.00 s)"),
    (-1e9, False, "cuts the whole stem away"),  # was "…/.stems-…/mix.wav: file not found"
    (-1600.5, True, "cuts the whole stem away"),
])
def test_an_offset_outside_the_video_or_the_stem_is_a_clear_422(api, files, offset, audio, message):
    request = body(files)
    request["faces"][1]["audio_offset_ms"] = offset
    if audio:
        request["audio_url"] = files.url("left.wav")
    response = httpx.post(api.url + "/lipsync", json=request, timeout=120)
    assert response.status_code == 422, response.text
    text = response.json()["error_message"]
    assert message in text and "faces[1].audio_offset_ms" in text
    assert ".stems-" not in text and "/tmp" not in text


def test_a_looped_output_longer_than_the_limit_is_refused(files, tmp_path):
    """LIPSYNC_MAX_DURATION_S=4, sync_mode=loop: the right stem (1.6 s) at 2.5 s runs the mix to 4.1 s
    (before: a 68 s output under a 30 s limit)."""
    settings = Settings(models_dir=tmp_path / "weights", workdir=tmp_path / "work")
    app = create_app(settings, FetchPolicy(allow_private_networks=True), UploadPolicy(allow_private_networks=True),
                     Limits(max_duration_s=4))
    request = body(files) | {"sync_mode": "loop"}
    request["faces"][1]["audio_offset_ms"] = 2500
    with LiveServer(app) as server:
        response = httpx.post(server.url + "/lipsync", json=request, timeout=120)
    assert response.status_code == 422, response.text
    assert "run 4.10 s" in response.json()["error_message"]
    assert "LIPSYNC_MAX_DURATION_S" in response.json()["error_message"]


def test_the_mix_is_trimmed_to_the_video_before_it_is_made(scene, tmp_path):
    folder = scene[0]
    stems = [("faces[0].audio_url", Voice(str(folder / "left.wav"))),
             ("faces[1].audio_url", Voice(str(folder / "right.wav"), 2500))]
    path, _ = mix_stems(stems, tmp_path / "mix.wav", trim_ms=3000)
    assert len(load_audio(path, RATE)) == 3 * RATE  # not 4.1 s
    with pytest.raises(InputError, match="run 4.10 s"):
        mix_stems(stems, tmp_path / "long.wav", max_ms=4000)


def test_auto_mode_refuses_an_offset_past_the_video_before_detecting(scene, tmp_path):
    folder = scene[0]
    voices = {"face_1": Voice(str(folder / "left.wav"), 3e7)}  # before: 6.3 GB, then a 500 MemoryError
    with pytest.raises(InputError, match="faces\\[0\\].audio_offset_ms"):
        lipsync(folder / "two.mp4", None, None, tmp_path / "auto.mp4", Settings(models_dir=tmp_path / "w"),
                voices=voices)


def test_auto_mode_refuses_a_stem_for_someone_it_can_never_find(api, files):
    """Issue 22 item 11. Before: the stem was fetched, never used, and the warning named "bob" as synced."""
    request = {"video_url": files.url("two.mp4"), "auto": True,
               "faces": [{"character_id": "bob", "audio_url": files.url("left.wav")}]}
    before = len(files.requests)
    response = httpx.post(api.url + "/jobs/lipsync", json=request, timeout=30)
    assert response.status_code == 422, response.text
    assert "field 'faces[0].character_id' 'bob' names no one auto mode can find" in response.json()["error_message"]
    assert len(files.requests) == before  # nothing fetched
    with_refs = request | {"characters": [{"id": "bob", "reference_image_url": files.url("bob.jpg")}]}
    assert parse_lipsync(with_refs, require_upload=False).voices["bob"].audio_url == files.url("left.wav")


def test_auto_mode_says_whose_stem_it_could_not_use(scene, tmp_path):
    """A face_N stem for someone not in the video: not read, and the warning says so instead of
    naming them among the synced."""
    folder = scene[0]
    settings = Settings(models_dir=tmp_path / "weights")
    detected = detect_faces(folder / "two.mp4", settings=settings)
    left = sorted(detected["frames"][0]["faces"], key=lambda f: f["bbox"][0])[0]["character_id"]
    voices = {left: Voice(str(folder / "left.wav")), "face_9": Voice(str(folder / "page.wav"))}  # never read
    faces, rule = auto_faces_with_stems(faces_from_detection(detected, False), detected, voices)
    assert f"; {left}: while present" in rule and "face_9: not seen (syncable) in the video" in rule
    assert "face_9" not in {f.character_id for f in faces}
