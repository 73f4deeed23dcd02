"""Implicit-keypoint geometry: head-pose bins to degrees, rotation, and the keypoint transform.

LivePortrait's Eqn. 2: x = scale * (x_c @ R + exp) + t, with t's z component dropped.
Angles are in degrees; keypoints live in the [-1, 1] cube of the feature volume.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F

from .motion import MotionOutput

BIN_WIDTH_DEG = 3.0
BIN_OFFSET_DEG = 97.5  # official: degree = E[bin] * 3 - 97.5 over 66 bins


def bins_to_degrees(logits: torch.Tensor) -> torch.Tensor:
    """(B, num_bins) logits -> (B,) expected angle in degrees."""
    idx = torch.arange(logits.shape[1], dtype=logits.dtype, device=logits.device)
    return (F.softmax(logits, dim=1) * idx).sum(dim=1) * BIN_WIDTH_DEG - BIN_OFFSET_DEG


def rotation_matrix(pitch: torch.Tensor, yaw: torch.Tensor, roll: torch.Tensor) -> torch.Tensor:
    """Degrees (B,) each -> (B, 3, 3), transposed as the official code applies it (kp @ R)."""
    x, y, z = (a.reshape(-1) * (math.pi / 180) for a in (pitch, yaw, roll))
    one, zero = torch.ones_like(x), torch.zeros_like(x)
    rot_x = torch.stack([one, zero, zero, zero, x.cos(), -x.sin(), zero, x.sin(), x.cos()], 1).view(-1, 3, 3)
    rot_y = torch.stack([y.cos(), zero, y.sin(), zero, one, zero, -y.sin(), zero, y.cos()], 1).view(-1, 3, 3)
    rot_z = torch.stack([z.cos(), -z.sin(), zero, z.sin(), z.cos(), zero, zero, zero, one], 1).view(-1, 3, 3)
    return (rot_z @ rot_y @ rot_x).transpose(1, 2)


@dataclass
class KeypointInfo:
    """Motion of a batch of faces. pitch/yaw/roll: (B,) degrees; t: (B, 3); scale: (B, 1);
    kp (canonical) and exp (expression deformation): (B, K, 3)."""

    pitch: torch.Tensor
    yaw: torch.Tensor
    roll: torch.Tensor
    t: torch.Tensor
    scale: torch.Tensor
    kp: torch.Tensor
    exp: torch.Tensor

    @classmethod
    def from_motion(cls, out: MotionOutput) -> "KeypointInfo":
        """Decode M's raw heads (float32 even when M ran under half-precision autocast)."""
        b = out.kp.shape[0]
        return cls(
            pitch=bins_to_degrees(out.pitch.float()),
            yaw=bins_to_degrees(out.yaw.float()),
            roll=bins_to_degrees(out.roll.float()),
            t=out.t.float(),
            scale=out.scale.float(),
            kp=out.kp.float().reshape(b, -1, 3),
            exp=out.exp.float().reshape(b, -1, 3),
        )

    def with_exp(self, exp: torch.Tensor) -> "KeypointInfo":
        return replace(self, exp=exp)

    def transformed(self) -> torch.Tensor:
        """(B, K, 3) posed keypoints: scale * (kp @ R + exp) + (tx, ty, 0)."""
        rot = rotation_matrix(self.pitch, self.yaw, self.roll)
        x = (self.kp @ rot + self.exp) * self.scale[..., None]
        shift = torch.zeros_like(self.t)
        shift[:, :2] = self.t[:, :2]
        return x + shift[:, None, :]
