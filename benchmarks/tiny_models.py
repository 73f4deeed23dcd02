"""Tiny random MuseTalk 1.5 models in the official MODELS_DIR layout, for the neural scenario.

The benchmark cannot download the real weights; with these the MuseTalk engine runs its
whole path (whisper features, VAE encode, UNet, VAE decode, blending) on networks a few
hundred times smaller, so the scenario measures the pipeline's overhead around a neural
engine, not MuseTalk's own speed. Needs torch, diffusers and transformers (the [neural] extra).
"""
from __future__ import annotations

import json
from pathlib import Path

# The official musetalkV15/musetalk.json (MuseTalk 1.5: 686 tensors, 849,947,844 parameters).
OFFICIAL_UNET_CONFIG = {
    "_class_name": "UNet2DConditionModel",
    "_diffusers_version": "0.6.0.dev0",
    "act_fn": "silu",
    "attention_head_dim": 8,
    "block_out_channels": [320, 640, 1280, 1280],
    "center_input_sample": False,
    "cross_attention_dim": 384,
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "downsample_padding": 1,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "in_channels": 8,
    "layers_per_block": 2,
    "mid_block_scale_factor": 1,
    "norm_eps": 1e-05,
    "norm_num_groups": 32,
    "out_channels": 4,
    "sample_size": 64,
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
}

# The same UNet with narrow blocks: same block types, same conditioning (cross-attention on
# 384-d whisper features), 8 -> 4 latent channels.
TINY_UNET_CONFIG = {**OFFICIAL_UNET_CONFIG, "block_out_channels": [32, 32, 64, 64], "layers_per_block": 1,
                    "norm_num_groups": 8}


def write_tiny_musetalk(root: Path, seed: int = 0) -> Path:
    """Save a tiny UNet, VAE and whisper encoder under `root` (musetalkV15/, sd-vae/, whisper/).

    No face-parsing model: the engine then blends through its landmark mask, its
    documented fallback. Returns `root`.
    """
    import torch
    from diffusers import AutoencoderKL
    from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperModel

    from models.musetalk.engine import UNET_DIR, VAE_DIR, WHISPER_DIR
    from models.musetalk.unet import build_unet

    torch.manual_seed(seed)
    unet_dir = root / UNET_DIR
    unet_dir.mkdir(parents=True, exist_ok=True)
    (unet_dir / "musetalk.json").write_text(json.dumps(TINY_UNET_CONFIG))
    unet = build_unet({k: v for k, v in TINY_UNET_CONFIG.items() if not k.startswith("_")})
    torch.save(unet.state_dict(), unet_dir / "unet.pth")
    AutoencoderKL(in_channels=3, out_channels=3, down_block_types=["DownEncoderBlock2D"] * 4,
                  up_block_types=["UpDecoderBlock2D"] * 4, block_out_channels=[8, 16, 16, 16],
                  layers_per_block=1, latent_channels=4, norm_num_groups=8,
                  sample_size=256).save_pretrained(root / VAE_DIR)
    whisper = WhisperModel(WhisperConfig(
        d_model=384, encoder_layers=4, encoder_attention_heads=2, encoder_ffn_dim=64, decoder_layers=1,
        decoder_attention_heads=2, decoder_ffn_dim=64, vocab_size=64, num_mel_bins=80,
        max_source_positions=1500, max_target_positions=32, pad_token_id=0, bos_token_id=1,
        eos_token_id=2, decoder_start_token_id=1))
    whisper.save_pretrained(root / WHISPER_DIR)
    WhisperFeatureExtractor().save_pretrained(root / WHISPER_DIR)
    return root


def neural_available() -> bool:
    """Whether torch, diffusers and transformers are importable (the neural scenario can run)."""
    import importlib.util

    return all(importlib.util.find_spec(name) is not None for name in ("torch", "diffusers", "transformers"))
