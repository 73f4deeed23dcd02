"""RGB frames on a torch device as NV12 encoder frames, converted where they are.

On the GPU path with NVENC, the frames never come back to the host: the colour conversion
runs on the device and PyAV wraps the two planes through DLPack; a CUDA frame carries its
own frames context, which h264_nvenc adopts (stream pix_fmt "cuda"). On the CPU the same
code gives a software NV12 frame, which is how it is tested here.

The conversion is BT.601 limited range, as the host path (`encode.yuv420p_frame`) and
swscale's default for this pair; chroma is the mean of each 2x2 block. Against OpenCV's
host conversion: luma within 1 level, chroma within 2.
"""
from __future__ import annotations

import av
import torch
import torch.nn.functional as F

# BT.601, limited range: rows give Y, U, V from R, G, B in 0-255.
_RGB_TO_YUV = torch.tensor([[65.481, 128.553, 24.966],
                            [-37.797, -74.203, 112.0],
                            [112.0, -93.786, -18.214]]) / 255.0
_OFFSET = torch.tensor([16.0, 128.0, 128.0])


def pad_to_even_tensor(image: torch.Tensor) -> torch.Tensor:
    """Replicate the last row/column so both dimensions are even, as `encode.pad_to_even`."""
    height, width = image.shape[:2]
    if width % 2 == 0 and height % 2 == 0:
        return image
    chw = image.permute(2, 0, 1)[None].float()
    padded = F.pad(chw, (0, width % 2, 0, height % 2), mode="replicate")
    return padded[0].permute(1, 2, 0).to(image.dtype)


def rgb_to_nv12(image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """HxWx3 uint8 RGB (even H and W) -> (Y: HxW, UV: H/2 x W/2 x 2 interleaved), uint8, same device."""
    height, width = image.shape[:2]
    if height % 2 or width % 2:
        raise ValueError(f"NV12 needs an even frame size, got {width}x{height}")
    rgb = image.float()
    matrix, offset = _RGB_TO_YUV.to(rgb.device), _OFFSET.to(rgb.device)
    luma = rgb @ matrix[0] + offset[0]
    blocks = rgb.reshape(height // 2, 2, width // 2, 2, 3).mean(dim=(1, 3))
    chroma = blocks @ matrix[1:].T + offset[1:]
    return (luma.round().clamp(0, 255).to(torch.uint8).contiguous(),
            chroma.round().clamp(0, 255).to(torch.uint8).contiguous())


def nv12_frame(image: torch.Tensor) -> av.VideoFrame:
    """An RGB uint8 tensor as an NV12 VideoFrame on the tensor's device (odd sizes padded)."""
    luma, chroma = rgb_to_nv12(pad_to_even_tensor(image))
    return av.VideoFrame.from_dlpack((luma, chroma), format="nv12")
