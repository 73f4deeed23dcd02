"""Face crop alignment from 5 keypoints, and paste-back with a feathered mask.

LivePortrait crops with a similarity transform that cancels roll: the crop's vertical
axis runs from the eye centre to the mouth centre. The official rule (scale 2.3,
vy_ratio -0.125 on the bounding box of 68/106/203 landmarks) is re-expressed in units of
the eye-to-mouth distance d, which 5 keypoints give and which barely changes with yaw:
side = 4.8 d, centre = eye centre + 0.03 d towards the mouth. The constants were measured
with dlib's 68 landmarks on the sample headshots (side 4.80 +- 0.28 d, shift 0.03 +- 0.04 d).
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F

CROP_SIDE_PER_EYE_MOUTH = 4.8
CROP_SHIFT_PER_EYE_MOUTH = 0.03


@dataclass
class FaceCrop:
    """An aligned square crop. to_crop maps frame pixels to crop pixels (2x3); size in pixels."""

    image: np.ndarray
    to_crop: np.ndarray
    size: int


def five_points_from_68(landmarks: np.ndarray) -> np.ndarray:
    """iBUG 68 landmarks -> InsightFace-order 5 keypoints (eye centres, nose tip, mouth corners)."""
    p = np.asarray(landmarks, np.float32).reshape(68, 2)
    return np.stack([p[36:42].mean(0), p[42:48].mean(0), p[30], p[48], p[54]]).astype(np.float32)


def crop_transform(kps: np.ndarray, size: int) -> np.ndarray:
    """2x3 similarity from frame pixels to a size x size crop, from InsightFace-order 5 keypoints."""
    kps = np.asarray(kps, dtype=np.float64).reshape(5, 2)
    eyes = (kps[0] + kps[1]) / 2
    mouth = (kps[3] + kps[4]) / 2
    axis = mouth - eyes
    dist = float(np.linalg.norm(axis))
    if dist < 1e-3:
        raise ValueError("degenerate keypoints: eyes and mouth coincide")
    uy = axis / dist
    ux = np.array([uy[1], -uy[0]])
    center = eyes + uy * (CROP_SHIFT_PER_EYE_MOUTH * dist)
    scale = size / (CROP_SIDE_PER_EYE_MOUTH * dist)
    rot = np.stack([ux, uy]) * scale  # rows: crop x and y axes in frame coordinates
    shift = np.array([size / 2, size / 2]) - rot @ center
    return np.hstack([rot, shift[:, None]]).astype(np.float32)


def crop_face(image: np.ndarray, kps: np.ndarray, size: int) -> FaceCrop:
    """Warp the face into an aligned size x size crop, black where it leaves the frame
    (the official `_transform_img`: cv2.warpAffine's default constant 0 border)."""
    m = crop_transform(kps, size)
    crop = cv2.warpAffine(image, m, (size, size), flags=cv2.INTER_LINEAR)
    return FaceCrop(image=crop, to_crop=m, size=size)


def feathered_mask(size: int, region: str = "lower_face") -> np.ndarray:
    """size x size float32 mask in [0, 1] in aligned-crop coordinates.

    "crop": the whole crop with a feathered border (like the official mask_template.png).
    "lower_face": an ellipse over cheeks, mouth and chin, feathered; only the lips change,
    so pasting only this keeps the rest of the frame untouched.
    """
    mask = np.zeros((size, size), np.float32)
    if region == "crop":
        border = max(1, int(round(size * 0.0625)))
        mask[border:-border, border:-border] = 1.0
        sigma = border / 3
    elif region == "lower_face":
        d = size / CROP_SIDE_PER_EYE_MOUTH
        eye_y = size / 2 - CROP_SHIFT_PER_EYE_MOUTH * d
        center = (int(round(size / 2)), int(round(eye_y + 1.05 * d)))
        axes = (int(round(0.85 * d)), int(round(0.7 * d)))
        cv2.ellipse(mask, center, axes, 0, 0, 360, 1.0, thickness=-1)
        sigma = 0.1 * d
    else:
        raise ValueError(f"unknown mask region {region!r}")
    k = int(2 * round(3 * sigma) + 1)
    return np.clip(cv2.GaussianBlur(mask, (k, k), sigma), 0.0, 1.0)


def patch_box(mask: np.ndarray, to_render: np.ndarray, frame_shape: tuple[int, ...]) -> tuple[int, int, int, int] | None:
    """Frame-pixel box (x0, y0, x1, y1) covering the mask's non-zero part once warped back;
    None when it falls outside the frame. to_render maps frame pixels to mask pixels (2x3)."""
    h, w = frame_shape[:2]
    ys, xs = np.nonzero(mask > 1e-3)
    if len(xs) == 0:
        return None
    back = cv2.invertAffineTransform(np.asarray(to_render, np.float64))
    xa, xb, ya, yb = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
    corners = np.array([[xa, ya], [xb, ya], [xa, yb], [xb, yb]], np.float64) @ back[:, :2].T + back[:, 2]
    x0, y0 = np.floor(corners.min(0)).astype(int)
    x1, y1 = np.ceil(corners.max(0)).astype(int)
    x0, y0, x1, y1 = max(0, int(x0)), max(0, int(y0)), min(w, int(x1)), min(h, int(y1))
    if x1 <= x0 or y1 <= y0:
        return None
    return x0, y0, x1, y1


def render_to_box(to_render: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """2x3 map from render pixels to the box's own pixels (the inverse crop, shifted)."""
    back = cv2.invertAffineTransform(np.asarray(to_render, np.float64))
    back[:, 2] -= (box[0], box[1])
    return back


def warp_affine_torch(images: torch.Tensor, to_dst: np.ndarray | torch.Tensor, size: tuple[int, int],
                      padding_mode: str = "border") -> torch.Tensor:
    """cv2.warpAffine for a batch on any device: images (B, C, H, W) float, to_dst (B, 2, 3)
    mapping source pixels to destination pixels, size (width, height). Bilinear; outside
    the source is "border" (replicate) or "zeros". Pixel centres follow cv2's convention.
    """
    b, _, h, w = images.shape
    out_w, out_h = size
    m = torch.as_tensor(to_dst, dtype=torch.float64, device=images.device).reshape(b, 2, 3)
    full = torch.zeros(b, 3, 3, dtype=torch.float64, device=images.device)
    full[:, :2] = m
    full[:, 2, 2] = 1
    inv = torch.linalg.inv(full)  # destination pixel -> source pixel
    # theta = N_src @ inv @ N_dst^-1, N maps pixel coords to normalised coords
    n_src = torch.tensor([[2.0 / w, 0, 1.0 / w - 1], [0, 2.0 / h, 1.0 / h - 1], [0, 0, 1]],
                         dtype=torch.float64, device=images.device)
    n_dst_inv = torch.tensor([[out_w / 2.0, 0, out_w / 2.0 - 0.5], [0, out_h / 2.0, out_h / 2.0 - 0.5], [0, 0, 1]],
                             dtype=torch.float64, device=images.device)
    theta = (n_src @ inv @ n_dst_inv)[:, :2].to(images.dtype)
    grid = F.affine_grid(theta, [b, images.shape[1], out_h, out_w], align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode=padding_mode, align_corners=False)
