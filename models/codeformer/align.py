"""Face alignment for CodeFormer as facexlib's FaceRestoreHelper does it, on tensors.

Each face is warped by its 5 keypoints onto the FFHQ 512 template (a similarity fitted
with cv2 LMEDS), bilinear, with the constant grey fill facexlib gives cv2 outside the
frame. facexlib works on BGR images, so its borderValue=(135, 133, 132) is B, G, R: in
this project's RGB frames the fill is (132, 133, 135). The crop is a uint8 image there,
so it is rounded to uint8 levels here.
"""
from __future__ import annotations

import cv2
import numpy as np
import torch

from models.liveportrait.crop import warp_affine_torch

# facexlib's 5 landmarks of an FFHQ-aligned 512x512 face: left eye, right eye, nose,
# left and right mouth corners (image left/right, the InsightFace order).
FFHQ_TEMPLATE_512 = np.array(
    [[192.98138, 239.94708], [318.90277, 240.1936], [256.63416, 314.01935],
     [201.26117, 371.41043], [313.08905, 371.15118]],
    dtype=np.float32,
)
FILL_BGR = (135.0, 133.0, 132.0)
"""facexlib's borderValue, given to cv2 with a BGR image."""
FILL_RGB = FILL_BGR[::-1]
"""The same grey in this project's RGB channel order: (132, 133, 135)."""
GRAY_THRESHOLD = 10.0
"""facexlib's is_gray: mean variance of the channel differences at most this (8-bit levels squared)."""


def align_matrix(kps: np.ndarray, size: int) -> np.ndarray:
    """2x3 similarity from frame pixels to the FFHQ template scaled to `size` (cv2 LMEDS, as facexlib)."""
    template = FFHQ_TEMPLATE_512 * (size / 512.0)
    affine, _ = cv2.estimateAffinePartial2D(np.asarray(kps, np.float32).reshape(5, 2), template, method=cv2.LMEDS)
    if affine is None:
        raise ValueError("could not align face: degenerate keypoints")
    return affine


def align_face(frame: torch.Tensor, affine: np.ndarray, size: int) -> torch.Tensor:
    """(1, 3, H, W) float 0..255 RGB frame -> (1, 3, size, size) aligned face, as
    cv2.warpAffine(bgr, affine, (size, size), borderValue=FILL_BGR): bilinear taps outside
    the frame read the fill, and the result holds uint8 levels (rounded)."""
    both = torch.cat([frame, torch.ones_like(frame[:, :1])], dim=1)
    warped = warp_affine_torch(both, affine[None], (size, size), padding_mode="zeros")
    fill = torch.tensor(FILL_RGB, dtype=frame.dtype, device=frame.device).view(1, 3, 1, 1)
    crop = warped[:, :3] + (1 - warped[:, 3:]) * fill
    return torch.floor(crop + 0.5).clamp(0, 255)


def is_gray(frame: torch.Tensor, threshold: float = GRAY_THRESHOLD) -> bool:
    """facexlib's is_gray on a (1, 3, H, W) or (3, H, W) 0..255 frame: the mean of
    var(R - G), var(G - B), var(B - R) over the pixels is at most `threshold`."""
    x = frame.reshape(3, -1).double()
    diffs = torch.stack([x[0] - x[1], x[1] - x[2], x[2] - x[0]])
    return bool(diffs.var(dim=1, unbiased=False).mean() <= threshold)


def to_gray_like(restored: torch.Tensor, reference: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """facexlib's grey path for one restored face: bgr2gray (0.2989 R + 0.5870 G + 0.1140 B,
    float, on all three channels), then adain_npy onto the aligned input face: per channel
    mean and std (population variance + eps). (1, 3, S, S) float in, float out (unclipped)."""
    r, g, b = restored[:, 0:1].double(), restored[:, 1:2].double(), restored[:, 2:3].double()
    gray = (0.2989 * r + 0.5870 * g + 0.1140 * b).expand(-1, 3, -1, -1)

    def stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        flat = x.double().flatten(2)
        return flat.mean(2)[..., None, None], (flat.var(2, unbiased=False) + eps).sqrt()[..., None, None]

    s_mean, s_std = stats(reference)
    c_mean, c_std = stats(gray)
    return ((gray - c_mean) / c_std * s_std + s_mean).to(restored.dtype)
