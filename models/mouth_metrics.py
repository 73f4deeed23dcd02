"""Mouth measures from 68 iBUG landmarks, normalised by face size.

Used to check lip-sync output: a landmark detector run on the rendered frames should see
the mouth open when the audio says so. The face size is the distance between the eye
centres, which mouth and jaw motion do not change.
"""
from __future__ import annotations

import numpy as np

# Inner-lip pairs (upper, lower) across the mouth: left, centre, right.
INNER_PAIRS = ((61, 67), (62, 66), (63, 65))


def interocular(landmarks: np.ndarray) -> float:
    """Distance in pixels between the eye centres (points 36-41 and 42-47)."""
    pts = np.asarray(landmarks, dtype=np.float64).reshape(68, 2)
    return float(np.linalg.norm(pts[36:42].mean(axis=0) - pts[42:48].mean(axis=0)))


def mouth_opening(landmarks: np.ndarray) -> float:
    """Inner-lip gap / inter-ocular distance (0 closed, about 0.5-0.7 for a wide "a").

    The gap is the mean of the three upper-to-lower inner-lip distances.
    """
    pts = np.asarray(landmarks, dtype=np.float64).reshape(68, 2)
    gap = np.mean([np.linalg.norm(pts[u] - pts[d]) for u, d in INNER_PAIRS])
    return float(gap / max(interocular(pts), 1e-6))


def mouth_width(landmarks: np.ndarray) -> float:
    """Outer mouth-corner distance (48-54) / inter-ocular distance."""
    pts = np.asarray(landmarks, dtype=np.float64).reshape(68, 2)
    return float(np.linalg.norm(pts[48] - pts[54]) / max(interocular(pts), 1e-6))


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio (dB) of two uint8 images of one shape."""
    mse = float(((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2).mean())
    return float(10 * np.log10(255.0 ** 2 / max(mse, 1e-6)))


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Mean structural similarity of two uint8 images (grey of RGB), Gaussian window sigma
    1.5 as in Wang et al. 2004 (K1 = 0.01, K2 = 0.03, L = 255)."""
    from scipy.ndimage import gaussian_filter

    def grey(x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, np.float64)
        return x @ np.array([0.299, 0.587, 0.114]) if x.ndim == 3 else x

    x, y = grey(a), grey(b)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mx, my = gaussian_filter(x, 1.5), gaussian_filter(y, 1.5)
    vx = gaussian_filter(x * x, 1.5) - mx * mx
    vy = gaussian_filter(y * y, 1.5) - my * my
    cxy = gaussian_filter(x * y, 1.5) - mx * my
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return float(s.mean())
