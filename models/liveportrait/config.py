"""Network dimensions of LivePortrait, defaulting to the official `src/config/models.yaml`.

Every constructor in this package takes one of these dataclasses, so tests can build
small networks with the same key structure (fewer channels, fewer blocks) and the
product builds the full-size ones from the defaults.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class AppearanceConfig:
    """F: image (B,3,256,256) -> feature volume (B, reshape_channel, reshape_depth, 64, 64)."""

    image_channel: int = 3
    block_expansion: int = 64
    num_down_blocks: int = 2
    max_features: int = 512
    reshape_channel: int = 32
    reshape_depth: int = 16
    num_resblocks: int = 6


@dataclass(frozen=True)
class MotionConfig:
    """M: ConvNeXtV2 backbone (tiny: depths 3-3-9-3, dims 96-192-384-768) with pose/exp heads."""

    num_kp: int = 21
    num_bins: int = 66
    in_chans: int = 3
    depths: tuple[int, ...] = (3, 3, 9, 3)
    dims: tuple[int, ...] = (96, 192, 384, 768)


@dataclass(frozen=True)
class DenseMotionConfig:
    block_expansion: int = 32
    max_features: int = 1024
    num_blocks: int = 5
    reshape_depth: int = 16
    compress: int = 4


@dataclass(frozen=True)
class WarpingConfig:
    """W: warps F's volume by the keypoint motion; reshape_channel*depth must equal max_features."""

    num_kp: int = 21
    block_expansion: int = 64
    max_features: int = 512
    num_down_blocks: int = 2
    reshape_channel: int = 32
    estimate_occlusion_map: bool = True
    dense_motion: DenseMotionConfig = field(default_factory=DenseMotionConfig)


@dataclass(frozen=True)
class SpadeConfig:
    """G: warped features (B, C, 64, 64) -> image (B, 3, 64*4*upscale, ...) in [0, 1]."""

    upscale: int = 2
    block_expansion: int = 64
    max_features: int = 512
    num_down_blocks: int = 2
    out_channels: int = 64
    spade_hidden: int = 128


@dataclass(frozen=True)
class MLPConfig:
    input_size: int
    hidden_sizes: tuple[int, ...]
    output_size: int


def _stitching() -> MLPConfig:
    return MLPConfig(126, (128, 128, 64), 65)  # (21*3)*2 -> 21*3 + (tx, ty)


def _lip() -> MLPConfig:
    return MLPConfig(65, (128, 128, 64), 63)  # 21*3 + 2 lip ratios -> 21*3


def _eye() -> MLPConfig:
    return MLPConfig(66, (256, 256, 128, 128, 64), 63)  # 21*3 + 3 eye ratios -> 21*3


@dataclass(frozen=True)
class RetargetingConfig:
    stitching: MLPConfig = field(default_factory=_stitching)
    lip: MLPConfig = field(default_factory=_lip)
    eye: MLPConfig = field(default_factory=_eye)


@dataclass(frozen=True)
class LivePortraitConfig:
    """All five networks; `input_size` is the crop fed to F and M (pixels, square)."""

    appearance: AppearanceConfig = field(default_factory=AppearanceConfig)
    motion: MotionConfig = field(default_factory=MotionConfig)
    warping: WarpingConfig = field(default_factory=WarpingConfig)
    spade: SpadeConfig = field(default_factory=SpadeConfig)
    retargeting: RetargetingConfig = field(default_factory=RetargetingConfig)
    input_size: int = 256

    @property
    def num_kp(self) -> int:
        return self.motion.num_kp

    @property
    def output_size(self) -> int:
        """Side of the rendered crop in pixels (512 for the official models).

        F downsamples by 2**num_down_blocks, G upsamples twice and then by `upscale`.
        """
        feature = self.input_size // 2 ** self.appearance.num_down_blocks
        return feature * 4 * max(1, self.spade.upscale)
