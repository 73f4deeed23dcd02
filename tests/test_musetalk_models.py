"""MuseTalk 1.5 loaders and engine, with tiny random models saved in the official layouts."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmarks.tiny_models import OFFICIAL_UNET_CONFIG, TINY_UNET_CONFIG
from models.engine import MouthRequest
from models.faces.face import Face
from models.musetalk import (
    CheckpointError,
    MissingWeightsError,
    MuseTalkEngine,
    missing_files,
)
from models.musetalk.audio_features import AudioFeatures, WhisperAudioEncoder
from models.musetalk.crop import (
    crop_geometry,
    face_box_from_landmarks,
    finish_mask,
    landmark_jaw_mask,
    paste_box_for,
)
from models.musetalk.face_parsing import BiSeNet, FaceParser, load_bisenet
from models.musetalk.unet import (
    build_unet,
    load_unet,
    positional_encoding,
    read_unet_config,
)
from models.musetalk.vae import load_vae
from stages.audio import load_audio

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"



def _tiny_vae():
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D"] * 4,
        up_block_types=["UpDecoderBlock2D"] * 4,
        block_out_channels=[8, 16, 16, 16],
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=8,
        sample_size=256,
    )


def _tiny_whisper():
    from transformers import WhisperConfig, WhisperModel

    config = WhisperConfig(
        d_model=384,
        encoder_layers=4,
        encoder_attention_heads=2,
        encoder_ffn_dim=64,
        decoder_layers=1,
        decoder_attention_heads=2,
        decoder_ffn_dim=64,
        vocab_size=64,
        num_mel_bins=80,
        max_source_positions=1500,
        max_target_positions=32,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        decoder_start_token_id=1,
    )
    return WhisperModel(config)


def _resnet18_state(net: BiSeNet) -> dict[str, torch.Tensor]:
    """torchvision's resnet18 file layout: the backbone keys plus the ImageNet classifier."""
    state = {k: v.clone() for k, v in net.cp.resnet.state_dict().items() if not k.endswith("num_batches_tracked")}
    state["fc.weight"] = torch.randn(1000, 512)
    state["fc.bias"] = torch.zeros(1000)
    return state


def _write_models(root: Path, with_parsing: bool) -> dict[str, int]:
    """Save tiny random models into `root` in the official MODELS_DIR layout; return their parameter counts."""
    from transformers import WhisperFeatureExtractor

    torch.manual_seed(0)
    (root / "musetalkV15").mkdir(parents=True)
    (root / "musetalkV15" / "musetalk.json").write_text(json.dumps(TINY_UNET_CONFIG))
    unet = build_unet({k: v for k, v in TINY_UNET_CONFIG.items() if not k.startswith("_")})
    torch.save(unet.state_dict(), root / "musetalkV15" / "unet.pth")
    vae = _tiny_vae()
    vae.save_pretrained(root / "sd-vae")
    whisper = _tiny_whisper()
    whisper.save_pretrained(root / "whisper")
    WhisperFeatureExtractor().save_pretrained(root / "whisper")
    counts = {
        "unet": sum(p.numel() for p in unet.parameters()),
        "vae": sum(p.numel() for p in vae.parameters()),
        "whisper_encoder": sum(p.numel() for p in whisper.encoder.parameters()),
    }
    if with_parsing:
        net = BiSeNet()
        (root / "face-parse-bisent").mkdir()
        torch.save(net.state_dict(), root / "face-parse-bisent" / "79999_iter.pth")
        torch.save(_resnet18_state(net), root / "face-parse-bisent" / "resnet18-5c106cde.pth")
        counts["bisenet"] = sum(p.numel() for p in net.parameters())
    return counts


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("models")
    _write_models(root, with_parsing=True)
    return root


@pytest.fixture(scope="module")
def models_dir_no_parsing(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("models_noparse")
    _write_models(root, with_parsing=False)
    return root


@pytest.fixture(scope="module")
def real_faces() -> list[tuple[np.ndarray, Face]]:
    """Six frames of d12.mp4 with dlib's 68 landmarks."""
    video = DATA / "video" / "d12.mp4"
    if not video.exists():
        pytest.skip(f"sample media missing: {video}")
    import av
    import dlib
    import face_recognition_models

    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(face_recognition_models.pose_predictor_model_location())
    out = []
    with av.open(str(video)) as container:
        for frame in container.decode(container.streams.video[0]):
            image = frame.to_ndarray(format="rgb24")
            rect = detector(image, 0)[0]
            shape = predictor(image, rect)
            lm = np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float32)
            kps = np.stack([lm[36:42].mean(0), lm[42:48].mean(0), lm[30], lm[48], lm[54]])
            bbox = np.array([rect.left(), rect.top(), rect.right(), rect.bottom()], dtype=np.float32)
            out.append((image, Face(bbox=bbox, score=1.0, kps=kps, landmarks=lm)))
            if len(out) == 6:
                break
    return out


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    path = DATA / "audio" / "yongen.wav"
    if not path.exists():
        pytest.skip(f"sample media missing: {path}")
    return load_audio(path, 16000)[: 16000 * 2]


# ---------------------------------------------------------------- UNet


def test_official_config_gives_the_official_tensor_and_parameter_counts():
    with torch.device("meta"):
        unet = build_unet({k: v for k, v in OFFICIAL_UNET_CONFIG.items() if not k.startswith("_")})
    state = unet.state_dict()
    assert len(state) == 686
    assert sum(v.numel() for v in state.values()) == 849_947_844


def test_unet_loads_plain_state_dict_and_maps_latents(models_dir):
    unet = load_unet(models_dir / "musetalkV15" / "musetalk.json", models_dir / "musetalkV15" / "unet.pth")
    saved = torch.load(models_dir / "musetalkV15" / "unet.pth", weights_only=True)
    assert torch.equal(unet.state_dict()["conv_in.weight"], saved["conv_in.weight"])
    assert unet.conv_in.in_channels == 8 and unet.conv_out.out_channels == 4
    out = unet(torch.randn(2, 8, 32, 32), torch.zeros(1, dtype=torch.long), encoder_hidden_states=torch.randn(2, 50, 384)).sample
    assert out.shape == (2, 4, 32, 32)
    assert torch.isfinite(out).all()


def test_unet_missing_key_names_file_and_key(models_dir, tmp_path):
    state = torch.load(models_dir / "musetalkV15" / "unet.pth", weights_only=True)
    del state["conv_out.bias"]
    bad = tmp_path / "unet.pth"
    torch.save(state, bad)
    with pytest.raises(CheckpointError) as err:
        load_unet(models_dir / "musetalkV15" / "musetalk.json", bad)
    assert str(bad) in str(err.value)
    assert "conv_out.bias" in str(err.value)
    assert "1 missing keys" in str(err.value)


def test_unet_accepts_module_prefix(models_dir, tmp_path):
    state = torch.load(models_dir / "musetalkV15" / "unet.pth", weights_only=True)
    prefixed = tmp_path / "unet.pth"
    torch.save({f"module.{k}": v for k, v in state.items()}, prefixed)
    unet = load_unet(models_dir / "musetalkV15" / "musetalk.json", prefixed)
    assert torch.equal(unet.state_dict()["conv_out.bias"], state["conv_out.bias"])


def test_unet_shape_mismatch_and_bad_json_are_named(models_dir, tmp_path):
    config = tmp_path / "musetalk.json"
    config.write_text(json.dumps({**TINY_UNET_CONFIG, "cross_attention_dim": 768}))
    with pytest.raises(CheckpointError, match="wrong shapes"):
        load_unet(config, models_dir / "musetalkV15" / "unet.pth")
    config.write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        read_unet_config(config)


def test_positional_encoding_values():
    pe = positional_encoding(50, 384)
    assert pe.shape == (50, 384)
    assert torch.allclose(pe[0, 0::2], torch.zeros(192)) and torch.allclose(pe[0, 1::2], torch.ones(192))
    assert math.isclose(float(pe[7, 0]), math.sin(7.0), abs_tol=1e-6)
    assert math.isclose(float(pe[7, 3]), math.cos(7.0 * 10000 ** (-2 / 384)), abs_tol=1e-6)


# ---------------------------------------------------------------- VAE


def test_vae_loads_diffusers_layout_and_legacy_attention_names(models_dir, tmp_path):
    vae, scaling = load_vae(models_dir / "sd-vae")
    assert scaling == pytest.approx(0.18215)
    reference = vae.state_dict()
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    config = json.loads((models_dir / "sd-vae" / "config.json").read_text())
    config.pop("scaling_factor", None)  # the 2022 sd-vae-ft-mse config has none
    (legacy / "config.json").write_text(json.dumps(config))
    old = {}
    for key, value in reference.items():
        for new, was in (("to_q", "query"), ("to_k", "key"), ("to_v", "value"), ("to_out.0", "proj_attn")):
            if ".mid_block.attentions." in key and f".{new}." in key:
                key = key.replace(f".{new}.", f".{was}.")
        old[key] = value
    assert any(k.endswith("attentions.0.query.weight") for k in old)
    torch.save(old, legacy / "diffusion_pytorch_model.bin")
    loaded, legacy_scaling = load_vae(legacy)
    assert legacy_scaling == pytest.approx(0.18215)
    for key, value in loaded.state_dict().items():
        assert torch.equal(value, reference[key]), key


def test_vae_missing_weights_named(tmp_path, models_dir):
    (tmp_path / "config.json").write_text((models_dir / "sd-vae" / "config.json").read_text())
    with pytest.raises(CheckpointError, match="diffusion_pytorch_model"):
        load_vae(tmp_path)


# ---------------------------------------------------------------- audio


@pytest.fixture(scope="module")
def audio_encoder(models_dir) -> WhisperAudioEncoder:
    return WhisperAudioEncoder.load(models_dir / "whisper", torch.device("cpu"), torch.float32)


def test_whisper_states_are_stacked_trimmed_and_padded(audio_encoder, speech):
    states = audio_encoder.stacked_states(speech)
    assert states.shape == (100, 5, 384)  # 2.0 s * 50
    features = audio_encoder.features(speech, 16000, 25.0)
    assert features.padded.shape == (4 + 100 + 12, 5, 384)  # ceil(50/25)*2 left, *3*2 right
    assert torch.equal(features.padded[4:104], states)
    assert not features.padded[:4].any() and not features.padded[104:].any()
    odd = audio_encoder.features(speech, 16000, 30.0)
    assert odd.padded.shape[0] == 4 + 100 + 12  # ceil(50/30) = 2 as well
    slow = audio_encoder.features(speech, 16000, 12.0)
    assert slow.padded.shape[0] == 10 + 100 + 30  # ceil(50/12) = 5


def test_windows_follow_time_not_frame_count(audio_encoder, speech):
    features = audio_encoder.features(speech, 16000, 25.0)
    window = features.windows([0.0, 40.0, 1000.0, 60_000.0])
    assert window.shape == (4, 50, 384)
    per_frame = window.reshape(4, 10, 5, 384)
    assert torch.equal(per_frame[0], features.padded[0:10])
    assert torch.equal(per_frame[1], features.padded[2:12])  # 40 ms -> feature frame 2
    assert torch.equal(per_frame[2], features.padded[50:60])
    assert not per_frame[3].any()  # a minute in: past the audio, zeros like the padding


def test_audio_longer_than_one_chunk_is_processed_in_30s_chunks(audio_encoder):
    rng = np.random.default_rng(0)
    audio = (rng.standard_normal(16000 * 31) * 0.05).astype(np.float32)
    states = audio_encoder.stacked_states(audio)
    assert states.shape == (1550, 5, 384)
    first = audio_encoder.stacked_states(audio[: 16000 * 30])
    assert torch.allclose(states[:1500], first, atol=1e-5)


def test_whisper_loader_accepts_the_conditional_generation_layout(models_dir, audio_encoder, tmp_path):
    """openai/whisper-tiny's pytorch_model.bin holds WhisperForConditionalGeneration keys (model.encoder.*, proj_out)."""
    from safetensors.torch import load_file

    for name in ("config.json", "preprocessor_config.json"):
        (tmp_path / name).write_text((models_dir / "whisper" / name).read_text())
    state = {f"model.{k}": v for k, v in load_file(str(models_dir / "whisper" / "model.safetensors")).items()}
    state["proj_out.weight"] = state["model.decoder.embed_tokens.weight"]
    torch.save(state, tmp_path / "pytorch_model.bin")
    loaded = WhisperAudioEncoder.load(tmp_path, torch.device("cpu"), torch.float32)
    for key, value in audio_encoder.encoder.state_dict().items():
        assert torch.equal(loaded.encoder.state_dict()[key], value), key


def test_whisper_loader_rejects_missing_encoder_key(models_dir, tmp_path):
    from safetensors.torch import load_file, save_file

    for name in ("config.json", "preprocessor_config.json"):
        (tmp_path / name).write_text((models_dir / "whisper" / name).read_text())
    state = load_file(str(models_dir / "whisper" / "model.safetensors"))
    del state["encoder.layer_norm.weight"]
    save_file(state, str(tmp_path / "model.safetensors"))
    with pytest.raises(CheckpointError) as err:
        WhisperAudioEncoder.load(tmp_path, torch.device("cpu"), torch.float32)
    assert "layer_norm.weight" in str(err.value) and "model.safetensors" in str(err.value)


# ---------------------------------------------------------------- crop and masks


def test_crop_geometry_follows_musetalk_15():
    lm = np.zeros((68, 2), dtype=np.float32)
    lm[:, 0] = np.linspace(100, 200, 68)
    lm[:, 1] = 150
    lm[8] = (150, 260)  # chin
    lm[29] = (150, 180)  # nose
    box = face_box_from_landmarks(lm, (480, 640, 3))
    assert box == (100, 100, 200, 270)  # y1 = 180 - (260 - 180); y2 = 260 + 10
    assert paste_box_for(box) == (23, 58, 277, 312)  # half = int(170 // 2 * 1.5) = 127
    assert face_box_from_landmarks(lm, (265, 640, 3))[3] == 265  # clipped to the frame
    shifted = lm.copy()
    shifted[:, 0] -= 120  # starts left of the frame: the detector box is used
    assert face_box_from_landmarks(shifted, (480, 640, 3), np.array([5, 90, 95, 250])) == (5, 90, 95, 260)


def test_landmark_mask_covers_mouth_not_nose_or_eyes(real_faces):
    image, face = real_faces[0]
    geometry = crop_geometry(face.landmarks, image.shape, face.bbox)
    mask = landmark_jaw_mask(face.landmarks, geometry)
    px, py = geometry.paste_box[:2]
    mouth = face.landmarks[48:68].mean(0).astype(int) - (px, py)
    nose_tip = face.landmarks[30].astype(int) - (px, py)
    chin = face.landmarks[8].astype(int) - (px, py)
    eye = face.landmarks[36].astype(int) - (px, py)
    assert mask[mouth[1], mouth[0]] == 255
    assert mask[chin[1] + 5, chin[0]] == 255  # room below the chin for an opening mouth
    assert mask[nose_tip[1], nose_tip[0]] == 0
    alpha = finish_mask(mask, geometry)
    assert alpha[mouth[1], mouth[0]] > 0.99
    assert alpha[eye[1], eye[0]] == 0.0
    assert alpha[chin[1] + 40, chin[0]] == 0.0  # below the face box: untouched


def test_bisenet_loads_official_layout_and_jaw_mode(tmp_path):
    torch.manual_seed(1)
    net = BiSeNet()
    torch.save(net.state_dict(), tmp_path / "79999_iter.pth")
    torch.save(_resnet18_state(net), tmp_path / "resnet18-5c106cde.pth")
    loaded = load_bisenet(tmp_path / "79999_iter.pth", tmp_path / "resnet18-5c106cde.pth")
    assert torch.equal(loaded.state_dict()["conv_out.conv_out.weight"], net.state_dict()["conv_out.conv_out.weight"])
    assert sum(p.numel() for p in loaded.parameters()) == sum(p.numel() for p in net.parameters())

    state = net.state_dict()
    del state["ffm.conv1.weight"]
    torch.save(state, tmp_path / "broken.pth")
    with pytest.raises(CheckpointError, match=r"broken\.pth.*ffm\.conv1\.weight"):
        load_bisenet(tmp_path / "broken.pth", tmp_path / "resnet18-5c106cde.pth")

    parser = FaceParser(loaded, torch.device("cpu"))
    parsing = np.zeros((512, 512), dtype=np.uint8)
    parsing[100:300, 150:362] = 1  # skin
    parsing[150:250, 230:282] = 10  # nose
    parsing[320:340, 220:292] = 12  # upper lip, below the skin block
    mask = parser.jaw_mask(parsing)
    assert mask[200, 256] == 0  # nose excluded
    assert mask[330, 256] == 255  # lip kept
    assert mask[120, 256] == 255  # skin in the central band kept
    assert mask[90, 256] == 255 and mask[80, 256] == 0  # the cone kernel reaches 16 px above the skin
    assert mask[303, 256] == 255 and mask[310, 256] == 0  # and at most 6 px below it
    assert mask[200, 160] == 0 and mask[200, 180] == 255  # cheeks eroded by 2 x 17 px sideways
    assert mask[450, 20] == 0

    on_device = parser.jaw_mask_tensor(torch.from_numpy(np.stack([parsing, parsing.T.copy()])))
    assert np.array_equal(on_device[0].numpy(), mask)  # the same morphology as OpenCV's
    assert np.array_equal(on_device[1].numpy(), parser.jaw_mask(parsing.T.copy()))


# ---------------------------------------------------------------- engine


def _requests(real_faces, strength: float = 1.0) -> list[MouthRequest]:
    return [
        MouthRequest(frame_index=i, time_ms=i * 40.0, image=image, face=face, track_key="a", strength=strength)
        for i, (image, face) in enumerate(real_faces[:4])
    ]


def test_engine_load_reports_missing_files(tmp_path):
    with pytest.raises(MissingWeightsError) as err:
        MuseTalkEngine.load(tmp_path)
    message = str(err.value)
    for name in ("musetalkV15/unet.pth", "musetalkV15/musetalk.json", "sd-vae/config.json", "whisper/config.json"):
        assert name in message
    assert "download_models.py" in message
    assert len(missing_files(tmp_path)) == 7


def test_engine_renders_patches_with_the_paste_geometry(models_dir, real_faces, speech):
    engine = MuseTalkEngine.load(models_dir, device="cpu")
    assert missing_files(models_dir) == []
    assert engine.mask_source == "face-parsing" and engine.batch_size == 4
    features = engine.prepare_audio(speech, 16000, 25.0)
    assert isinstance(features, AudioFeatures)
    requests = _requests(real_faces)
    patches = engine.render(requests, features)
    assert len(patches) == len(requests)
    for request, patch in zip(requests, patches):
        geometry = crop_geometry(request.face.landmarks, request.image.shape, request.face.bbox)
        side = geometry.paste_side
        assert (patch.x, patch.y) == geometry.paste_box[:2]
        assert patch.pixels.shape == (side, side, 3) and patch.pixels.dtype == np.uint8
        assert patch.alpha.shape == (side, side) and patch.alpha.dtype == np.float32
        assert 0.0 <= patch.alpha.min() and patch.alpha.max() <= 1.0
        assert not patch.alpha[: side // 2 - side // 20].any()  # upper half untouched (minus feathering)
        fx1, fy1, fx2, fy2 = geometry.face_in_paste
        original = request.image[patch.y : patch.y + side, patch.x : patch.x + side]
        assert np.array_equal(patch.pixels[:fy1], original[:fy1])  # outside the face box: the frame itself
        assert not np.array_equal(patch.pixels[fy1:fy2, fx1:fx2], original[fy1:fy2, fx1:fx2])
    again = engine.render(requests[:2], features)
    # Same patch whatever the batch make-up, up to rounding: CPU convolution kernels block a
    # batch of 2 and a batch of 4 differently, so float sums differ in the last bits and a
    # value near .5 can round to the next grey level (seen: 30 of 489,648 values, by 1).
    difference = np.abs(again[1].pixels.astype(np.int16) - patches[1].pixels.astype(np.int16))
    assert difference.max() <= 1 and np.count_nonzero(difference) <= difference.size // 1000


@pytest.mark.parametrize("with_parsing", [True, False])
def test_engine_renders_tensor_frames_on_the_device_like_numpy_frames(models_dir, models_dir_no_parsing, real_faces,
                                                                     speech, with_parsing):
    engine = MuseTalkEngine.load(models_dir if with_parsing else models_dir_no_parsing, device="cpu")
    features = engine.prepare_audio(speech, 16000, 25.0)
    requests = _requests(real_faces, strength=0.8)[:2]
    on_host = engine.render(requests, features)
    tensors = [MouthRequest(r.frame_index, r.time_ms, torch.from_numpy(r.image), r.face, r.track_key, r.strength)
               for r in requests]
    on_device = engine.render(tensors, features)
    for host, device in zip(on_host, on_device):
        assert isinstance(device.pixels, torch.Tensor) and device.pixels.dtype == torch.uint8
        assert isinstance(device.alpha, torch.Tensor) and device.alpha.dtype == torch.float32
        assert (device.x, device.y) == (host.x, host.y) and tuple(device.alpha.shape) == host.alpha.shape
        assert np.abs(device.alpha.numpy() - host.alpha).max() < 0.05  # parsing sees bilinear-resized input
        if not with_parsing:  # (random BiSeNet weights may parse no skin at all)
            assert device.alpha.max() == pytest.approx(0.8, abs=1e-3)
        # only the UNet's input crop differs (bicubic vs Lanczos): the pictures stay close
        assert np.abs(device.pixels.numpy().astype(int) - host.pixels.astype(int)).mean() < 4
    with pytest.raises(ValueError, match="mixes"):
        engine.render([requests[0], tensors[1]], features)


def test_engine_without_parsing_uses_landmarks_strength_and_clipping(models_dir_no_parsing, real_faces, speech):
    engine = MuseTalkEngine.load(models_dir_no_parsing, device="cpu", batch_size=2)
    assert engine.mask_source == "landmarks" and engine.batch_size == 2
    features = engine.prepare_audio(speech, 16000, 25.0)
    image, face = real_faces[0]
    off = 150  # cut the frame so the paste box runs past its top-left corner
    cut = np.ascontiguousarray(image[off:, off:])
    moved = Face(bbox=face.bbox - off, score=1.0, kps=face.kps - off, landmarks=face.landmarks - off)
    requests = [
        MouthRequest(frame_index=0, time_ms=0.0, image=image, face=face),
        MouthRequest(frame_index=0, time_ms=0.0, image=cut, face=moved, strength=0.5),
        MouthRequest(frame_index=1, time_ms=40.0, image=image, face=face, strength=0.0),
    ]
    full, clipped, silent = engine.render(requests, features)
    assert full.alpha.max() > 0.9
    mouth = face.landmarks[62].astype(int)
    assert full.alpha[mouth[1] - full.y, mouth[0] - full.x] > 0.9
    assert (clipped.x, clipped.y) == (0, 0)
    assert clipped.pixels.shape[:2] == clipped.alpha.shape
    assert clipped.alpha.shape[0] <= cut.shape[0] and clipped.alpha.shape[1] <= cut.shape[1]
    assert clipped.alpha.max() == pytest.approx(0.5, abs=1e-3)
    assert not silent.alpha.any()
