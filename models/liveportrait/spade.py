"""G, the SPADE decoder: warped 2D features (B, 256, 64, 64) -> image (B, 3, 512, 512) in [0, 1]."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import SPADEResnetBlock
from .config import SpadeConfig


class SPADEDecoder(nn.Module):
    def __init__(self, cfg: SpadeConfig = SpadeConfig()) -> None:
        super().__init__()
        self.cfg = cfg
        cin = min(cfg.max_features, cfg.block_expansion * 2**cfg.num_down_blocks)
        hid = cfg.spade_hidden
        self.fc = nn.Conv2d(cin, 2 * cin, 3, padding=1)
        for i in range(6):
            self.add_module(f"G_middle_{i}", SPADEResnetBlock(2 * cin, 2 * cin, cin, hid))
        self.up_0 = SPADEResnetBlock(2 * cin, cin, cin, hid)
        self.up_1 = SPADEResnetBlock(cin, cfg.out_channels, cin, hid)
        self.up = nn.Upsample(scale_factor=2)
        if cfg.upscale is None or cfg.upscale <= 1:
            self.conv_img = nn.Conv2d(cfg.out_channels, 3, 3, padding=1)
        else:
            self.conv_img = nn.Sequential(
                nn.Conv2d(cfg.out_channels, 3 * cfg.upscale**2, kernel_size=3, padding=1),
                nn.PixelShuffle(upscale_factor=cfg.upscale),
            )

    def forward(self, feature: torch.Tensor) -> torch.Tensor:
        seg = feature
        x = self.fc(feature)
        for i in range(6):
            x = getattr(self, f"G_middle_{i}")(x, seg)
        x = self.up_1(self.up(self.up_0(self.up(x), seg)), seg)
        return torch.sigmoid(self.conv_img(F.leaky_relu(x, 0.2)))
