"""W, the warping network: moves F's feature volume from source to driving keypoints.

A dense motion network (3D hourglass) turns the sparse keypoint motion into a dense
deformation and an occlusion map; the volume is warped with grid_sample and flattened
to a 2D feature map for the SPADE decoder.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import Hourglass, SameBlock2d, kp2gaussian, make_coordinate_grid
from .config import WarpingConfig

KP_VARIANCE = 0.01  # Gaussian heatmap variance, in the [-1, 1] grid units


class DenseMotionNetwork(nn.Module):
    def __init__(self, cfg: WarpingConfig) -> None:
        super().__init__()
        dm = cfg.dense_motion
        self.num_kp = cfg.num_kp
        in_features = (cfg.num_kp + 1) * (dm.compress + 1)
        self.hourglass = Hourglass(dm.block_expansion, in_features, dm.num_blocks, dm.max_features)
        self.mask = nn.Conv3d(self.hourglass.out_filters, cfg.num_kp + 1, kernel_size=7, padding=3)
        self.compress = nn.Conv3d(cfg.reshape_channel, dm.compress, kernel_size=1)
        self.norm = nn.BatchNorm3d(dm.compress, affine=True)
        self.estimate_occlusion_map = cfg.estimate_occlusion_map
        if cfg.estimate_occlusion_map:
            self.occlusion = nn.Conv2d(self.hourglass.out_filters * dm.reshape_depth, 1, kernel_size=7, padding=3)

    def _sparse_motions(self, feature: torch.Tensor, kp_driving: torch.Tensor, kp_source: torch.Tensor) -> torch.Tensor:
        """(B, K+1, d, h, w, 3): for each keypoint, where each driving voxel samples the source."""
        b, _, d, h, w = feature.shape
        identity = make_coordinate_grid((d, h, w), kp_source).view(1, 1, d, h, w, 3)
        k = self.num_kp
        to_source = identity - kp_driving.view(b, k, 1, 1, 1, 3) + kp_source.view(b, k, 1, 1, 1, 3)
        return torch.cat([identity.expand(b, 1, d, h, w, 3), to_source], dim=1)

    def forward(self, feature: torch.Tensor, kp_driving: torch.Tensor, kp_source: torch.Tensor) -> dict[str, torch.Tensor]:
        b, _, d, h, w = feature.shape
        k1 = self.num_kp + 1
        feature = F.relu(self.norm(self.compress(feature)))
        c = feature.shape[1]
        motions = self._sparse_motions(feature, kp_driving, kp_source)
        repeated = feature.unsqueeze(1).expand(b, k1, c, d, h, w).reshape(b * k1, c, d, h, w)
        deformed = F.grid_sample(repeated, motions.reshape(b * k1, d, h, w, 3), align_corners=False)
        deformed = deformed.view(b, k1, c, d, h, w)

        heat = kp2gaussian(kp_driving, (d, h, w), KP_VARIANCE) - kp2gaussian(kp_source, (d, h, w), KP_VARIANCE)
        heat = torch.cat([heat.new_zeros(b, 1, d, h, w), heat], dim=1).unsqueeze(2)
        net_in = torch.cat([heat, deformed], dim=2).view(b, -1, d, h, w)

        prediction = self.hourglass(net_in)
        mask = F.softmax(self.mask(prediction), dim=1)
        deformation = (motions.permute(0, 1, 5, 2, 3, 4) * mask.unsqueeze(2)).sum(dim=1)
        out = {"mask": mask, "deformation": deformation.permute(0, 2, 3, 4, 1)}
        if self.estimate_occlusion_map:
            pb, pc, pd, ph, pw = prediction.shape
            out["occlusion_map"] = torch.sigmoid(self.occlusion(prediction.reshape(pb, pc * pd, ph, pw)))
        return out


@dataclass
class WarpOutput:
    """out: (B, C, 64, 64) features for G; deformation: (B, d, h, w, 3); occlusion_map: (B, 1, h, w) or None."""

    out: torch.Tensor
    deformation: torch.Tensor
    occlusion_map: torch.Tensor | None


class WarpingNetwork(nn.Module):
    def __init__(self, cfg: WarpingConfig = WarpingConfig()) -> None:
        super().__init__()
        self.cfg = cfg
        width = cfg.block_expansion * 2**cfg.num_down_blocks
        self.dense_motion_network = DenseMotionNetwork(cfg)
        self.third = SameBlock2d(cfg.max_features, width, lrelu=True)
        self.fourth = nn.Conv2d(width, width, kernel_size=1, stride=1)

    def forward(self, feature_3d: torch.Tensor, kp_driving: torch.Tensor, kp_source: torch.Tensor) -> WarpOutput:
        motion = self.dense_motion_network(feature_3d, kp_driving=kp_driving, kp_source=kp_source)
        warped = F.grid_sample(feature_3d, motion["deformation"], align_corners=False)
        b, c, d, h, w = warped.shape
        out = self.fourth(self.third(warped.view(b, c * d, h, w)))
        occlusion = motion.get("occlusion_map")
        if occlusion is not None:
            out = out * occlusion
        return WarpOutput(out=out, deformation=motion["deformation"], occlusion_map=occlusion)
