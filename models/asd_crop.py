"""Face crops for Light-ASD, and face tracks resampled to its 25 fps.

The model was trained on crops made like this (official Columbia_test.crop_video):
the box's half-size s = max(w, h) / 2 and centre are median-smoothed over 13 frames;
the crop spans s*(1+cs) either side of the centre horizontally and from s above to
s*(1+2cs) below the centre vertically (cs = 0.40, more room below for the mouth); pixels
outside the frame are grey 110; the crop is resized to 224x224 and its centre 112x112
kept, in grey.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import cv2
import numpy as np
from scipy.ndimage import median_filter

ASD_FPS = 25  # Light-ASD frame rate, frames per second
CROP_SCALE = 0.40
PAD_VALUE = 110
RESIZED = 224
CROP_SIZE = 112
SMOOTH_FRAMES = 13


@dataclass
class ResampledTrack:
    """A face track on the 25 fps grid: frame k is at time k * 40 ms of the video.

    frame_indices: [M] int, consecutive; boxes: [M, 4] float [x1, y1, x2, y2] pixels,
    linearly interpolated between the detections.
    """

    frame_indices: np.ndarray
    boxes: np.ndarray

    @property
    def times_ms(self) -> np.ndarray:
        return self.frame_indices * (1000.0 / ASD_FPS)

    def __len__(self) -> int:
        return int(self.frame_indices.size)


@dataclass
class CropWindow:
    """Smoothed crop geometry of one frame: centre (cx, cy) and half-size s, in pixels."""

    cx: float
    cy: float
    half_size: float


def resample_track(times_ms: Sequence[float], boxes: Sequence[Sequence[float]] | np.ndarray) -> ResampledTrack:
    """Put a track's detections (any rate, sorted or not) on the 25 fps grid between its first and last time.

    Boxes are interpolated linearly per coordinate, as the official tracker does between
    detections. A grid frame counts when its time lies within the track's span (1 ms slack
    for rounded timestamps). A track shorter than one grid step gives an empty result.
    """
    t = np.asarray(times_ms, dtype=np.float64).reshape(-1)
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if t.size != b.shape[0]:
        raise ValueError(f"{t.size} times but {b.shape[0]} boxes")
    if t.size == 0:
        return ResampledTrack(np.zeros(0, dtype=np.int64), np.zeros((0, 4), dtype=np.float32))
    order = np.argsort(t, kind="stable")
    t, b = t[order], b[order]
    step_ms = 1000.0 / ASD_FPS
    first = int(np.ceil((t[0] - 1.0) / step_ms))
    last = int(np.floor((t[-1] + 1.0) / step_ms))
    frames = np.arange(max(first, 0), last + 1, dtype=np.int64)
    grid = frames * step_ms
    out = np.stack([np.interp(grid, t, b[:, j]) for j in range(4)], axis=1) if frames.size else np.zeros((0, 4))
    return ResampledTrack(frames, out.astype(np.float32))


def frames_shown_at(frame_times_ms: Sequence[float], times_ms: Sequence[float] | np.ndarray) -> np.ndarray:
    """Index of the video frame on screen at each time: the last frame whose time is <= it.

    This is how a video of any rate is sampled at 25 fps (a 30 fps clip repeats no frame
    and skips one in six). frame_times_ms must be increasing; times before the first
    frame map to frame 0. 0.5 ms slack absorbs rounded timestamps.
    """
    ft = np.asarray(frame_times_ms, dtype=np.float64)
    idx = np.searchsorted(ft, np.asarray(times_ms, dtype=np.float64) + 0.5, side="right") - 1
    return np.clip(idx, 0, max(ft.size - 1, 0))


def smooth_windows(boxes: np.ndarray) -> list[CropWindow]:
    """Per-frame crop windows from [M, 4] boxes: centre and half-size, 13-frame median filtered.

    The official code uses scipy.signal.medfilt, which pads with zeros and so shrinks the
    first and last 6 boxes of a track; we pad with the edge values instead.
    """
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    half = np.maximum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]) / 2
    cx = (b[:, 0] + b[:, 2]) / 2
    cy = (b[:, 1] + b[:, 3]) / 2
    if b.shape[0] > 1:
        half, cx, cy = (median_filter(v, size=SMOOTH_FRAMES, mode="nearest") for v in (half, cx, cy))
    return [CropWindow(float(x), float(y), float(s)) for x, y, s in zip(cx, cy, half)]


def crop_face(image_rgb: np.ndarray, window: CropWindow, crop_scale: float = CROP_SCALE) -> np.ndarray:
    """The 112x112 uint8 grey crop Light-ASD expects, from an HxWx3 RGB uint8 frame."""
    if window.half_size <= 0:
        raise ValueError(f"crop window has no size: {window}")
    s = window.half_size
    pad = int(s * (1 + 2 * crop_scale))
    # Bounds in the official zero-based coordinates of the frame padded by `pad` on each side.
    top = int(window.cy + pad - s)
    bottom = int(window.cy + pad + s * (1 + 2 * crop_scale))
    left = int(window.cx + pad - s * (1 + crop_scale))
    right = int(window.cx + pad + s * (1 + crop_scale))
    h, w = image_rgb.shape[:2]
    top, bottom = max(top, 0), min(bottom, h + 2 * pad)
    left, right = max(left, 0), min(right, w + 2 * pad)
    if bottom <= top or right <= left:
        raise ValueError(f"crop window {window} is empty on a {w}x{h} frame")
    region = np.full((bottom - top, right - left), PAD_VALUE, dtype=np.uint8)
    y0, y1 = max(top - pad, 0), min(bottom - pad, h)
    x0, x1 = max(left - pad, 0), min(right - pad, w)
    if y1 > y0 and x1 > x0:
        # only the part of the frame under the window is made grey (per pixel, so the same values)
        grey = cv2.cvtColor(np.ascontiguousarray(image_rgb[y0:y1, x0:x1]), cv2.COLOR_RGB2GRAY)
        region[y0 + pad - top:y1 + pad - top, x0 + pad - left:x1 + pad - left] = grey
    resized = cv2.resize(region, (RESIZED, RESIZED), interpolation=cv2.INTER_LINEAR)
    m = (RESIZED - CROP_SIZE) // 2
    return resized[m:m + CROP_SIZE, m:m + CROP_SIZE]


def crop_track(images_rgb: Iterable[np.ndarray], boxes: np.ndarray, crop_scale: float = CROP_SCALE) -> np.ndarray:
    """Crops [M, 112, 112] uint8 for a track: one RGB frame per box, boxes smoothed over the whole track."""
    windows = smooth_windows(boxes)
    crops = [crop_face(img, win, crop_scale) for img, win in zip(images_rgb, windows)]
    if len(crops) != len(windows):
        raise ValueError(f"{len(crops)} frames for {len(windows)} boxes")
    return np.stack(crops) if crops else np.zeros((0, CROP_SIZE, CROP_SIZE), dtype=np.uint8)
