"""UploadStage and DownloadStage: the only places a frame crosses between host and device.

On the neural path the tracker and planner need host pixels (dlib, onnxruntime), so a
frame is uploaded after planning, once, as an HxWx3 uint8 tensor on the engine's device;
lip-sync, LivePortrait, the composite and CodeFormer work on it there, and it is
downloaded once, just before the encoder. Frames with nothing to render are never
uploaded: they go from decoder to encoder on the host untouched. When NVENC takes the
frames from the GPU (`stages.nv12`), every frame is uploaded and none comes back.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from stream.device import is_tensor
from stream.frame import Frame
from stream.stage import Stage


class UploadStage(Stage):
    """Moves the pixels of every frame with faces to render to `device` (a torch device).

    every_frame: upload the frames with nothing to render too, for an encoder that takes
    device frames only (NVENC fed from the GPU): each frame still crosses once.
    """

    name = "upload"

    def __init__(self, device: Any, every_frame: bool = False) -> None:
        self.device = device
        self.every_frame = every_frame
        self.uploaded = 0

    def process(self, frame: Frame):
        if self.every_frame or frame.notes.get("render"):
            frame.image = to_device(frame.image, self.device)
            self.uploaded += 1
        return (frame,)


class DownloadStage(Stage):
    """Brings device frames back to host numpy arrays for the encoder; host frames pass as they are."""

    name = "download"

    def __init__(self) -> None:
        self.downloaded = 0

    def process(self, frame: Frame):
        if is_tensor(frame.image):
            frame.image = frame.image.cpu().numpy()
            self.downloaded += 1
        return (frame,)


def to_device(image: np.ndarray, device: Any) -> Any:
    """An HxWx3 uint8 array as a tensor on `device` that the device path may write into."""
    import torch

    if not image.flags.writeable:
        image = image.copy()
    return torch.from_numpy(image).to(device)
