"""The official pipeline's 8-bit steps, done on tensors: area resize, rounding, truncation.

The official LivePortrait works on uint8 images between its steps: the crop
(cv2.warpAffine, rounded), the 512 -> 256 px resize (cv2.INTER_AREA, rounded), the
network output (`parse_output`: x * 255 truncated) and the paste (`paste_back`:
truncated). These helpers reproduce each step on float tensors in [0, 1] so the CPU and
the GPU paths stay on the device and still see the values the official code sees.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def quantize_round(x: torch.Tensor) -> torch.Tensor:
    """[0, 1] float -> the nearest of the 256 uint8 levels (halves up, as cv2's fixed point), still float."""
    return torch.floor(x.clamp(0, 1) * 255 + 0.5) / 255


def to_uint8_truncated(x: torch.Tensor) -> torch.Tensor:
    """[0, 1] float -> uint8 by truncation, as the official `parse_output` (np.clip(x * 255).astype(uint8))."""
    return (x.clamp(0, 1) * 255).to(torch.uint8)


def area_weights(n_in: int, n_out: int, dtype: torch.dtype = torch.float64,
                 device: torch.device | str | None = None) -> torch.Tensor:
    """(n_out, n_in) matrix of cv2.INTER_AREA's shrink weights: each output pixel averages the
    source interval [o * s, (o + 1) * s), s = n_in / n_out, weighting pixels by their overlap."""
    if n_out > n_in:
        raise ValueError(f"area weights shrink only: {n_in} -> {n_out} px")
    scale = n_in / n_out
    start = torch.arange(n_out, dtype=torch.float64)[:, None] * scale
    pixel = torch.arange(n_in, dtype=torch.float64)[None, :]
    overlap = (torch.minimum(start + scale, pixel + 1) - torch.maximum(start, pixel)).clamp(min=0)
    return (overlap / scale).to(dtype=dtype, device=device)


def resize_area(x: torch.Tensor, size: int) -> torch.Tensor:
    """(B, C, H, W) float -> (B, C, size, size) as cv2.resize(..., INTER_AREA) when shrinking.

    An integer factor (512 -> 256, the official crop) is a plain box average; other
    shrink factors use the exact coverage weights. Enlarging (crops smaller than the
    networks' input, which the product never makes) falls back to bilinear.
    """
    h, w = x.shape[-2:]
    if (h, w) == (size, size):
        return x
    if h < size or w < size:
        return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    if h % size == 0 and w % size == 0:
        return F.avg_pool2d(x, kernel_size=(h // size, w // size))
    wy = area_weights(h, size, x.dtype, x.device)
    wx = area_weights(w, size, x.dtype, x.device)
    return wy @ x @ wx.T
