"""CompositeStage: blends each mouth patch into its frame with the patch's feathered alpha.

Only the patch rectangles are touched (float math on those crops alone); everything else
in the frame stays bit-identical to the decoded input. Frames and patches are numpy arrays
on the host path and torch tensors on the device path (the same math, in torch, there).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from models.engine import MouthPatch
from stream.device import is_tensor
from stream.frame import Frame
from stream.stage import Stage


def blend_patch(image: Any, patch: MouthPatch) -> None:
    """In place: image[region] = alpha * patch + (1 - alpha) * image[region], clipped to the frame.

    image and patch are both numpy (host) or both torch tensors on one device.
    """
    height, width = image.shape[:2]
    h, w = patch.alpha.shape[:2]
    x0, y0 = max(0, patch.x), max(0, patch.y)
    x1, y1 = min(width, patch.x + w), min(height, patch.y + h)
    if x1 <= x0 or y1 <= y0:
        return
    px0, py0 = x0 - patch.x, y0 - patch.y
    alpha = patch.alpha[py0:py0 + (y1 - y0), px0:px0 + (x1 - x0), None]
    source = patch.pixels[py0:py0 + (y1 - y0), px0:px0 + (x1 - x0)]
    region = image[y0:y1, x0:x1]
    offset = 0.0 if patch.truncate else 0.5
    if is_tensor(image):
        region = region.float()
        blended = region + alpha * (source.float() - region)
        image[y0:y1, x0:x1] = (blended + offset).clamp(0, 255).to(image.dtype)
        return
    blended = source.astype(np.float32)  # in place: region + alpha * (source - region) + offset
    blended -= region
    blended *= alpha
    blended += region
    blended += offset
    image[y0:y1, x0:x1] = np.clip(blended, 0, 255, out=blended)  # truncated to 8 bits as astype does


def copy_image(image: Any) -> Any:
    """A copy of a frame's pixels of the same kind (numpy array or tensor on its device)."""
    return image.clone() if is_tensor(image) else image.copy()


class CompositeStage(Stage):
    name = "composite"

    def process(self, frame: Frame):
        patches = frame.notes.pop("patches", ())
        if patches and not is_tensor(frame.image) and not frame.image.flags.writeable:
            frame.image = frame.image.copy()
        for patch in patches:
            blend_patch(frame.image, patch)
        return (frame,)
