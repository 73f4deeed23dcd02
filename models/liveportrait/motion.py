"""M, the motion extractor: a ConvNeXtV2 backbone with heads for pose, expression, keypoints.

The official module wraps the backbone as `self.detector`, so checkpoint keys start with
`detector.` (e.g. `detector.downsample_layers.0.0.weight`, `detector.fc_exp.bias`).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .blocks import GRN, LayerNorm
from .config import MotionConfig


class ConvNeXtBlock(nn.Module):
    """Depthwise 7x7 conv, LayerNorm, MLP with GRN, residual (drop-path is training-only)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, kernel_size=7, padding=3, groups=dim)
        self.norm = LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU()
        self.grn = GRN(4 * dim)
        self.pwconv2 = nn.Linear(4 * dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.dwconv(x).permute(0, 2, 3, 1)
        y = self.pwconv2(self.grn(self.act(self.pwconv1(self.norm(y)))))
        return x + y.permute(0, 3, 1, 2)


@dataclass
class MotionOutput:
    """Raw head outputs. pitch/yaw/roll: (B, num_bins) logits; t: (B, 3); exp, kp: (B, 3K); scale: (B, 1)."""

    pitch: torch.Tensor
    yaw: torch.Tensor
    roll: torch.Tensor
    t: torch.Tensor
    exp: torch.Tensor
    scale: torch.Tensor
    kp: torch.Tensor


class ConvNeXtV2(nn.Module):
    def __init__(self, cfg: MotionConfig) -> None:
        super().__init__()
        dims = list(cfg.dims)
        self.downsample_layers = nn.ModuleList()
        self.downsample_layers.append(
            nn.Sequential(
                nn.Conv2d(cfg.in_chans, dims[0], kernel_size=4, stride=4),
                LayerNorm(dims[0], eps=1e-6, data_format="channels_first"),
            )
        )
        for i in range(len(dims) - 1):
            self.downsample_layers.append(
                nn.Sequential(
                    LayerNorm(dims[i], eps=1e-6, data_format="channels_first"),
                    nn.Conv2d(dims[i], dims[i + 1], kernel_size=2, stride=2),
                )
            )
        self.stages = nn.ModuleList(
            nn.Sequential(*[ConvNeXtBlock(dims[i]) for _ in range(depth)]) for i, depth in enumerate(cfg.depths)
        )
        self.norm = nn.LayerNorm(dims[-1], eps=1e-6)
        self.fc_kp = nn.Linear(dims[-1], 3 * cfg.num_kp)
        self.fc_scale = nn.Linear(dims[-1], 1)
        self.fc_pitch = nn.Linear(dims[-1], cfg.num_bins)
        self.fc_yaw = nn.Linear(dims[-1], cfg.num_bins)
        self.fc_roll = nn.Linear(dims[-1], cfg.num_bins)
        self.fc_t = nn.Linear(dims[-1], 3)
        self.fc_exp = nn.Linear(dims[-1], 3 * cfg.num_kp)

    def forward(self, x: torch.Tensor) -> MotionOutput:
        for down, stage in zip(self.downsample_layers, self.stages):
            x = stage(down(x))
        feat = self.norm(x.mean([-2, -1]))
        return MotionOutput(
            pitch=self.fc_pitch(feat),
            yaw=self.fc_yaw(feat),
            roll=self.fc_roll(feat),
            t=self.fc_t(feat),
            exp=self.fc_exp(feat),
            scale=self.fc_scale(feat),
            kp=self.fc_kp(feat),
        )


class MotionExtractor(nn.Module):
    """(B, 3, 256, 256) in [0, 1] -> MotionOutput."""

    def __init__(self, cfg: MotionConfig = MotionConfig()) -> None:
        super().__init__()
        if len(cfg.depths) != len(cfg.dims):
            raise ValueError("depths and dims must have the same length")
        self.cfg = cfg
        self.detector = ConvNeXtV2(cfg)

    def forward(self, x: torch.Tensor) -> MotionOutput:
        return self.detector(x)
