"""LivePortrait's pre- and post-processing pinned to the official code's (KwaiVGI/LivePortrait).

Each test restates one official step from its semantics (cv2 calls, numpy casts,
pykalman's smoother) and checks the project's tensor path against it; the last one runs
the whole official sequence of calls for a mouth-only frame on tiny random networks in
the official layout and compares the pasted frame.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from models.engine import MouthPatch
from models.liveportrait import LIP_ROWS, AnimateRequest, LivePortraitAnimator
from models.liveportrait.crop import crop_face, crop_transform, five_points_from_68
from models.liveportrait.keypoints import KeypointInfo
from models.liveportrait.lip_ratio import lip_open_ratio
from models.liveportrait.pixels import (
    area_weights,
    quantize_round,
    resize_area,
    to_uint8_truncated,
)
from models.liveportrait.smoothing import ExpressionFilter, SmoothingConfig
from stages.composite import blend_patch
from tests.test_liveportrait import TINY, d10_frames, tiny_models_dir  # noqa: F401 - fixtures


@pytest.fixture(scope="module")
def plain(tiny_models_dir: Path) -> LivePortraitAnimator:  # noqa: F811
    return LivePortraitAnimator.load(tiny_models_dir, device="cpu", config=TINY, smoothing=SmoothingConfig(enabled=False))


def _edge_kps(frames, landmarks) -> tuple[np.ndarray, np.ndarray]:
    """d10's face shifted so that its crop runs 1/4 out of the frame on the left."""
    kps = five_points_from_68(landmarks[0]).copy()
    m = crop_transform(kps, 512)
    side = 512 / np.linalg.norm(m[0, :2])
    kps[:, 0] -= kps[:, 0].mean() - side / 4
    return frames[0], kps


# ---------------------------------------------------------------- 1. crop border


def test_crop_is_black_outside_the_frame_as_the_official_transform_img(plain, d10_frames) -> None:  # noqa: F811
    frame, kps = _edge_kps(*d10_frames)
    official = cv2.warpAffine(frame, crop_transform(kps, 512), (512, 512), flags=cv2.INTER_LINEAR)
    ours = crop_face(frame, kps, 512).image
    assert np.array_equal(ours, official)
    assert (ours[:, :40] == 0).all()  # the part left of the frame is black, not the edge replicated
    size = plain.output_size
    m = crop_transform(kps, size)
    tensor = plain._crop(frame, m)[0].permute(1, 2, 0).numpy() * 255
    expected = cv2.warpAffine(frame, m, (size, size), flags=cv2.INTER_LINEAR)
    assert np.abs(tensor - expected).max() <= 1.0  # cv2 interpolates in 1/32 px fixed point
    assert (tensor[:, : size // 16] == 0).all()
    assert np.allclose(tensor, np.round(tensor), atol=1e-3)  # uint8 levels, as the official crop


# ---------------------------------------------------------------- 2. the 256 px resize


def test_resize_is_cv2_inter_area() -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (512, 512, 3), np.uint8)
    official = cv2.resize(image, (256, 256), interpolation=cv2.INTER_AREA)
    x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255
    ours = (quantize_round(resize_area(x, 256))[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    assert np.array_equal(ours, official)
    # a non-integer factor uses the exact coverage weights (float images: no rounding in cv2)
    odd = rng.random((300, 300, 3), dtype=np.float32)
    official = cv2.resize(odd, (256, 256), interpolation=cv2.INTER_AREA)
    ours = resize_area(torch.from_numpy(odd).permute(2, 0, 1)[None].double(), 256)[0].permute(1, 2, 0).numpy()
    assert np.abs(ours - official).max() < 1e-5
    assert torch.allclose(area_weights(300, 256).sum(1), torch.ones(256, dtype=torch.float64))


def test_network_input_is_the_official_crop_then_area_resize(plain, d10_frames) -> None:  # noqa: F811
    frame, kps = _edge_kps(*d10_frames)
    size, n = plain.output_size, plain.input_size
    m = crop_transform(kps, size)
    official = cv2.resize(cv2.warpAffine(frame, m, (size, size), flags=cv2.INTER_LINEAR), (n, n),
                          interpolation=cv2.INTER_AREA).astype(np.float32) / 255
    ours = plain._fit(plain._crop(frame, m))[0].permute(1, 2, 0).numpy()
    assert np.abs(ours - official).max() <= 1 / 255 + 1e-6
    assert np.abs(ours - official).mean() < 0.5 / 255


# ---------------------------------------------------------------- 3. truncation


def test_render_and_paste_truncate_to_uint8_as_parse_output_and_paste_back() -> None:
    x = torch.tensor([0.0, 0.5, 0.999, 1.0, 1.2, -0.1])
    official = np.clip(np.clip(x.numpy(), 0, 1) * 255, 0, 255).astype(np.uint8)
    assert torch.equal(to_uint8_truncated(x), torch.from_numpy(official))
    assert to_uint8_truncated(torch.tensor([0.999])).item() == 254  # rounding would give 255
    frame = np.full((2, 2, 3), 100, np.uint8)
    alpha = np.full((2, 2), 0.3, np.float32)
    pixels = np.full((2, 2, 3), 201, np.uint8)
    official = np.clip(alpha[..., None] * pixels + (1 - alpha[..., None]) * frame, 0, 255).astype(np.uint8)
    truncated = frame.copy()
    blend_patch(truncated, MouthPatch(0, 0, pixels, alpha, truncate=True))
    assert np.array_equal(truncated, official) and truncated[0, 0, 0] == 130  # 130.3
    rounded = frame.copy()
    blend_patch(rounded, MouthPatch(0, 0, np.full((2, 2, 3), 202, np.uint8), alpha))
    assert rounded[0, 0, 0] == 131  # 130.6: other engines still round
    tensor = torch.from_numpy(frame.copy())
    blend_patch(tensor, MouthPatch(0, 0, torch.from_numpy(pixels), torch.from_numpy(alpha), truncate=True))
    assert np.array_equal(tensor.numpy(), official)


# ---------------------------------------------------------------- 4. smoothing


def _rts_smoother(obs: np.ndarray, q: float, r: float) -> np.ndarray:
    """pykalman's KalmanFilter(initial_state_mean=obs[0], identity matrices, initial
    covariance I).smooth(obs), per coordinate: the official `src/utils/filter.py`."""
    n = len(obs)
    mean_f, var_f, mean_p, var_p = (np.zeros_like(obs) for _ in range(4))
    mean, var = obs[0], np.ones_like(obs[0])
    for t in range(n):
        if t > 0:
            mean, var = mean_f[t - 1], var_f[t - 1] + q
        mean_p[t], var_p[t] = mean, var
        gain = var / (var + r)
        mean_f[t], var_f[t] = mean + gain * (obs[t] - mean), (1 - gain) * var
    out = mean_f.copy()
    for t in range(n - 2, -1, -1):
        g = var_f[t] / var_p[t + 1]
        out[t] = mean_f[t] + g * (out[t + 1] - mean_p[t + 1])
    return out


def _lip_sequence(n: int = 120) -> np.ndarray:
    """Synthetic lip expression rows: speech-rate opening (3-6 Hz at 25 fps) plus jitter, (n, 6, 3)."""
    rng = np.random.default_rng(1)
    t = np.arange(n)[:, None, None] / 25.0
    phase = rng.random((1, 6, 3)) * 6.28
    signal = 0.03 * np.sin(2 * np.pi * 4.0 * t + phase) + 0.015 * np.sin(2 * np.pi * 5.7 * t + 2 * phase)
    return signal + rng.normal(0, 3e-4, signal.shape)


def _online(obs: np.ndarray, cfg: SmoothingConfig) -> np.ndarray:
    filt = ExpressionFilter(cfg)
    return np.stack([filt.update(torch.from_numpy(o), i).numpy() for i, o in enumerate(obs)])


def test_smoothing_uses_the_official_variance_and_keeps_the_lip_motion() -> None:
    obs = _lip_sequence()
    official = _rts_smoother(obs, q=1e-5, r=3e-7)
    ours = _online(obs, SmoothingConfig())
    assert SmoothingConfig().observation_variance == 3e-7 and SmoothingConfig().process_variance == 1e-5
    swing = np.ptp(obs)
    assert np.abs(ours - official).max() / swing < 0.02  # measured 1.5%: the online half lags a little
    assert np.abs(official - obs).max() / swing < 0.03  # the official smoother barely moves the lips
    old = _online(obs, SmoothingConfig(observation_variance=1e-5))
    assert np.abs(old - official).max() / swing > 0.15  # measured 22%: 1e-5 flattened the lip motion


# ---------------------------------------------------------------- 5. lip retargeting


def test_lip_open_ratio_is_inner_gap_over_mouth_width() -> None:
    lm = np.zeros((68, 2))
    lm[48], lm[54] = (100, 200), (160, 200)  # corners: 60 px apart
    lm[62], lm[66] = (130, 195), (130, 213)  # inner lips: 18 px apart
    assert lip_open_ratio(lm) == pytest.approx(18 / 60, rel=1e-6)
    rot = cv2.getRotationMatrix2D((0, 0), 30, 2.0)
    assert lip_open_ratio(lm @ rot[:, :2].T + rot[:, 2]) == pytest.approx(0.3, rel=1e-6)
    with pytest.raises(ValueError, match="68"):
        lip_open_ratio(lm[:5])


def _capture_x_d(animator: LivePortraitAnimator) -> tuple[dict, object]:
    seen: dict = {}

    def hook(_module, _args, kwargs):
        seen["x_d"], seen["x_s"] = kwargs["kp_driving"].clone(), kwargs["kp_source"].clone()

    return seen, animator.models.warping.register_forward_pre_hook(hook, with_kwargs=True)


def test_lip_retargeting_is_off_by_default_and_follows_the_official_flag_when_on(
        tiny_models_dir: Path, d10_frames) -> None:  # noqa: F811
    frames, landmarks = d10_frames
    kps = five_points_from_68(landmarks[0])
    box = np.array([*landmarks[0].min(0), *landmarks[0].max(0)], np.float32)
    calls: list[int] = []
    lip_calls = []

    def marks(image: np.ndarray, boxes):
        calls.append(len(boxes))
        return [landmarks[2] if image is frames[2] else landmarks[0]]

    off = LivePortraitAnimator.load(tiny_models_dir, device="cpu", config=TINY, smoothing=SmoothingConfig(enabled=False))
    handle = off.models.lip.register_forward_hook(lambda *a: lip_calls.append(1))
    off.render([AnimateRequest(frames[0], frames[2], kps, "a", 0, face_box=box, source_landmarks=landmarks[0])])
    handle.remove()
    assert not lip_calls and not calls  # the official default: R_lip is never called
    with pytest.raises(ValueError, match="landmark"):
        LivePortraitAnimator.load(tiny_models_dir, device="cpu", config=TINY, lip_retargeting=True)

    on = LivePortraitAnimator.load(tiny_models_dir, device="cpu", config=TINY, smoothing=SmoothingConfig(enabled=False),
                                   lip_retargeting=True, landmarks=marks)
    seen, handle = _capture_x_d(on)
    try:
        on.render([AnimateRequest(frames[0], frames[2], kps, "a", 0, face_box=box, source_landmarks=landmarks[0])])
        # official (flag_lip_retargeting, relative motion): x_d = S(x_s, x_s + R_lip(x_s, [c_s, c_d]))
        x_s = seen["x_s"]
        c = torch.tensor([[lip_open_ratio(landmarks[0]), lip_open_ratio(landmarks[2])]], dtype=torch.float32)
        with torch.no_grad():
            delta = on.models.lip(torch.cat([x_s.reshape(1, -1), c], 1)).reshape(1, -1, 3)
            expected = on.stitch(x_s, x_s + delta)
        assert torch.allclose(seen["x_d"], expected, atol=1e-6)
        assert calls == [1]  # the driving face's landmarks only: the source's came with the request
        # without a face box (no landmarks to measure) the default lip-row path is kept
        on.render([AnimateRequest(frames[0], frames[2], kps, "a", 1)])
        no_ratio = seen["x_d"]
        plain_x_d, handle2 = _capture_x_d(off)
        off.render([AnimateRequest(frames[0], frames[2], kps, "a", 1)])
        handle2.remove()
        assert torch.allclose(no_ratio, plain_x_d["x_d"], atol=1e-6)
    finally:
        handle.remove()


# ---------------------------------------------------------------- end to end


def _official_mouth_render(animator: LivePortraitAnimator, source: np.ndarray, driving: np.ndarray,
                           kps: np.ndarray) -> np.ndarray:
    """The official calls for one source-video frame, lip region, no relative motion, no
    smoothing: crop_image -> cv2.resize INTER_AREA -> prepare_videos -> get_kp_info /
    extract_feature_3d -> lip rows -> stitching -> warp_decode -> parse_output ->
    paste_back (with the project's lower-face mask in place of mask_template.png)."""
    size, n = animator.output_size, animator.input_size
    m_o2c = crop_transform(kps, size)
    m_c2o = cv2.invertAffineTransform(m_o2c)
    nets = animator.models

    def prepare(frame: np.ndarray) -> torch.Tensor:
        crop = cv2.warpAffine(frame, m_o2c, (size, size), flags=cv2.INTER_LINEAR)
        crop = cv2.resize(crop, (n, n), interpolation=cv2.INTER_AREA)
        return torch.from_numpy(np.clip(crop[None].astype(np.float32) / 255.0, 0, 1)).permute(0, 3, 1, 2)

    with torch.no_grad():
        i_s, i_d = prepare(source), prepare(driving)
        s_info = KeypointInfo.from_motion(nets.motion(i_s))
        d_info = KeypointInfo.from_motion(nets.motion(i_d))
        f_s = nets.appearance(i_s)
        delta_new = s_info.exp.clone()
        for idx in LIP_ROWS:
            delta_new[:, idx, :] = d_info.exp[:, idx, :]
        x_s = s_info.transformed()
        x_d = animator.stitch(x_s, s_info.with_exp(delta_new).transformed())
        out = nets.spade(nets.warping(f_s, kp_driving=x_d, kp_source=x_s).out)
    i_p = np.clip(np.clip(out.permute(0, 2, 3, 1).numpy()[0], 0, 1) * 255, 0, 255).astype(np.uint8)
    h, w = source.shape[:2]
    mask_ori = cv2.warpAffine(animator.mask, m_c2o, (w, h))[..., None]
    result = cv2.warpAffine(i_p, m_c2o, (w, h))
    return np.clip(mask_ori * result + (1 - mask_ori) * source, 0, 255).astype(np.uint8)


def test_mouth_render_follows_the_official_sequence(plain, d10_frames) -> None:  # noqa: F811
    frames, landmarks = d10_frames
    for frame, kps in ((frames[0], five_points_from_68(landmarks[0])), _edge_kps(frames, landmarks)):
        official = _official_mouth_render(plain, frame, frames[2], kps)
        (patch,) = plain.render([AnimateRequest(frame, frames[2], kps, "e2e", 0)])
        ours = frame.copy()
        blend_patch(ours, patch)
        diff = np.abs(ours.astype(int) - official.astype(int))
        # one grey level, but for the odd pixel where cv2's uint8 crop rounds a level apart
        # and the random network carries that across a truncation (2 of 0.9 M on other weights)
        assert diff.max() <= 2, diff.max()
        assert (diff > 1).sum() <= 10 and (diff > 0).mean() < 0.01


def test_lip_retargeting_setting_is_off_by_default_with_env_and_flag_twins() -> None:
    from jobs.cli import build_parser
    from jobs.config import Settings

    assert Settings.from_env({}).lip_retargeting == "off"
    assert Settings.from_env({"LIPSYNC_LIP_RETARGETING": "on"}).lip_retargeting == "on"
    args = build_parser().parse_args(["lipsync", "--video", "v.mp4", "--audio", "a.wav", "--out", "o.mp4", "--auto",
                                      "--lip-retargeting", "on"])
    assert Settings.from_args(args).lip_retargeting == "on"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["lipsync", "--video", "v", "--audio", "a", "--out", "o", "--auto",
                                   "--lip-retargeting", "yes"])
