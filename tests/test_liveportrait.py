"""LivePortrait: official key structure, strict loading, mouth-only animation on real faces."""
from __future__ import annotations

from pathlib import Path

import av
import dlib
import numpy as np
import pytest
import torch

from models.liveportrait import (
    LIP_ROWS,
    AnimateRequest,
    CheckpointError,
    LivePortraitAnimator,
    load_liveportrait,
)
from models.liveportrait.config import (
    AppearanceConfig,
    DenseMotionConfig,
    LivePortraitConfig,
    MotionConfig,
    SpadeConfig,
    WarpingConfig,
)
from models.liveportrait.crop import (
    CROP_SIDE_PER_EYE_MOUTH,
    crop_face,
    crop_transform,
    feathered_mask,
    five_points_from_68,
    warp_affine_torch,
)
from models.liveportrait.loader import (
    LIVEPORTRAIT_FILES,
    RETARGETING_FILE,
    WARPING_FILE,
    build_networks,
    save_liveportrait,
)
from models.liveportrait.smoothing import (
    ExpressionFilter,
    SmoothingConfig,
    TrackSmoother,
)

TINY = LivePortraitConfig(
    appearance=AppearanceConfig(block_expansion=8, max_features=64, reshape_channel=16, reshape_depth=4, num_resblocks=1),
    motion=MotionConfig(depths=(1, 1, 1, 1), dims=(8, 8, 16, 16)),
    warping=WarpingConfig(
        block_expansion=8,
        max_features=64,
        reshape_channel=16,
        dense_motion=DenseMotionConfig(block_expansion=8, max_features=32, num_blocks=2, reshape_depth=4, compress=1),
    ),
    spade=SpadeConfig(block_expansion=8, max_features=64, out_channels=8, spade_hidden=16),
    input_size=64,
)


def _randomise_batchnorm(nets) -> None:
    """Give BatchNorm running stats non-default values so a load that skipped them would show."""
    gen = torch.Generator().manual_seed(3)
    for module in nets.modules().values():
        for m in module.modules():
            if isinstance(m, (torch.nn.BatchNorm2d, torch.nn.BatchNorm3d)):
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=gen) + 0.5)


@pytest.fixture(scope="module")
def tiny_models_dir(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    nets = build_networks(TINY)
    _randomise_batchnorm(nets)
    root = tmp_path_factory.mktemp("models")
    save_liveportrait(nets, root, ddp_prefix=True)
    return root


@pytest.fixture(scope="module")
def d10_frames(data_dir) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Frames 0, 6 and 12 of d10.mp4 (a woman talking) and their dlib 68 landmarks."""
    frames = []
    with av.open(str(data_dir / "video" / "d10.mp4")) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i % 6 == 0:
                frames.append(frame.to_ndarray(format="rgb24"))
            if len(frames) == 3:
                break
    return frames, [_landmarks68(f) for f in frames]


def _landmarks68(image: np.ndarray) -> np.ndarray:
    import face_recognition_models

    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(face_recognition_models.pose_predictor_model_location())
    boxes = detector(image, 0)
    assert boxes, "dlib found no face in a sample frame"
    box = max(boxes, key=lambda b: b.width() * b.height())
    return np.array([[p.x, p.y] for p in predictor(image, box).parts()], np.float32)


# ---------------------------------------------------------------- architecture


def test_full_size_networks_have_the_official_shapes() -> None:
    nets = build_networks(LivePortraitConfig())
    shapes = {name: {k: tuple(v.shape) for k, v in m.state_dict().items()} for name, m in nets.modules().items()}
    # M: ConvNeXtV2-tiny under `detector.`, heads 66 bins, 21x3 kp and exp
    assert shapes["motion"]["detector.downsample_layers.0.0.weight"] == (96, 3, 4, 4)
    assert shapes["motion"]["detector.stages.2.8.grn.gamma"] == (1, 1, 1, 1536)
    assert shapes["motion"]["detector.fc_pitch.weight"] == (66, 768)
    assert shapes["motion"]["detector.fc_exp.weight"] == (63, 768)
    assert shapes["motion"]["detector.fc_kp.weight"] == (63, 768)
    assert shapes["motion"]["detector.fc_scale.weight"] == (1, 768)
    # W: dense motion input (21+1)*(4+1) = 110 channels, occlusion from (32+110)*16 = 2272
    assert shapes["warping"]["dense_motion_network.hourglass.encoder.down_blocks.0.conv.weight"] == (64, 110, 3, 3, 3)
    assert shapes["warping"]["dense_motion_network.occlusion.weight"] == (1, 2272, 7, 7)
    assert shapes["warping"]["dense_motion_network.mask.weight"] == (22, 142, 7, 7, 7)
    assert shapes["warping"]["dense_motion_network.norm.running_var"] == (4,)
    assert shapes["warping"]["third.conv.weight"] == (256, 512, 3, 3)
    # G: spectral norm keys, 256 -> 512 channels, pixel-shuffle head to 3*2*2
    assert shapes["spade"]["G_middle_0.conv_0.weight_orig"] == (512, 512, 3, 3)
    assert shapes["spade"]["G_middle_0.conv_0.weight_u"] == (512,)
    assert shapes["spade"]["up_0.conv_s.weight_orig"] == (256, 512, 1, 1)
    assert shapes["spade"]["up_1.norm_0.mlp_shared.0.weight"] == (128, 256, 3, 3)
    assert shapes["spade"]["conv_img.0.weight"] == (12, 64, 3, 3)
    # F: 6 residual 3D blocks on 32 channels
    assert shapes["appearance"]["resblocks_3d.3dr5.conv2.weight"] == (32, 32, 3, 3, 3)
    assert shapes["appearance"]["second.weight"] == (512, 256, 1, 1)
    # S/R MLPs: 126 -> 65, 65 -> 63, 66 -> 63
    assert shapes["stitching"]["mlp.0.weight"] == (128, 126) and shapes["stitching"]["mlp.6.weight"] == (65, 64)
    assert shapes["lip"]["mlp.0.weight"] == (128, 65) and shapes["lip"]["mlp.6.weight"] == (63, 64)
    assert shapes["eye"]["mlp.0.weight"] == (256, 66) and shapes["eye"]["mlp.10.weight"] == (63, 64)
    assert LivePortraitConfig().output_size == 512
    counts = {name: len(s) for name, s in shapes.items()}
    assert counts == {"appearance": 107, "motion": 212, "warping": 97, "spade": 182, "stitching": 8, "lip": 8, "eye": 12}


# ---------------------------------------------------------------- loading


def test_loader_reads_official_layout_with_module_prefix(tiny_models_dir: Path) -> None:
    for rel in LIVEPORTRAIT_FILES:
        assert (tiny_models_dir / rel).is_file()
    bundle = torch.load(tiny_models_dir / RETARGETING_FILE, weights_only=True)
    assert set(bundle) == {"retarget_shoulder", "retarget_mouth", "retarget_eye"}
    assert all(k.startswith("module.mlp.") for k in bundle["retarget_mouth"])
    nets = load_liveportrait(tiny_models_dir, TINY)
    saved = torch.load(tiny_models_dir / WARPING_FILE, weights_only=True)
    for key, value in nets.warping.state_dict().items():
        assert torch.equal(value, saved[key]), key
    assert torch.equal(nets.lip.mlp[0].weight, bundle["retarget_mouth"]["module.mlp.0.weight"])
    assert not nets.spade.training


def test_missing_key_names_the_file_and_key(tiny_models_dir: Path, tmp_path: Path) -> None:
    for rel in LIVEPORTRAIT_FILES:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes((tiny_models_dir / rel).read_bytes())
    state = torch.load(tmp_path / WARPING_FILE, weights_only=True)
    del state["dense_motion_network.occlusion.weight"]
    torch.save(state, tmp_path / WARPING_FILE)
    with pytest.raises(CheckpointError) as err:
        load_liveportrait(tmp_path, TINY)
    assert "warping_module.pth" in str(err.value)
    assert "dense_motion_network.occlusion.weight" in str(err.value)
    assert "1 missing keys" in str(err.value)


def test_retargeting_without_mouth_entry_or_wrong_shape_is_named(tiny_models_dir: Path, tmp_path: Path) -> None:
    for rel in LIVEPORTRAIT_FILES:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes((tiny_models_dir / rel).read_bytes())
    bundle = torch.load(tmp_path / RETARGETING_FILE, weights_only=True)
    bundle["retarget_mouth"]["module.mlp.0.weight"] = torch.zeros(128, 64)
    torch.save(bundle, tmp_path / RETARGETING_FILE)
    with pytest.raises(CheckpointError) as err:
        load_liveportrait(tmp_path, TINY)
    message = str(err.value)
    assert "stitching_retargeting_module.pth" in message and "retarget_mouth" in message
    assert "mlp.0.weight has shape (128, 64), expected (128, 65)" in message
    del bundle["retarget_mouth"]
    torch.save(bundle, tmp_path / RETARGETING_FILE)
    with pytest.raises(CheckpointError, match="no 'retarget_mouth' entry"):
        load_liveportrait(tmp_path, TINY)


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="appearance_feature_extractor.pth: file not found"):
        LivePortraitAnimator.load(tmp_path, config=TINY)


# ---------------------------------------------------------------- geometry


def test_crop_cancels_roll_and_matches_the_official_crop_size(d10_frames) -> None:
    import cv2

    frames, landmarks = d10_frames
    image, lm = frames[0], landmarks[0]
    kps = five_points_from_68(lm)
    crop = crop_face(image, kps, 512)
    m = crop.to_crop
    warped = kps @ m[:, :2].T + m[:, 2]
    eyes, mouth = (warped[0] + warped[1]) / 2, (warped[3] + warped[4]) / 2
    assert eyes[0] == pytest.approx(256, abs=0.5) and mouth[0] == pytest.approx(256, abs=0.5)
    assert mouth[1] - eyes[1] == pytest.approx(512 / CROP_SIDE_PER_EYE_MOUTH, abs=0.5)
    # rotate the frame by 25 degrees: the crop of the rotated face is the same picture
    rot = cv2.getRotationMatrix2D((256, 256), 25, 1.0)
    rotated = cv2.warpAffine(image, rot, (512, 512))
    kps_rot = kps @ rot[:, :2].T + rot[:, 2]
    crop_rot = crop_face(rotated, kps_rot, 512)
    centre = slice(160, 352)
    diff = np.abs(crop.image[centre, centre].astype(int) - crop_rot.image[centre, centre].astype(int))
    assert diff.mean() < 6
    # official rule on 68 points: side = 2.3 * max extent of the roll-free landmark box
    uy = ((kps[3] + kps[4]) / 2) - ((kps[0] + kps[1]) / 2)
    uy = uy / np.linalg.norm(uy)
    ux = np.array([uy[1], -uy[0]])
    extent = max(np.ptp(lm @ ux), np.ptp(lm @ uy))
    official_side = 2.3 * extent
    our_side = 512 / np.linalg.norm(m[0, :2])
    assert our_side == pytest.approx(official_side, rel=0.12)


def test_torch_warp_matches_cv2(d10_frames) -> None:
    import cv2

    frames, landmarks = d10_frames
    m = crop_transform(five_points_from_68(landmarks[1]), 256)
    expected = cv2.warpAffine(frames[1], m, (256, 256), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    image = torch.from_numpy(frames[1]).permute(2, 0, 1)[None].float()
    got = warp_affine_torch(image, m[None], (256, 256))[0].permute(1, 2, 0).numpy()
    assert np.abs(got - expected).max() < 1.0  # cv2 interpolates in fixed point
    assert np.abs(got - expected).mean() < 0.3


def test_feathered_masks_are_soft_and_bounded() -> None:
    full = feathered_mask(512, "crop")
    lower = feathered_mask(512, "lower_face")
    assert full[256, 256] == pytest.approx(1.0, abs=1e-5) and full[0, 0] < 1e-4 and full[0, 256] < 2e-3
    assert 0.05 < full[256, 32] < 0.95  # feathered edge
    mouth_y = int(256 + 512 / CROP_SIDE_PER_EYE_MOUTH)
    assert lower[mouth_y, 256] == pytest.approx(1.0, abs=1e-3)
    assert lower[150, 256] < 1e-3  # the eyes and above are not pasted
    assert ((lower > 0.05) & (lower < 0.95)).sum() > 1000


# ---------------------------------------------------------------- smoothing


def test_expression_filter_follows_the_kalman_recursion() -> None:
    cfg = SmoothingConfig(process_variance=1e-5, observation_variance=1e-5)
    filt = ExpressionFilter(cfg)
    assert torch.equal(filt.update(torch.zeros(6, 3), 0), torch.zeros(6, 3))
    outs = [filt.update(torch.ones(6, 3), i) for i in range(1, 60)]
    # first step: prior var = r + q, gain = 2/3
    assert outs[0][0, 0].item() == pytest.approx(2 / 3, rel=1e-5)
    assert outs[-1][0, 0].item() == pytest.approx(1.0, abs=1e-6)
    gains = []
    filt2 = ExpressionFilter(cfg)
    filt2.update(torch.zeros(1), 0)
    prev = 0.0
    for i in range(1, 40):
        val = filt2.update(torch.tensor([float(i % 2)]), i).item()
        if i > 30:
            gains.append((val - prev) / (float(i % 2) - prev))
        prev = val
    assert np.mean(gains) == pytest.approx(cfg.steady_gain(), rel=1e-3)
    # a gap in frame indices restarts the filter at the new observation
    assert filt.update(torch.full((6, 3), 5.0), 100)[0, 0].item() == 5.0


def test_track_smoother_keeps_tracks_apart_and_forgets_the_oldest() -> None:
    smoother = TrackSmoother(SmoothingConfig(process_variance=1e-5, observation_variance=1e-5), max_tracks=3)
    smoother.update("job1:0:a", torch.zeros(2), 0)
    assert smoother.update("job2:0:a", torch.ones(2), 1)[0].item() == 1.0  # its own first observation
    assert smoother.update("job1:0:a", torch.ones(2), 1)[0].item() == pytest.approx(2 / 3, rel=1e-5)
    for job in (3, 4):
        smoother.update(f"job{job}:0:a", torch.ones(2), 0)
    assert list(smoother._filters) == ["job1:0:a", "job3:0:a", "job4:0:a"]  # job2 was least recently used


# ---------------------------------------------------------------- animation


@pytest.fixture(scope="module")
def animator(tiny_models_dir: Path) -> LivePortraitAnimator:
    torch.manual_seed(0)
    return LivePortraitAnimator.load(tiny_models_dir, device="cpu", config=TINY,
                                     smoothing=SmoothingConfig(enabled=False))


def test_only_lip_rows_follow_the_driving_face(animator: LivePortraitAnimator, d10_frames) -> None:
    frames, landmarks = d10_frames
    size = animator.output_size
    src = crop_face(frames[0], five_points_from_68(landmarks[0]), size).image
    drv = crop_face(frames[2], five_points_from_68(landmarks[2]), size).image
    seen: dict[str, torch.Tensor] = {}

    def hook(_module, _args, kwargs):
        seen["x_d"], seen["x_s"] = kwargs["kp_driving"].clone(), kwargs["kp_source"].clone()

    stitching = animator.models.stitching.mlp[-1]
    saved = stitching.weight.detach().clone(), stitching.bias.detach().clone()
    handle = animator.models.warping.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        with torch.no_grad():
            stitching.weight.zero_()
            stitching.bias.zero_()
        animator.animate([src], [drv])
        lip = list(LIP_ROWS)
        other = [k for k in range(21) if k not in LIP_ROWS]
        assert torch.equal(seen["x_d"][:, other], seen["x_s"][:, other])
        assert not torch.allclose(seen["x_d"][:, lip], seen["x_s"][:, lip])
        # the driving lip rows equal the driving face's own posed-by-source expression
        src_info, drv_info = animator.keypoint_info([src]), animator.keypoint_info([drv])
        expected = src_info.with_exp(torch.where(
            torch.isin(torch.arange(21), torch.tensor(lip))[None, :, None], drv_info.exp, src_info.exp)).transformed()
        assert torch.allclose(seen["x_d"], expected, atol=1e-5)
        animator.animate([src], [src])
        assert torch.equal(seen["x_d"], seen["x_s"])  # same face: no motion at all
    finally:
        handle.remove()
        with torch.no_grad():
            stitching.weight.copy_(saved[0])
            stitching.bias.copy_(saved[1])


def test_render_pastes_a_feathered_mouth_patch(animator: LivePortraitAnimator, d10_frames) -> None:
    frames, landmarks = d10_frames
    kps = five_points_from_68(landmarks[0])
    requests = [
        AnimateRequest(frames[0], frames[1], kps, track_key="t", frame_index=0, strength=1.0),
        AnimateRequest(frames[0], frames[1], kps, track_key="u", frame_index=0, strength=0.5),
    ]
    full, half = animator.render(requests)
    assert full is not None and half is not None
    assert np.allclose(half.alpha, 0.5 * full.alpha, atol=1e-6)
    assert full.alpha.max() == pytest.approx(1.0, abs=1e-3)
    # the patch's alpha-weighted centre is the mouth-to-chin region, below the mouth corners
    ys, xs = np.mgrid[0 : full.alpha.shape[0], 0 : full.alpha.shape[1]]
    cx = (xs * full.alpha).sum() / full.alpha.sum() + full.x
    cy = (ys * full.alpha).sum() / full.alpha.sum() + full.y
    mouth = (kps[3] + kps[4]) / 2
    eyes = (kps[0] + kps[1]) / 2
    d = np.linalg.norm(mouth - eyes)
    assert abs(cx - mouth[0]) < 0.2 * d
    assert eyes[1] + 0.5 * d < cy < mouth[1] + 0.5 * d
    h, w = full.alpha.shape
    out = frames[0].copy()
    region = out[full.y : full.y + h, full.x : full.x + w].astype(np.float32)
    a = full.alpha[..., None]
    out[full.y : full.y + h, full.x : full.x + w] = np.clip(a * full.pixels + (1 - a) * region + 0.5, 0, 255).astype(np.uint8)
    outside = np.ones(frames[0].shape[:2], bool)
    outside[full.y : full.y + h, full.x : full.x + w] = False
    assert np.array_equal(out[outside], frames[0][outside])
    assert np.array_equal(out[: int(eyes[1])], frames[0][: int(eyes[1])])  # eyes and above untouched
    inside = full.alpha > 0.999
    assert np.abs(out[full.y : full.y + h, full.x : full.x + w][inside].astype(int)
                  - full.pixels[inside].astype(int)).max() <= 1


def test_tensor_frames_give_the_same_patch_as_numpy_frames(tiny_models_dir: Path, d10_frames) -> None:
    frames, landmarks = d10_frames
    kps = five_points_from_68(landmarks[2])
    animator = LivePortraitAnimator.load(tiny_models_dir, device="cpu", config=TINY)
    (from_numpy,) = animator.render([AnimateRequest(frames[2], frames[0], kps, "a", 0)])
    animator.reset()
    tensors = [torch.from_numpy(f) for f in (frames[2], frames[0])]
    (from_tensor,) = animator.render([AnimateRequest(tensors[0], tensors[1], kps, "a", 0)])
    assert isinstance(from_tensor.pixels, torch.Tensor) and from_tensor.pixels.dtype == torch.uint8
    assert (from_tensor.x, from_tensor.y) == (from_numpy.x, from_numpy.y)
    assert np.array_equal(from_tensor.pixels.numpy(), from_numpy.pixels)
    assert np.array_equal(from_tensor.alpha.numpy(), from_numpy.alpha)
