"""The sd-vae-ft-mse autoencoder MuseTalk works in: 256x256 RGB crops <-> [4, 32, 32] latents.

The weights are the diffusers layout of stabilityai/sd-vae-ft-mse (`config.json` plus
`diffusion_pytorch_model.safetensors` or `.bin`). That upload predates diffusers' renaming
of the mid-block attention (`query/key/value/proj_attn` -> `to_q/to_k/to_v/to_out.0`), so
both spellings are accepted.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from models.checkpoint import CheckpointError, load_strict, read_state_dict

WEIGHT_NAMES = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")
DEFAULT_SCALING = 0.18215  # Stable Diffusion's latent scale; absent from the 2022 config.json

_OLD_ATTENTION_NAMES = {"query": "to_q", "key": "to_k", "value": "to_v", "proj_attn": "to_out.0"}


def vae_weights_file(vae_dir: str | os.PathLike) -> Path | None:
    """The weights file present in `vae_dir` (safetensors preferred), or None."""
    for name in WEIGHT_NAMES:
        candidate = Path(vae_dir) / name
        if candidate.is_file():
            return candidate
    return None


def rename_legacy_attention(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map the pre-0.14 diffusers attention names of the VAE mid-block to the current ones."""
    renamed = {}
    for key, value in state.items():
        parts = key.split(".")
        if ".mid_block.attentions." in f".{key}" and len(parts) >= 2 and parts[-2] in _OLD_ATTENTION_NAMES:
            key = ".".join(parts[:-2] + [_OLD_ATTENTION_NAMES[parts[-2]], parts[-1]])
        renamed[key] = value
    return renamed


def load_vae(vae_dir: str | os.PathLike) -> tuple[torch.nn.Module, float]:
    """Build AutoencoderKL from `vae_dir/config.json` and load its weights strictly.

    Returns the model (CPU, eval) and its latent scaling factor.
    """
    from diffusers import AutoencoderKL

    vae_dir = Path(vae_dir)
    config_path = vae_dir / "config.json"
    try:
        config = json.loads(config_path.read_text())
    except FileNotFoundError as exc:
        raise CheckpointError(f"{config_path}: file not found") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{config_path}: not valid JSON ({exc})") from exc
    weights = vae_weights_file(vae_dir)
    if weights is None:
        raise CheckpointError(f"{vae_dir}: no {' or '.join(WEIGHT_NAMES)}")
    try:
        vae = AutoencoderKL.from_config(config)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{config_path}: not an AutoencoderKL configuration ({exc})") from exc
    load_strict(vae, rename_legacy_attention(read_state_dict(weights)), weights)
    scaling = float(config.get("scaling_factor") or DEFAULT_SCALING)
    return vae.eval().requires_grad_(False), scaling


class LatentCodec:
    """Encodes RGB crops to scaled latents and decodes latents back to uint8 RGB."""

    def __init__(self, vae: torch.nn.Module, scaling: float, device: torch.device, dtype: torch.dtype) -> None:
        self.vae = vae.to(device) if dtype == torch.float32 else vae.to(device=device, dtype=dtype)
        self.scaling = scaling
        self.device = device
        self.dtype = dtype

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """images [B, 3, H, W] in [-1, 1] -> latents [B, 4, H/8, W/8] times the scaling factor.

        Takes the posterior mean rather than a sample (the official code samples): the same
        crop then gives the same latents, which removes one source of frame-to-frame jitter.
        """
        posterior = self.vae.encode(images.to(device=self.device, dtype=self.dtype)).latent_dist
        return posterior.mean * self.scaling

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """latents [B, 4, h, w] (scaled) -> images [B, H, W, 3] uint8 RGB on the model's device."""
        images = self.vae.decode(latents.to(self.dtype) / self.scaling).sample
        images = (images.float() / 2 + 0.5).clamp(0, 1)
        return (images * 255).round().to(torch.uint8).permute(0, 2, 3, 1)

    @property
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.vae.parameters())
