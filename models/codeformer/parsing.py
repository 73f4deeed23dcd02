"""ParseNet face parsing (facexlib, from PSFRGAN) and the paste mask CodeFormer makes with it.

The official CodeFormer inference pastes with `use_parse=True`: `parsing_parsenet.pth`
(a plain state_dict for ParseNet(in_size=512, out_size=512, parsing_ch=19)) labels the
restored face, and the paste mask keeps only the face classes. Re-implemented here with
the official key names (encoder / body / decoder of ConvLayer and ResidualBlock, each
ConvLayer with `conv2d`, `norm.norm` (BatchNorm) and `relu.func`).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .paste import gaussian_blur

PARSE_CLASSES_KEPT = (0, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 0, 255, 0, 0, 0)
"""facexlib's MASK_COLORMAP: 255 for the face classes, 0 for background, neck (14), cloth (16),
hair (17) and hat (18)."""
PARSE_BLUR = (101, 11.0)
"""Kernel size and sigma of the two Gaussian blurs on the 512 px label mask."""
PARSE_BORDER = 10
"""Pixels zeroed at each edge of the blurred mask (removes the black borders)."""


class ConvLayer(nn.Module):
    """Optional 2x nearest upsample, reflection pad, conv (stride 2 for 'down'), norm, activation."""

    def __init__(self, cin: int, cout: int, kernel: int = 3, scale: str = "none", norm: bool = False,
                 act: str = "none") -> None:
        super().__init__()
        self.up = scale == "up"
        self.pad = math.ceil((kernel - 1) / 2)
        self.conv2d = nn.Conv2d(cin, cout, kernel, 2 if scale == "down" else 1, bias=not norm)
        self.norm = _Norm(cout) if norm else None
        self.relu = _Act(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.up:
            x = F.interpolate(x, scale_factor=2, mode="nearest")
        x = self.conv2d(F.pad(x, (self.pad,) * 4, mode="reflect"))
        if self.norm is not None:
            x = self.norm.norm(x)
        return self.relu(x)


class _Norm(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(channels)


class _Act(nn.Module):
    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(x, 0.2) if self.kind == "leakyrelu" else x


class ResidualBlock(nn.Module):
    """Two ConvLayers (BatchNorm, LeakyReLU on the first) plus a conv shortcut when the shape changes."""

    def __init__(self, cin: int, cout: int, scale: str = "none") -> None:
        super().__init__()
        self.shortcut_func = ConvLayer(cin, cout, 3, scale) if (scale != "none" or cin != cout) else None
        first, second = {"down": ("none", "down"), "up": ("up", "none"), "none": ("none", "none")}[scale]
        self.conv1 = ConvLayer(cin, cout, 3, first, norm=True, act="leakyrelu")
        self.conv2 = ConvLayer(cout, cout, 3, second, norm=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.shortcut_func is None else self.shortcut_func(x)
        return identity + self.conv2(self.conv1(x))


class ParseNet(nn.Module):
    """(B, 3, S, S) in [-1, 1] -> (label logits (B, parsing_ch, S, S), image (B, 3, S, S)).

    Defaults are the official CodeFormer ones (in_size = out_size = 512); base_ch,
    res_depth and ch_range make small test models with the same keys.
    """

    def __init__(self, in_size: int = 512, out_size: int = 512, min_feat_size: int = 32, base_ch: int = 64,
                 parsing_ch: int = 19, res_depth: int = 10, ch_range: tuple[int, int] = (32, 256)) -> None:
        super().__init__()
        self.in_size = in_size
        lo, hi = ch_range

        def clip(c: int) -> int:
            return max(lo, min(c, hi))

        min_feat = min(in_size, min_feat_size)
        down, up = int(math.log2(in_size // min_feat)), int(math.log2(out_size // min_feat))
        encoder: list[nn.Module] = [ConvLayer(3, base_ch, 3)]
        ch = base_ch
        for _ in range(down):
            encoder.append(ResidualBlock(clip(ch), clip(ch * 2), "down"))
            ch *= 2
        self.encoder = nn.Sequential(*encoder)
        self.body = nn.Sequential(*[ResidualBlock(clip(ch), clip(ch)) for _ in range(res_depth)])
        decoder: list[nn.Module] = []
        for _ in range(up):
            decoder.append(ResidualBlock(clip(ch), clip(ch // 2), "up"))
            ch //= 2
        self.decoder = nn.Sequential(*decoder)
        self.out_img_conv = ConvLayer(clip(ch), 3)
        self.out_mask_conv = ConvLayer(clip(ch), parsing_ch)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feat = self.encoder(x)
        x = self.decoder(feat + self.body(feat))
        return self.out_mask_conv(x), self.out_img_conv(x)


@torch.inference_mode()
def parse_mask(net: ParseNet, faces: torch.Tensor, face_size: int) -> torch.Tensor:
    """The official paste's parsing mask for restored faces (N, 3, S, S) RGB uint8 levels as
    float -> (N, 1, face_size, face_size) in [0, 1], template space.

    As facexlib: resize to the parser's size (bilinear, uint8), normalise to [-1, 1], argmax
    of the labels, 255 for the face classes, two Gaussian blurs (101 px, sigma 11), a
    10 px black border, / 255, resized (bilinear) to the face size.
    """
    n = net.in_size
    x = faces if faces.shape[-1] == n else torch.floor(
        F.interpolate(faces, size=(n, n), mode="bilinear", align_corners=False) + 0.5).clamp(0, 255)
    labels = net(x / 127.5 - 1.0)[0].argmax(dim=1, keepdim=True)
    colours = torch.tensor(PARSE_CLASSES_KEPT, dtype=torch.float64, device=faces.device)
    mask = colours[labels]
    size, sigma = PARSE_BLUR
    mask = gaussian_blur(gaussian_blur(mask, size, sigma), size, sigma)
    b = PARSE_BORDER
    mask[..., :b, :] = 0
    mask[..., -b:, :] = 0
    mask[..., :, :b] = 0
    mask[..., :, -b:] = 0
    mask = mask / 255.0
    if face_size != n:
        mask = F.interpolate(mask, size=(face_size, face_size), mode="bilinear", align_corners=False)
    return mask.to(faces.dtype)
