"""RGB frames on a torch device as NV12 encoder frames, converted where they are.

On the GPU path with NVENC, the frames never come back to the host: the colour conversion
runs on the device and PyAV wraps the two planes through DLPack; a CUDA frame carries its
own frames context, which h264_nvenc adopts (stream pix_fmt "cuda"). On the CPU the same
code gives a software NV12 frame, which is how it is tested here.

The conversion is the host path's (`stages.colour`: the source's matrix and range, chroma
the mean of each 2x2 block); against it, luma and chroma within 1 level.
"""
from __future__ import annotations

import av
import torch
import torch.nn.functional as F

from stages.colour import BT601, ColourSpace


def pad_to_even_tensor(image: torch.Tensor) -> torch.Tensor:
    """Replicate the last row/column so both dimensions are even, as `encode.pad_to_even`."""
    height, width = image.shape[:2]
    if width % 2 == 0 and height % 2 == 0:
        return image
    chw = image.permute(2, 0, 1)[None].float()
    padded = F.pad(chw, (0, width % 2, 0, height % 2), mode="replicate")
    return padded[0].permute(1, 2, 0).to(image.dtype)


def rgb_to_nv12(image: torch.Tensor, colour: ColourSpace = BT601) -> tuple[torch.Tensor, torch.Tensor]:
    """HxWx3 uint8 RGB (even H and W) -> (Y: HxW, UV: H/2 x W/2 x 2 interleaved), uint8, same device."""
    height, width = image.shape[:2]
    if height % 2 or width % 2:
        raise ValueError(f"NV12 needs an even frame size, got {width}x{height}")
    rgb = image.float()
    affine = torch.from_numpy(colour.to_yuv).to(rgb.device)
    matrix, offset = affine[:, :3], affine[:, 3]
    luma = rgb @ matrix[0] + offset[0]
    blocks = rgb.reshape(height // 2, 2, width // 2, 2, 3).mean(dim=(1, 3))
    chroma = blocks @ matrix[1:].T + offset[1:]
    return (luma.round().clamp(0, 255).to(torch.uint8).contiguous(),
            chroma.round().clamp(0, 255).to(torch.uint8).contiguous())


def nv12_frame(image: torch.Tensor, colour: ColourSpace = BT601) -> av.VideoFrame:
    """An RGB uint8 tensor as an NV12 VideoFrame on the tensor's device (odd sizes padded)."""
    luma, chroma = rgb_to_nv12(pad_to_even_tensor(image), colour)
    return av.VideoFrame.from_dlpack((luma, chroma), format="nv12")
