"""MuseTalk 1.5 crop and paste geometry, from 68 iBUG landmarks.

The face box spans the landmarks horizontally; vertically it runs from the chin
(+ `extra_margin` pixels, 10 in 1.5) up to as far above the nose point 29 as the chin is
below it, so the nose sits mid-box and the lower half the UNet inpaints is mouth and jaw.
The result is pasted through a square box 1.5x the face box, with a mask that is zero in
the upper half of that square and feathered with a Gaussian.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

CROP_SIZE = 256
EXTRA_MARGIN = 10  # pixels below the chin, MuseTalk 1.5 default
PASTE_EXPAND = 1.5
UPPER_BOUNDARY_RATIO = 0.5
BLUR_RATIO = 0.05  # Gaussian kernel as a fraction of the paste box side
NOSE_POINT = 29
JAW = slice(0, 17)
NOSE = slice(27, 36)


@dataclass(frozen=True)
class CropGeometry:
    """Integer pixel boxes in frame coordinates, [x1, y1, x2, y2], x2/y2 exclusive.

    face_box is what the UNet sees (resized to 256x256); paste_box is the square 1.5x
    box the result is blended through (it may extend past the frame edges).
    """

    face_box: tuple[int, int, int, int]
    paste_box: tuple[int, int, int, int]

    @property
    def face_size(self) -> tuple[int, int]:
        """(width, height) of the face box in pixels."""
        x1, y1, x2, y2 = self.face_box
        return x2 - x1, y2 - y1

    @property
    def paste_side(self) -> int:
        return self.paste_box[2] - self.paste_box[0]

    @property
    def face_in_paste(self) -> tuple[int, int, int, int]:
        """The face box in paste-box coordinates."""
        x1, y1, x2, y2 = self.face_box
        px, py = self.paste_box[:2]
        return x1 - px, y1 - py, x2 - px, y2 - py


def face_box_from_landmarks(
    landmarks: np.ndarray,
    frame_shape: tuple[int, ...],
    fallback_bbox: np.ndarray | None = None,
    extra_margin: int = EXTRA_MARGIN,
) -> tuple[int, int, int, int]:
    """MuseTalk 1.5's face box from 68 landmarks (frame pixels); falls back to the detector box.

    The fallback is taken, as officially, when the landmark box is empty or starts left of the frame.
    """
    height, width = int(frame_shape[0]), int(frame_shape[1])
    lm = np.asarray(landmarks, dtype=np.float32).reshape(-1, 2).astype(np.int32)
    x1, x2 = int(lm[:, 0].min()), int(lm[:, 0].max())
    chin = int(lm[:, 1].max())
    nose_y = int(lm[NOSE_POINT, 1])
    y1 = max(0, nose_y - (chin - nose_y))
    y2 = min(chin + extra_margin, height)
    x2 = min(x2, width)
    if x2 - x1 <= 0 or y2 - y1 <= 0 or x1 < 0:
        if fallback_bbox is None:
            raise ValueError(f"landmarks give an empty face box {(x1, y1, x2, y2)} and no detector box")
        bx1, by1, bx2, by2 = (int(round(float(v))) for v in fallback_bbox)
        x1, y1 = max(bx1, 0), max(by1, 0)
        x2, y2 = min(bx2, width), min(by2 + extra_margin, height)
        if x2 - x1 <= 0 or y2 - y1 <= 0:
            raise ValueError(f"face box {(bx1, by1, bx2, by2)} lies outside the {width}x{height} frame")
    return x1, y1, x2, y2


def paste_box_for(face_box: tuple[int, int, int, int], expand: float = PASTE_EXPAND) -> tuple[int, int, int, int]:
    """The square paste box: centred on the face box, half-side int(max(w, h) // 2 * expand)."""
    x1, y1, x2, y2 = face_box
    cx, cy = (x1 + x2) // 2, (y1 + y2) // 2
    half = int(max(x2 - x1, y2 - y1) // 2 * expand)
    return cx - half, cy - half, cx + half, cy + half


def crop_geometry(landmarks: np.ndarray, frame_shape: tuple[int, ...], fallback_bbox: np.ndarray | None = None) -> CropGeometry:
    face_box = face_box_from_landmarks(landmarks, frame_shape, fallback_bbox)
    return CropGeometry(face_box, paste_box_for(face_box))


def read_region(image: Any, box: tuple[int, int, int, int]) -> Any:
    """Pixels of `box` (which may extend past the frame) as uint8 HxWx3, zeros outside the frame.

    Of the image's kind: a numpy array gives a numpy array, a torch tensor a tensor on its
    own device (a frame on the GPU stays there).
    """
    x1, y1, x2, y2 = box
    height, width = int(image.shape[0]), int(image.shape[1])
    shape = (y2 - y1, x2 - x1, 3)
    out = np.zeros(shape, dtype=np.uint8) if isinstance(image, np.ndarray) else image.new_zeros(shape)
    sx1, sy1, sx2, sy2 = max(x1, 0), max(y1, 0), min(x2, width), min(y2, height)
    if sx2 > sx1 and sy2 > sy1:
        out[sy1 - y1 : sy2 - y1, sx1 - x1 : sx2 - x1] = image[sy1:sy2, sx1:sx2]
    return out


def face_crop(image: Any, geometry: CropGeometry, size: int = CROP_SIZE) -> np.ndarray:
    """The face box resized to size x size with Lanczos, as the UNet was trained."""
    return cv2.resize(read_region(image, geometry.face_box), (size, size), interpolation=cv2.INTER_LANCZOS4)


def finish_mask(face_mask: np.ndarray, geometry: CropGeometry) -> np.ndarray:
    """Official post-processing of a paste-box mask (uint8 0-255, side x side) -> float32 alpha in [0, 1].

    Keeps only the face box, zeroes the upper half of the paste box, and feathers with a
    Gaussian whose kernel is 5% of the side (odd).
    """
    side = geometry.paste_side
    fx1, fy1, fx2, fy2 = geometry.face_in_paste
    kept = np.zeros((side, side), dtype=np.uint8)
    kept[fy1:fy2, fx1:fx2] = face_mask[fy1:fy2, fx1:fx2]
    kept[: int(side * UPPER_BOUNDARY_RATIO)] = 0
    kernel = int(BLUR_RATIO * side // 2 * 2) + 1
    return cv2.GaussianBlur(kept, (kernel, kernel), 0).astype(np.float32) / 255.0


def landmark_jaw_mask(landmarks: np.ndarray, geometry: CropGeometry, extra_margin: int = EXTRA_MARGIN) -> np.ndarray:
    """A lower-face mask (uint8 0/255, paste-box sized) from 68 landmarks, for when no parsing model is loaded.

    Approximates face parsing's "jaw" mode: the region inside the jaw line (points 0-16)
    with the chin lowered by `extra_margin` pixels so an opening mouth has room, slightly
    dilated, minus the nose (points 27-35). `finish_mask` then keeps its lower half.
    """
    side = geometry.paste_side
    lm = np.asarray(landmarks, dtype=np.float32).reshape(-1, 2) - np.asarray(geometry.paste_box[:2], dtype=np.float32)
    jaw = lm[JAW]
    top_y = min(jaw[0, 1], jaw[-1, 1])
    depth = max(float(jaw[:, 1].max() - top_y), 1.0)
    lowered = jaw.copy()
    lowered[:, 1] += extra_margin * np.clip((jaw[:, 1] - top_y) / depth, 0.0, 1.0)
    mask = np.zeros((side, side), dtype=np.uint8)
    cv2.fillPoly(mask, [np.round(lowered).astype(np.int32)], 255)
    grow = max(3, int(round(side * 0.02)) | 1)
    mask = cv2.dilate(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (grow, grow)))
    nose = np.zeros_like(mask)
    cv2.fillConvexPoly(nose, cv2.convexHull(np.round(lm[NOSE]).astype(np.int32)), 255)
    return cv2.bitwise_and(mask, cv2.bitwise_not(nose))


def place_face(paste_region: np.ndarray, geometry: CropGeometry, generated: np.ndarray) -> np.ndarray:
    """A copy of the paste box's pixels with `generated` (any size, uint8 RGB) resized into the face box."""
    width, height = geometry.face_size
    pixels = paste_region.copy()
    fx1, fy1, fx2, fy2 = geometry.face_in_paste
    pixels[fy1:fy2, fx1:fx2] = cv2.resize(generated, (width, height), interpolation=cv2.INTER_LINEAR)
    return pixels


def clip_to_frame(geometry: CropGeometry, pixels: Any, alpha: Any,
                  frame_shape: tuple[int, ...]) -> tuple[int, int, Any, Any]:
    """Cut a paste-box patch (numpy arrays or torch tensors) to the frame: (x, y, pixels, alpha), x, y >= 0."""
    height, width = int(frame_shape[0]), int(frame_shape[1])
    x1, y1, x2, y2 = geometry.paste_box
    sx1, sy1, sx2, sy2 = max(x1, 0), max(y1, 0), min(x2, width), min(y2, height)
    pixels = pixels[sy1 - y1 : sy2 - y1, sx1 - x1 : sx2 - x1]
    alpha = alpha[sy1 - y1 : sy2 - y1, sx1 - x1 : sx2 - x1]
    if isinstance(pixels, np.ndarray):
        return sx1, sy1, np.ascontiguousarray(pixels), np.ascontiguousarray(alpha)
    return sx1, sy1, pixels.contiguous(), alpha.contiguous()
