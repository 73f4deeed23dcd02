"""MuseTalk's crop, resize and mask steps on torch tensors, for frames resident on the engine's device.

`crop.py` follows the official code with OpenCV on host arrays; these are the same steps
with the same geometry in torch, so a frame uploaded to the GPU never comes back to the
host for them. Only small host values take part: the integer boxes and cv2's Gaussian
taps (computed once per kernel size, no pixels).
"""
from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from models.musetalk.crop import (
    BLUR_RATIO,
    CROP_SIZE,
    UPPER_BOUNDARY_RATIO,
    CropGeometry,
    read_region,
)


def resize_image(image: torch.Tensor, size: tuple[int, int], mode: str, antialias: bool = False) -> torch.Tensor:
    """Resize a uint8 HxW or HxWxC tensor to size = (height, width), rounded back to uint8.

    mode "bilinear" without antialias samples like cv2.INTER_LINEAR (pixel centres, no prefilter).
    """
    x = image[None, None].float() if image.dim() == 2 else image.permute(2, 0, 1)[None].float()
    y = F.interpolate(x, size=size, mode=mode, align_corners=False, antialias=antialias)
    y = y.round().clamp(0, 255).to(torch.uint8)[0]
    return y[0] if image.dim() == 2 else y.permute(1, 2, 0)


def face_crop_tensor(image: torch.Tensor, geometry: CropGeometry, size: int = CROP_SIZE) -> torch.Tensor:
    """The face box resized to size x size (uint8 HxWx3 on the image's device).

    Official MuseTalk resizes with cv2 Lanczos-4, which torch does not have. Antialiased
    bicubic is the closest torch filter (a windowed-sinc approximation too, prefiltered
    when shrinking, as cv2's Lanczos is); on the sample faces it differs from the Lanczos
    crop by 0.1 grey level on average (99% of pixels within 1), and it keeps the frame on
    the device instead of a host round trip per face.
    """
    return resize_image(read_region(image, geometry.face_box), (size, size), "bicubic", antialias=True)


def place_face_tensor(paste_region: torch.Tensor, geometry: CropGeometry, generated: torch.Tensor) -> torch.Tensor:
    """A copy of the paste box's pixels with `generated` (uint8 HxWx3) resized into the face box,
    bilinear as the official cv2.INTER_LINEAR."""
    width, height = geometry.face_size
    pixels = paste_region.clone()
    fx1, fy1, fx2, fy2 = geometry.face_in_paste
    pixels[fy1:fy2, fx1:fx2] = resize_image(generated, (height, width), "bilinear")
    return pixels


def finish_mask_tensor(face_mask: torch.Tensor, geometry: CropGeometry) -> torch.Tensor:
    """`crop.finish_mask` on the device: paste-box mask (uint8 0-255) -> float32 alpha in [0, 1].

    Same kept region and the same Gaussian as cv2.GaussianBlur(k, sigma 0) with its
    reflected (BORDER_REFLECT_101) edges, rounded to whole grey levels as cv2's uint8 output is.
    """
    side = geometry.paste_side
    fx1, fy1, fx2, fy2 = geometry.face_in_paste
    kept = torch.zeros((side, side), dtype=torch.float32, device=face_mask.device)
    kept[fy1:fy2, fx1:fx2] = face_mask[fy1:fy2, fx1:fx2].float()
    kept[: int(side * UPPER_BOUNDARY_RATIO)] = 0
    kernel = int(BLUR_RATIO * side // 2 * 2) + 1
    taps = torch.from_numpy(_gaussian_taps(kernel)).to(face_mask.device)
    radius = kernel // 2
    x = F.pad(kept[None, None], (radius, radius, radius, radius), mode="reflect")
    x = F.conv2d(x, taps.view(1, 1, 1, kernel))
    x = F.conv2d(x, taps.view(1, 1, kernel, 1))
    return x[0, 0].round().clamp(0, 255) / 255.0


@lru_cache(maxsize=64)
def _gaussian_taps(kernel: int) -> np.ndarray:
    """cv2's 1-D Gaussian for an odd kernel size and sigma 0 (its fixed tables up to 7 taps)."""
    return cv2.getGaussianKernel(kernel, 0).astype(np.float32).ravel()
