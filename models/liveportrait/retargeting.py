"""S and R: the stitching and retargeting MLPs (keys `mlp.0.weight` ... `mlp.2k.bias`)."""
from __future__ import annotations

import torch
from torch import nn

from .config import MLPConfig


class StitchingRetargetingNetwork(nn.Module):
    """Linear/ReLU stack; the Linear layers sit at even indices of `mlp`."""

    def __init__(self, cfg: MLPConfig) -> None:
        super().__init__()
        self.cfg = cfg
        layers: list[nn.Module] = []
        sizes = [cfg.input_size, *cfg.hidden_sizes]
        for cin, cout in zip(sizes[:-1], sizes[1:]):
            layers += [nn.Linear(cin, cout), nn.ReLU(inplace=True)]
        layers.append(nn.Linear(sizes[-1], cfg.output_size))
        self.mlp = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(x)
