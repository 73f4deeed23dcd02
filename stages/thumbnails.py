"""Frame thumbnails for the shot detector: tiny YUV pictures read from a decoded frame's planes.

The decoder hands every decoded frame to `stages.shots.ShotDetector`, so the thumbnail is
made without an RGB conversion: 64 px wide, area-averaged from a point-sampled subset of
the planes (about 0.15 ms of CPU a 720p frame). `thumbnail_change` is the mean absolute
difference the cut and dissolve tests compare.
"""
from __future__ import annotations

import av
import cv2
import numpy as np

THUMB_WIDTH = 64
"""Thumbnail width in pixels; the height follows the frame's aspect (at least 8)."""
KEYFRAME_NOISE = 4.0
"""Grey levels of a thumbnail cell's change that an intra frame's quality pulse may cause.
An encoder's keyframe is coded afresh at its own quality, so on a still picture at high
crf the whole thumbnail shifts a little (mean change 1.3 against 0.05 around it: a spike),
but no cell by much: the change above 4 levels per cell is 0.04-0.07 there, against 1.6-38
at the cuts of the benchmark's edited videos. An intra frame is a cut only when that part
of its change alone passes `min_change`."""

_PLANAR_420 = ("yuv420p", "yuvj420p")
_CHANNEL_WEIGHTS = np.array([1.0, 0.5, 0.5], np.float32)
"""Luma counts fully in a thumbnail change, each chroma plane half."""


def _plane(av_frame: av.VideoFrame, index: int, width: int) -> np.ndarray:
    """A plane's pixels as a uint8 view (no copy), cropped to `width` columns."""
    plane = av_frame.planes[index]
    return np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)[:, :width]


def _shrink(plane: np.ndarray, size: tuple[int, int], oversample: int) -> np.ndarray:
    """Area-average a plane to `size` (w, h). A large plane is first point-sampled down to
    `oversample` times the size, so only a fraction of its pixels is read (luma 4x, chroma
    2x: 0.15 ms for a 720p frame, against 0.5 ms for an area average of every pixel)."""
    big = (oversample * size[0], oversample * size[1])
    if plane.shape[1] > big[0]:
        plane = cv2.resize(plane, big, interpolation=cv2.INTER_NEAREST)
    return cv2.resize(plane, size, interpolation=cv2.INTER_AREA)


def frame_thumbnail(av_frame: av.VideoFrame) -> np.ndarray:
    """THUMB_WIDTH-wide HxWx3 float32 YUV thumbnail of a decoded frame (0-255 levels).

    8-bit planar 4:2:0 and NV12 frames are read from their planes; any other format is
    reformatted small by libswscale first (slower, still well under a millisecond).
    """
    width, height = av_frame.width, av_frame.height
    size = (THUMB_WIDTH, max(8, int(round(THUMB_WIDTH * height / max(1, width)))))
    name = av_frame.format.name
    if name in _PLANAR_420:
        chroma = (width + 1) // 2
        planes = [_plane(av_frame, 0, width), _plane(av_frame, 1, chroma), _plane(av_frame, 2, chroma)]
    elif name == "nv12":
        uv = np.frombuffer(av_frame.planes[1], np.uint8).reshape(av_frame.planes[1].height, -1)
        uv = uv[:, :2 * ((width + 1) // 2)].reshape(uv.shape[0], -1, 2)
        planes = [_plane(av_frame, 0, width), uv[..., 0], uv[..., 1]]
    else:
        small = av_frame.reformat(width=size[0], height=size[1], format="yuv444p")
        planes = [_plane(small, k, size[0]) for k in range(3)]
    return np.dstack([_shrink(planes[0], size, 4), _shrink(planes[1], size, 2),
                      _shrink(planes[2], size, 2)]).astype(np.float32)


def thumbnail_change(a: np.ndarray, b: np.ndarray, noise: float = 0.0) -> float:
    """Mean absolute difference of two thumbnails in grey levels, chroma at half weight;
    each cell's difference less `noise` grey levels (none below zero)."""
    diff = np.abs(a - b)
    if noise:
        diff = np.maximum(diff - noise, 0.0)
    return float((diff @ _CHANNEL_WEIGHTS).sum()) / (diff.size // 3)


def is_intra(av_frame: av.VideoFrame) -> bool:
    """A keyframe or any intra-coded picture (its quality can pulse, see KEYFRAME_NOISE)."""
    return bool(av_frame.key_frame) or int(av_frame.pict_type) == 1  # AV_PICTURE_TYPE_I


def thumbnail_rgb(thumb: np.ndarray, width: int, height: int) -> np.ndarray:
    """A YUV thumbnail as a width x height uint8 RGB picture (what a network reads)."""
    yuv = np.clip(np.round(thumb), 0, 255).astype(np.uint8)
    return cv2.resize(cv2.cvtColor(yuv, cv2.COLOR_YUV2RGB), (width, height), interpolation=cv2.INTER_AREA)
