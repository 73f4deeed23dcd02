"""F, the appearance feature extractor: a face crop -> a 3D feature volume."""
from __future__ import annotations

import torch
from torch import nn

from .blocks import DownBlock2d, ResBlock3d, SameBlock2d
from .config import AppearanceConfig


class AppearanceFeatureExtractor(nn.Module):
    """(B, 3, 256, 256) in [0, 1] -> (B, 32, 16, 64, 64) with the official dimensions."""

    def __init__(self, cfg: AppearanceConfig = AppearanceConfig()) -> None:
        super().__init__()
        if cfg.reshape_channel * cfg.reshape_depth != cfg.max_features:
            raise ValueError("reshape_channel * reshape_depth must equal max_features")
        self.cfg = cfg
        self.first = SameBlock2d(cfg.image_channel, cfg.block_expansion)
        widths = [min(cfg.max_features, cfg.block_expansion * 2**i) for i in range(cfg.num_down_blocks + 1)]
        self.down_blocks = nn.ModuleList(
            DownBlock2d(widths[i], widths[i + 1]) for i in range(cfg.num_down_blocks)
        )
        self.second = nn.Conv2d(widths[-1], cfg.max_features, kernel_size=1, stride=1)
        self.resblocks_3d = nn.Sequential()
        for i in range(cfg.num_resblocks):
            self.resblocks_3d.add_module(f"3dr{i}", ResBlock3d(cfg.reshape_channel))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        out = self.first(image)
        for block in self.down_blocks:
            out = block(out)
        out = self.second(out)
        b, _, h, w = out.shape
        volume = out.view(b, self.cfg.reshape_channel, self.cfg.reshape_depth, h, w)
        return self.resblocks_3d(volume)
