"""The MuseTalk 1.5 UNet: a diffusers UNet2DConditionModel built from `musetalk.json`.

MuseTalk inpaints the lower half of a face in VAE latent space in a single UNet pass at
timestep 0 (no scheduler, no noise): input [B, 8, 32, 32] = masked-crop latents then
reference latents, cross-attention on [B, 50, 384] whisper features plus a sin/cos
positional encoding, output [B, 4, 32, 32] latents of the new face.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import torch

from models.checkpoint import CheckpointError, load_strict, read_state_dict

AUDIO_DIM = 384
AUDIO_TOKENS = 50


def read_unet_config(path: str | os.PathLike) -> dict[str, Any]:
    """Read `musetalk.json`, dropping diffusers' private `_class_name`/`_diffusers_version` keys."""
    path = Path(path)
    try:
        config = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise CheckpointError(f"{path}: file not found") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(config, dict):
        raise CheckpointError(f"{path}: expected a JSON object with the UNet configuration")
    return {k: v for k, v in config.items() if not k.startswith("_")}


def build_unet(config: dict[str, Any], on_meta: bool = False) -> torch.nn.Module:
    """Build the UNet2DConditionModel for `config`; on the meta device when weights follow."""
    from diffusers import UNet2DConditionModel

    if on_meta:
        with torch.device("meta"):
            return UNet2DConditionModel(**config)
    return UNet2DConditionModel(**config)


def load_unet(config_path: str | os.PathLike, weights_path: str | os.PathLike) -> torch.nn.Module:
    """Build the UNet from `musetalk.json` and load `unet.pth` (a plain state_dict) strictly, on the CPU."""
    config = read_unet_config(config_path)
    try:
        unet = build_unet(config, on_meta=True)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{config_path}: not a UNet2DConditionModel configuration ({exc})") from exc
    state = read_state_dict(weights_path)
    load_strict(unet, state, weights_path, assign=True)
    return unet.eval().requires_grad_(False)


def positional_encoding(length: int = AUDIO_TOKENS, dim: int = AUDIO_DIM) -> torch.Tensor:
    """The Transformer sin/cos table [length, dim] MuseTalk adds to the audio tokens.

    Even channels hold sin(pos * 10000^(-2i/dim)), odd channels the cos of the same angle.
    """
    position = torch.arange(length, dtype=torch.float32).unsqueeze(1)
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(length, dim)
    table[:, 0::2] = torch.sin(position * freq)
    table[:, 1::2] = torch.cos(position * freq)
    return table


class MuseTalkUNet:
    """The UNet plus its positional encoding: one call maps latents and audio to new latents."""

    def __init__(self, unet: torch.nn.Module, device: torch.device, dtype: torch.dtype) -> None:
        self.model = unet.to(device) if dtype == torch.float32 else unet.to(device=device, dtype=dtype)
        self.device = device
        self.dtype = dtype
        self.pe = positional_encoding().to(device=device, dtype=dtype)
        self.timestep = torch.zeros(1, device=device, dtype=torch.long)

    @torch.no_grad()
    def __call__(self, latents: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        """latents [B, 8, h, w] (masked then reference), audio [B, 50, 384] -> latents [B, 4, h, w]."""
        audio = audio.to(device=self.device, dtype=self.dtype) + self.pe[: audio.shape[1]]
        latents = latents.to(device=self.device, dtype=self.dtype)
        return self.model(latents, self.timestep, encoder_hidden_states=audio).sample

    @property
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())
