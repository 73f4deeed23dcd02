"""Mouth-only LivePortrait: re-render a face with only its lips taken from a driving face.

For each face: the source is the original frame's aligned crop, the driving is the same
crop of the lip-synced frame (MuseTalk's output). The source's appearance volume, pose
and expression are kept; only the lip rows of the expression come from the driving face
(smoothed per track), the stitching MLP keeps the shoulders and crop border in place,
and W + G render the crop at 512 px, which is pasted back with a feathered mask.

Pre- and post-processing follow the official code step for step: the 512 px crop has a
black border where it leaves the frame (cv2's default in `_transform_img`), is resized to
256 px by area averaging (cv2.INTER_AREA), and every intermediate image holds uint8
levels: the crop and resize round, the render and the paste truncate (`parse_output`,
`paste_back`).

Opt-in lip retargeting (`lip_retargeting=True`, the official `flag_lip_retargeting`):
the lips then follow the driving face's lip-open ratio alone, through the lip
retargeting MLP: x_d = S(x_s, x_s + R_lip(x_s, [c_s, c_d])), as the official pipeline
does with its default relative motion. It needs 68 landmarks of both faces.

The source is re-read every frame (as the official "source video" mode does), so blinks
and head motion stay the original's; only the mouth follows the driving face.
"""
from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from models.engine import MouthPatch

from .config import LivePortraitConfig
from .crop import (
    crop_transform,
    feathered_mask,
    patch_box,
    render_to_box,
    warp_affine_torch,
)
from .keypoints import KeypointInfo
from .lip_ratio import LandmarkFn, lip_open_ratio
from .loader import LivePortraitModels, load_liveportrait
from .pixels import quantize_round, resize_area, to_uint8_truncated
from .smoothing import SmoothingConfig, TrackSmoother

LIP_ROWS = (6, 12, 14, 17, 19, 20)  # implicit keypoints that carry the lip expression (official)


@dataclass
class AnimateRequest:
    """One face to re-animate: the original frame, the lip-synced frame, the face's 5 keypoints.

    Frames are HxWx3 uint8 RGB of the same size: numpy arrays (CPU path) or torch tensors
    on the animator's device (GPU path; nothing then crosses to the host). kps are
    InsightFace-order (5, 2) pixels. strength in [0, 1] scales the pasted alpha.
    With lip retargeting, face_box ([x1, y1, x2, y2] pixels) lets the animator find the
    driving face's 68 landmarks, and source_landmarks (68, 2) are the source face's (else
    they are found the same way).
    """

    source_frame: np.ndarray | torch.Tensor
    driving_frame: np.ndarray | torch.Tensor
    kps: np.ndarray
    track_key: str = ""
    frame_index: int | None = None
    strength: float = 1.0
    face_box: np.ndarray | None = None
    source_landmarks: np.ndarray | None = None


class LivePortraitAnimator:
    """Batched mouth-only animation on one device (CPU or CUDA)."""

    def __init__(
        self,
        models: LivePortraitModels,
        device: torch.device | str | None = None,
        smoothing: SmoothingConfig = SmoothingConfig(),
        mask_region: str = "lower_face",
        half: bool = False,
        lip_retargeting: bool = False,
        landmarks: LandmarkFn | None = None,
    ) -> None:
        if lip_retargeting and landmarks is None:
            raise ValueError("lip retargeting needs a 68-landmark function (landmarks=...) to measure the lips")
        self.half = half
        self.lip_retargeting = lip_retargeting
        self.landmarks = landmarks
        self.device = torch.device(device) if device is not None else _default_device()
        self.models = models.to(self.device)
        self.config: LivePortraitConfig = models.config
        self.smoother = TrackSmoother(smoothing)
        self.mask = feathered_mask(self.config.output_size, mask_region)
        self._mask_t = torch.from_numpy(self.mask).to(self.device)[None, None]

    @classmethod
    def load(
        cls,
        models_dir: str | Path,
        device: torch.device | str | None = None,
        config: LivePortraitConfig = LivePortraitConfig(),
        smoothing: SmoothingConfig = SmoothingConfig(),
        mask_region: str = "lower_face",
        half: bool = False,
        lip_retargeting: bool = False,
        landmarks: LandmarkFn | None = None,
    ) -> "LivePortraitAnimator":
        """Load the official checkpoints from MODELS_DIR (CheckpointError if any is missing or wrong).

        half runs the networks under float16 autocast on CUDA (as the official
        flag_use_half_precision); keypoint maths and smoothing stay float32.
        lip_retargeting turns on the official lip retargeting (see the module docstring);
        landmarks(image, boxes) -> one (68, 2) array (or None) per box is then required.
        """
        return cls(load_liveportrait(models_dir, config), device, smoothing, mask_region, half,
                   lip_retargeting, landmarks)

    @property
    def input_size(self) -> int:
        return self.config.input_size

    @property
    def output_size(self) -> int:
        return self.config.output_size

    def _to_tensor(self, crops: Sequence[np.ndarray]) -> torch.Tensor:
        """uint8 HxWx3 crops -> (B, 3, S, S) float in [0, 1] on the device."""
        return torch.from_numpy(np.stack(crops)).to(self.device).permute(0, 3, 1, 2).float() / 255.0

    def _fit(self, x: torch.Tensor) -> torch.Tensor:
        """Resize (B, 3, S, S) to the networks' input size as the official cv2.INTER_AREA on a
        uint8 image: area average, then rounded to uint8 levels."""
        return quantize_round(resize_area(x, self.input_size))

    @torch.inference_mode()
    def keypoint_info(self, crops: Sequence[np.ndarray]) -> KeypointInfo:
        """Pose (degrees), translation, scale, canonical keypoints and expression of aligned crops."""
        return KeypointInfo.from_motion(self.models.motion(self._fit(self._to_tensor(crops))))

    @torch.inference_mode()
    def mix_expression(
        self,
        source_exp: torch.Tensor,
        driving_exp: torch.Tensor,
        track_keys: Sequence[str],
        frame_indices: Sequence[int | None],
    ) -> torch.Tensor:
        """Source expressions (B, K, 3) with LIP_ROWS replaced by the smoothed driving rows."""
        rows = list(LIP_ROWS)
        mixed = source_exp.clone()
        for i, (key, index) in enumerate(zip(track_keys, frame_indices)):
            mixed[i, rows] = self.smoother.update(key, driving_exp[i, rows], index)
        return mixed

    def animate(
        self,
        source_crops: Sequence[np.ndarray],
        driving_crops: Sequence[np.ndarray],
        track_keys: Sequence[str] | None = None,
        frame_indices: Sequence[int | None] | None = None,
    ) -> np.ndarray:
        """Aligned uint8 crops (see `crop.crop_face`, any square size) -> (B, out, out, 3) uint8 RGB."""
        if len(source_crops) != len(driving_crops):
            raise ValueError("source_crops and driving_crops must have the same length")
        if not source_crops:
            return np.zeros((0, self.output_size, self.output_size, 3), np.uint8)
        image = self.animate_tensor(self._to_tensor(source_crops), self._to_tensor(driving_crops), track_keys, frame_indices)
        return to_uint8_truncated(image).permute(0, 2, 3, 1).cpu().numpy()

    @torch.inference_mode()
    def animate_tensor(
        self,
        source: torch.Tensor,
        driving: torch.Tensor,
        track_keys: Sequence[str] | None = None,
        frame_indices: Sequence[int | None] | None = None,
        lip_ratios: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Source crops rendered with the driving crops' lips, on the device.

        source, driving: (B, 3, S, S) float in [0, 1], aligned alike; resized to the
        networks' 256 px input when S differs. Returns (B, 3, out, out) in [0, 1], out = 512
        for the official models. Frames of one track must come in order (smoothing state).
        lip_ratios: (B, 2) lip-open ratios [source, driving] for lip retargeting; a row of
        NaN (or None for all) keeps the default path, the driving face's lip expression.
        """
        n = source.shape[0]
        keys = list(track_keys) if track_keys is not None else [""] * n
        indices = list(frame_indices) if frame_indices is not None else [None] * n
        m = self.models
        src, drv = self._fit(source), self._fit(driving)
        with self._autocast():
            feature_3d = m.appearance(src)
            src_motion, drv_motion = m.motion(src), m.motion(drv)
        src_info = KeypointInfo.from_motion(src_motion)
        drv_info = KeypointInfo.from_motion(drv_motion)
        x_s = src_info.transformed()
        x_d = src_info.with_exp(self.mix_expression(src_info.exp, drv_info.exp, keys, indices)).transformed()
        if lip_ratios is not None:
            x_d = self._retarget_lips(x_s, x_d, lip_ratios)
        x_d = self.stitch(x_s, x_d)
        with self._autocast():
            warped = m.warping(feature_3d, kp_driving=x_d, kp_source=x_s)
            image = m.spade(warped.out)
        return image.float()

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.half and self.device.type == "cuda":
            return torch.autocast(device_type="cuda", dtype=torch.float16)
        return contextlib.nullcontext()

    def retarget_lip(self, x_s: torch.Tensor, lip_ratios: torch.Tensor) -> torch.Tensor:
        """Official `retarget_lip`: R_lip([x_s, c_s, c_d]) -> (B, K, 3) keypoint delta."""
        b, k, _ = x_s.shape
        feat = torch.cat([x_s.reshape(b, -1), lip_ratios.to(x_s).reshape(b, 2)], dim=1)
        return self.models.lip(feat).reshape(b, k, 3)

    def _retarget_lips(self, x_s: torch.Tensor, x_d: torch.Tensor, lip_ratios: torch.Tensor) -> torch.Tensor:
        """Rows with ratios: x_s + R_lip (official flag_lip_retargeting, relative motion); others keep x_d."""
        ratios = lip_ratios.to(x_s).reshape(-1, 2)
        known = ~torch.isnan(ratios).any(dim=1)
        if not bool(known.any()):
            return x_d
        retargeted = x_s + self.retarget_lip(x_s, torch.nan_to_num(ratios))
        return torch.where(known[:, None, None], retargeted, x_d)

    def stitch(self, x_s: torch.Tensor, x_d: torch.Tensor) -> torch.Tensor:
        """Official stitching: the MLP adds an expression delta and a (tx, ty) shift to x_d."""
        b, k, _ = x_s.shape
        delta = self.models.stitching(torch.cat([x_s.reshape(b, -1), x_d.reshape(b, -1)], dim=1))
        out = x_d + delta[:, : 3 * k].reshape(b, k, 3)
        out[..., :2] += delta[:, 3 * k : 3 * k + 2].reshape(b, 1, 2)
        return out

    @torch.inference_mode()
    def render(self, requests: Sequence[AnimateRequest]) -> list[MouthPatch | None]:
        """Crop, animate and paste back a batch: one patch per request (None if off-frame).

        Patches hold numpy arrays for numpy frames and device tensors for tensor frames
        (pixels HxWx3 uint8, alpha HxW float32 already multiplied by strength).
        """
        if not requests:
            return []
        size = self.output_size
        to_crop = [crop_transform(r.kps, size) for r in requests]
        source = torch.cat([self._crop(r.source_frame, m) for r, m in zip(requests, to_crop)])
        driving = torch.cat([self._crop(r.driving_frame, m) for r, m in zip(requests, to_crop)])
        ratios = self._lip_ratios(requests) if self.lip_retargeting else None
        rendered = self.animate_tensor(
            source, driving, [r.track_key for r in requests], [r.frame_index for r in requests], ratios
        )
        return [self._paste(r, rendered[i : i + 1], m) for i, (r, m) in enumerate(zip(requests, to_crop))]

    def _frame_tensor(self, frame: np.ndarray | torch.Tensor) -> torch.Tensor:
        """HxWx3 uint8 frame -> (1, 3, H, W) float in [0, 1] on the device."""
        t = torch.as_tensor(frame).to(self.device)
        return t.permute(2, 0, 1)[None].float() / 255.0

    def _lip_ratios(self, requests: Sequence[AnimateRequest]) -> torch.Tensor:
        """(B, 2) [source, driving] lip-open ratios from 68 landmarks; NaN where a face has none."""
        out = torch.full((len(requests), 2), float("nan"))
        for i, r in enumerate(requests):
            if r.face_box is None or self.landmarks is None:
                continue
            box = np.asarray(r.face_box, np.float32).reshape(4)
            src = r.source_landmarks if r.source_landmarks is not None else self._marks(r.source_frame, box)
            drv = self._marks(r.driving_frame, box)
            if _is68(src) and _is68(drv):
                out[i] = torch.tensor([lip_open_ratio(src), lip_open_ratio(drv)])
        return out.to(self.device)

    def _marks(self, frame: np.ndarray | torch.Tensor, box: np.ndarray) -> np.ndarray | None:
        found = list(self.landmarks(_host_image(frame), [box])) if self.landmarks is not None else []
        return found[0] if found else None

    def _crop(self, frame: np.ndarray | torch.Tensor, to_crop: np.ndarray) -> torch.Tensor:
        """The official crop: bilinear, black (0) outside the frame, rounded to uint8 levels."""
        size = self.output_size
        return quantize_round(warp_affine_torch(self._frame_tensor(frame), to_crop[None], (size, size),
                                                padding_mode="zeros"))

    def _paste(self, request: AnimateRequest, rendered: torch.Tensor, to_render: np.ndarray) -> MouthPatch | None:
        box = patch_box(self.mask, to_render, tuple(request.source_frame.shape))
        if box is None:
            return None
        to_box = render_to_box(to_render, box)[None]
        size = (box[2] - box[0], box[3] - box[1])
        # official: parse_output truncates the render to uint8, paste_back warps that image
        # (cv2 rounds, black outside) and truncates the blend (MouthPatch.truncate)
        levels = to_uint8_truncated(rendered).float() / 255
        pixels = quantize_round(warp_affine_torch(levels, to_box, size, padding_mode="zeros"))
        alpha = warp_affine_torch(self._mask_t, to_box, size, padding_mode="zeros")
        alpha = alpha.clamp(0, 1)[0, 0] * float(np.clip(request.strength, 0.0, 1.0))
        pixels_u8 = (pixels * 255 + 0.5).to(torch.uint8)[0].permute(1, 2, 0)
        if isinstance(request.source_frame, np.ndarray):
            return MouthPatch(x=box[0], y=box[1], pixels=pixels_u8.cpu().numpy(), alpha=alpha.float().cpu().numpy(),
                              truncate=True)
        return MouthPatch(x=box[0], y=box[1], pixels=pixels_u8, alpha=alpha.float(), truncate=True)

    def reset(self, track_key: str | None = None) -> None:
        """Forget the smoothing state of one track (or all)."""
        self.smoother.reset(track_key)


def _is68(landmarks: np.ndarray | None) -> bool:
    return landmarks is not None and np.asarray(landmarks).shape == (68, 2)


def _host_image(frame: np.ndarray | torch.Tensor) -> np.ndarray:
    """HxWx3 uint8 frame on the host (landmarks run there)."""
    return frame.cpu().numpy() if isinstance(frame, torch.Tensor) else np.asarray(frame)


def _default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
