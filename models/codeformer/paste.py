"""Paste-back of restored faces as facexlib's `paste_faces_to_input_image` does it, on tensors.

Per face (upscale 1), in the face's own box of the frame:
- the restored face (uint8 levels) and a ones mask are warped back with the inverse
  affine (bilinear, 0 outside), the face rounded to uint8 as cv2 does;
- the mask is eroded by a 2x2 kernel (cv2 anchors an even kernel at k // 2, so it erodes
  one pixel more to the left and top than to the right and bottom), and the face is
  multiplied by it;
- w_edge = int(sqrt(sum of that mask)) // 20, the area counted inside the frame only;
- the mask is eroded again by a 2*w_edge square (cv2 uses 3x3 when w_edge is 0, an empty
  kernel) and blurred by a (2*w_edge + 1) Gaussian with cv2's default sigma and its
  reflect-101 border, so a face at the frame's edge keeps its alpha there;
- with a face-parsing mask, the soft mask is its minimum with the parsing mask;
- frame = mask * face + (1 - mask) * frame, in float; the caller truncates to uint8 once
  all faces are in (numpy's astype), as the official code does.
Erosion ignores pixels outside the frame (cv2's default border for erode).
"""
from __future__ import annotations

import math

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from models.liveportrait.crop import warp_affine_torch

_SMALL_GAUSSIANS = {
    1: (1.0,),
    3: (0.25, 0.5, 0.25),
    5: (0.0625, 0.25, 0.375, 0.25, 0.0625),
    7: (0.03125, 0.109375, 0.21875, 0.28125, 0.21875, 0.109375, 0.03125),
    9: tuple(v / 256 for v in (4, 13, 30, 51, 60, 51, 30, 13, 4)),
}
"""cv2.getGaussianKernel's fixed tables for ksize <= 9 with sigma <= 0 (OpenCV's small_gaussian_tab)."""


def erode(mask: torch.Tensor, kernel: int) -> torch.Tensor:
    """cv2.erode of a (N, 1, H, W) float mask by a kernel x kernel square of ones, default
    anchor (k // 2: an even kernel reaches k // 2 pixels up/left, k // 2 - 1 down/right) and
    default border (pixels outside are ignored). kernel 0 is cv2's empty kernel: 3x3."""
    k = 3 if kernel <= 0 else kernel
    if k == 1:
        return mask
    before, after = k // 2, k - 1 - k // 2
    padded = F.pad(-mask, (before, after, before, after), value=-math.inf)
    return -F.max_pool2d(padded, kernel_size=k, stride=1)


def gaussian_kernel(ksize: int, sigma: float = 0.0, dtype: torch.dtype = torch.float32,
                    device: torch.device | str | None = None) -> torch.Tensor:
    """cv2.getGaussianKernel(ksize, sigma): sigma <= 0 means 0.3 * ((ksize - 1) / 2 - 1) + 0.8,
    and for odd ksize <= 9 cv2 then uses its fixed tables."""
    if sigma <= 0 and ksize in _SMALL_GAUSSIANS:
        return torch.tensor(_SMALL_GAUSSIANS[ksize], dtype=dtype, device=device)
    if sigma <= 0:
        sigma = 0.3 * ((ksize - 1) * 0.5 - 1) + 0.8
    x = torch.arange(ksize, dtype=torch.float64) - (ksize - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return (g / g.sum()).to(dtype=dtype, device=device)


def gaussian_blur(image: torch.Tensor, ksize: int, sigma: float = 0.0) -> torch.Tensor:
    """cv2.GaussianBlur(image, (ksize, ksize), sigma) of (N, C, H, W) float, reflect-101 border."""
    if ksize <= 1:
        return image
    r = ksize // 2
    c = image.shape[1]
    g = gaussian_kernel(ksize, sigma, image.dtype, image.device)
    out = F.pad(image, (r, r, 0, 0), mode="reflect")
    out = F.conv2d(out, g.view(1, 1, 1, ksize).expand(c, 1, 1, ksize), groups=c)
    out = F.pad(out, (0, 0, r, r), mode="reflect")
    return F.conv2d(out, g.view(1, 1, ksize, 1).expand(c, 1, ksize, 1), groups=c)


def face_box(inverse: np.ndarray, size: int, frame_hw: tuple[int, int]) -> tuple[int, int, int, int] | None:
    """Frame box (x0, y0, x1, y1) holding the warped-back face and enough margin that erosion
    and blur see only zeros at its inner edges; None when the face is off the frame."""
    h, w = frame_hw
    corners = np.array([[0, 0], [size, 0], [0, size], [size, size]], np.float64) @ inverse[:, :2].T + inverse[:, 2]
    scale = math.sqrt(abs(np.linalg.det(inverse[:, :2])))  # frame pixels per face pixel
    # the warped mask fades over one face pixel beyond the square; then the blur's reach
    margin = math.ceil(scale) + int(size * scale) // 20 + 3
    x0, y0 = (max(0, int(v) - margin) for v in np.floor(corners.min(0)))
    x1, y1 = (min(lim, int(v) + margin) for v, lim in zip(np.ceil(corners.max(0)), (w, h)))
    if x1 <= x0 or y1 <= y0:
        return None
    return x0, y0, x1, y1


def paste_face(frame: torch.Tensor, face: torch.Tensor, affine: np.ndarray,
               parse_mask: torch.Tensor | None = None, levels: bool = True) -> None:
    """Blend one restored template-space face into `frame` in place (both float 0..255).

    frame is (1, 3, H, W); face (1, 3, S, S) holds what the official code pastes: uint8
    levels (levels=True: the warped face is rounded as cv2 rounds a uint8 warp) or the
    grey path's float face (levels=False); parse_mask (1, 1, S, S) in [0, 1] is the
    face-parsing mask in template space, or None for the square mask alone.
    """
    _, _, h, w = frame.shape
    size = face.shape[-1]
    inverse = cv2.invertAffineTransform(np.asarray(affine, np.float64))
    box = face_box(inverse, size, (h, w))
    if box is None:
        return
    x0, y0, x1, y1 = box
    local = inverse.copy()
    local[:, 2] -= (x0, y0)
    wh = (x1 - x0, y1 - y0)
    restored = warp_affine_torch(face, local[None], wh, padding_mode="zeros")
    if levels:
        restored = torch.floor(restored + 0.5)  # cv2.warpAffine of a uint8 image rounds
    ones = torch.ones(1, 1, size, size, dtype=frame.dtype, device=frame.device)
    mask = erode(warp_affine_torch(ones, local[None], wh, padding_mode="zeros"), 2)
    pasted = mask * restored
    w_edge = int(math.sqrt(float(mask.sum()))) // 20
    soft = gaussian_blur(erode(mask, 2 * w_edge), 2 * w_edge + 1)
    if parse_mask is not None:
        parse = warp_affine_torch(parse_mask.to(frame), local[None], wh, padding_mode="zeros")
        soft = torch.minimum(soft, parse)
    region = frame[:, :, y0:y1, x0:x1]
    frame[:, :, y0:y1, x0:x1] = soft * pasted + (1 - soft) * region
