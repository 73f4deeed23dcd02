"""CodeFormer (sczhou) architecture, re-implemented with the official key names.

`codeformer.pth` holds {"params_ema": state_dict} for
CodeFormer(dim_embd=512, codebook_size=1024, n_head=8, n_layers=9,
connect_list=['32', '64', '128', '256']): 515 keys, 94.1M parameters. basicsr is not a
dependency (PyPI basicsr 1.4.2 has no CodeFormer/VQGAN and breaks on torchvision >= 0.17).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def _group_norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(num_groups=32, num_channels=channels, eps=1e-6, affine=True)


def _swish(x: torch.Tensor) -> torch.Tensor:
    return x * torch.sigmoid(x)


class ResBlock(nn.Module):
    """GroupNorm-swish-conv twice, with a 1x1 `conv_out` shortcut when channels change."""

    def __init__(self, in_channels: int, out_channels: int | None = None) -> None:
        super().__init__()
        out_channels = in_channels if out_channels is None else out_channels
        self.in_channels, self.out_channels = in_channels, out_channels
        self.norm1 = _group_norm(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=1, padding=1)
        self.norm2 = _group_norm(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, kernel_size=3, stride=1, padding=1)
        if in_channels != out_channels:
            self.conv_out = nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=1, padding=0)

    def forward(self, x_in: torch.Tensor) -> torch.Tensor:
        x = self.conv1(_swish(self.norm1(x_in)))
        x = self.conv2(_swish(self.norm2(x)))
        if self.in_channels != self.out_channels:
            x_in = self.conv_out(x_in)
        return x + x_in


class AttnBlock(nn.Module):
    """Single-head spatial self-attention with 1x1 q/k/v/proj_out convs."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.norm = _group_norm(in_channels)
        self.q = nn.Conv2d(in_channels, in_channels, 1)
        self.k = nn.Conv2d(in_channels, in_channels, 1)
        self.v = nn.Conv2d(in_channels, in_channels, 1)
        self.proj_out = nn.Conv2d(in_channels, in_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm(x)
        b, c, hh, ww = h.shape
        q = self.q(h).reshape(b, c, hh * ww).transpose(1, 2)
        k = self.k(h).reshape(b, c, hh * ww).transpose(1, 2)
        v = self.v(h).reshape(b, c, hh * ww).transpose(1, 2)
        out = F.scaled_dot_product_attention(q, k, v)  # softmax(q k^T / sqrt(c)) v
        return x + self.proj_out(out.transpose(1, 2).reshape(b, c, hh, ww))


class Downsample(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, kernel_size=3, stride=2, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1), mode="constant", value=0))


class Upsample(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, kernel_size=3, stride=1, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class Encoder(nn.Module):
    """VQGAN encoder as a flat `blocks` list (indices are part of the checkpoint keys).

    `taps` maps each resolution to the index of its last ResBlock before downsampling
    (for 16, the last ResBlock before the final attention): where CodeFormer reads
    encoder features for fusion.
    """

    def __init__(self, in_channels: int, nf: int, emb_dim: int, ch_mult: Sequence[int], res_blocks: int,
                 resolution: int, attn_resolutions: Sequence[int]) -> None:
        super().__init__()
        blocks: list[nn.Module] = [nn.Conv2d(in_channels, nf, kernel_size=3, stride=1, padding=1)]
        self.taps: dict[str, int] = {}
        self.channels: dict[str, int] = {}
        res, ch = resolution, nf
        in_mult = (1, *ch_mult)
        for i, mult in enumerate(ch_mult):
            ch = nf * in_mult[i]
            for _ in range(res_blocks):
                blocks.append(ResBlock(ch, nf * mult))
                ch = nf * mult
                self.taps[str(res)] = len(blocks) - 1
                if res in attn_resolutions:
                    blocks.append(AttnBlock(ch))
            self.channels[str(res)] = ch
            if i != len(ch_mult) - 1:
                blocks.append(Downsample(ch))
                res //= 2
        blocks.append(ResBlock(ch, ch))
        blocks.append(AttnBlock(ch))
        blocks.append(ResBlock(ch, ch))
        blocks.append(_group_norm(ch))
        blocks.append(nn.Conv2d(ch, emb_dim, kernel_size=3, stride=1, padding=1))
        self.blocks = nn.ModuleList(blocks)
        self.latent_resolution = res


class Generator(nn.Module):
    """VQGAN decoder as a flat `blocks` list.

    `taps` gives each resolution's first ResBlock (the last one at the latent resolution):
    where CodeFormer fuses encoder features, matching the official fuse_generator_block.
    """

    def __init__(self, nf: int, emb_dim: int, ch_mult: Sequence[int], res_blocks: int, img_size: int,
                 attn_resolutions: Sequence[int]) -> None:
        super().__init__()
        ch = nf * ch_mult[-1]
        res = img_size // 2 ** (len(ch_mult) - 1)
        blocks: list[nn.Module] = [nn.Conv2d(emb_dim, ch, kernel_size=3, stride=1, padding=1)]
        blocks += [ResBlock(ch, ch), AttnBlock(ch), ResBlock(ch, ch)]
        self.taps: dict[str, int] = {}
        for i in reversed(range(len(ch_mult))):
            out_ch = nf * ch_mult[i]
            for j in range(res_blocks):
                blocks.append(ResBlock(ch, out_ch))
                ch = out_ch
                if j == (res_blocks - 1 if i == len(ch_mult) - 1 else 0):
                    self.taps[str(res)] = len(blocks) - 1
                if res in attn_resolutions:
                    blocks.append(AttnBlock(ch))
            if i != 0:
                blocks.append(Upsample(ch))
                res *= 2
        blocks.append(_group_norm(ch))
        blocks.append(nn.Conv2d(ch, 3, kernel_size=3, stride=1, padding=1))
        self.blocks = nn.ModuleList(blocks)


class VectorQuantizer(nn.Module):
    """The codebook (`quantize.embedding.weight`, codebook_size x emb_dim)."""

    def __init__(self, codebook_size: int, emb_dim: int) -> None:
        super().__init__()
        self.codebook_size, self.emb_dim = codebook_size, emb_dim
        self.embedding = nn.Embedding(codebook_size, emb_dim)
        self.embedding.weight.data.uniform_(-1.0 / codebook_size, 1.0 / codebook_size)

    def lookup(self, indices: torch.Tensor, shape: tuple[int, int, int, int]) -> torch.Tensor:
        """Code indices (B, HW) -> features (B, C, H, W); shape is (B, H, W, C)."""
        return self.embedding(indices.reshape(-1)).view(shape).permute(0, 3, 1, 2).contiguous()


class TransformerSALayer(nn.Module):
    """Pre-norm self-attention + GELU MLP on (HW, B, C) tokens, position added to q and k."""

    def __init__(self, embed_dim: int, nhead: int, dim_mlp: int) -> None:
        super().__init__()
        self.self_attn = nn.MultiheadAttention(embed_dim, nhead, dropout=0.0)
        self.linear1 = nn.Linear(embed_dim, dim_mlp)
        self.linear2 = nn.Linear(dim_mlp, embed_dim)
        self.norm1 = nn.LayerNorm(embed_dim)
        self.norm2 = nn.LayerNorm(embed_dim)

    def forward(self, tgt: torch.Tensor, query_pos: torch.Tensor) -> torch.Tensor:
        h = self.norm1(tgt)
        qk = h + query_pos
        tgt = tgt + self.self_attn(qk, qk, value=h, need_weights=False)[0]
        return tgt + self.linear2(F.gelu(self.linear1(self.norm2(tgt))))


class Fuse_sft_block(nn.Module):  # noqa: N801 - the official class name, kept for grep-ability
    """Controllable feature transformation: out = dec + w * (dec * scale + shift)."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.encode_enc = ResBlock(2 * in_ch, out_ch)
        self.scale = nn.Sequential(nn.Conv2d(in_ch, out_ch, 3, padding=1), nn.LeakyReLU(0.2, True),
                                   nn.Conv2d(out_ch, out_ch, 3, padding=1))
        self.shift = nn.Sequential(nn.Conv2d(in_ch, out_ch, 3, padding=1), nn.LeakyReLU(0.2, True),
                                   nn.Conv2d(out_ch, out_ch, 3, padding=1))

    def modulation(self, enc_feat: torch.Tensor, dec_feat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(scale, shift) predicted from the encoder and decoder features."""
        enc = self.encode_enc(torch.cat([enc_feat, dec_feat], dim=1))
        return self.scale(enc), self.shift(enc)

    def forward(self, enc_feat: torch.Tensor, dec_feat: torch.Tensor, w: float = 1.0) -> torch.Tensor:
        scale, shift = self.modulation(enc_feat, dec_feat)
        return dec_feat + w * (dec_feat * scale + shift)


def _mean_std(feat: torch.Tensor, eps: float = 1e-5) -> tuple[torch.Tensor, torch.Tensor]:
    b, c = feat.shape[:2]
    flat = feat.reshape(b, c, -1)
    return flat.mean(dim=2).view(b, c, 1, 1), (flat.var(dim=2) + eps).sqrt().view(b, c, 1, 1)


def adaptive_instance_normalization(content: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
    """Give `content` the per-channel mean and std of `style` (colour of the degraded input)."""
    s_mean, s_std = _mean_std(style)
    c_mean, c_std = _mean_std(content)
    return (content - c_mean) / c_std * s_std + s_mean


class CodeFormer(nn.Module):
    """Encoder -> transformer code prediction -> codebook lookup -> generator with SFT fusion.

    Defaults are the official ones; img_size, nf, ch_mult and emb_dim make small test
    models (GroupNorm needs channel counts divisible by 32; the latent grid must have
    latent_size cells, e.g. 16x16 = 256).
    """

    def __init__(self, dim_embd: int = 512, n_head: int = 8, n_layers: int = 9, codebook_size: int = 1024,
                 latent_size: int = 256, connect_list: Sequence[str] = ("32", "64", "128", "256"),
                 img_size: int = 512, nf: int = 64, ch_mult: Sequence[int] = (1, 2, 2, 4, 4, 8),
                 res_blocks: int = 2, attn_resolutions: Sequence[int] = (16,), emb_dim: int = 256) -> None:
        super().__init__()
        self.img_size = img_size
        self.emb_dim = emb_dim
        self.encoder = Encoder(3, nf, emb_dim, ch_mult, res_blocks, img_size, attn_resolutions)
        self.quantize = VectorQuantizer(codebook_size, emb_dim)
        self.generator = Generator(nf, emb_dim, ch_mult, res_blocks, img_size, attn_resolutions)
        self.latent_hw = self.encoder.latent_resolution
        if self.latent_hw**2 != latent_size:
            raise ValueError(f"latent grid {self.latent_hw}x{self.latent_hw} != latent_size {latent_size}")
        unknown = [s for s in connect_list if s not in self.encoder.taps or s not in self.generator.taps]
        if unknown:
            raise ValueError(f"connect_list resolutions {unknown} do not exist for img_size {img_size}")
        self.connect_list = [str(s) for s in connect_list]
        self.position_emb = nn.Parameter(torch.zeros(latent_size, dim_embd))
        self.feat_emb = nn.Linear(emb_dim, dim_embd)
        self.ft_layers = nn.Sequential(*[TransformerSALayer(dim_embd, n_head, dim_embd * 2) for _ in range(n_layers)])
        self.idx_pred_layer = nn.Sequential(nn.LayerNorm(dim_embd), nn.Linear(dim_embd, codebook_size, bias=False))
        self.fuse_convs_dict = nn.ModuleDict(
            {s: Fuse_sft_block(self.encoder.channels[s], self.encoder.channels[s]) for s in self.connect_list}
        )

    def forward(self, x: torch.Tensor, w: float = 0.0, adain: bool = True) -> torch.Tensor:
        """(B, 3, S, S) in [-1, 1] -> restored (B, 3, S, S), roughly in [-1, 1]."""
        enc_taps = {self.encoder.taps[s]: s for s in self.connect_list}
        enc_feats: dict[str, torch.Tensor] = {}
        for i, block in enumerate(self.encoder.blocks):
            x = block(x)
            if i in enc_taps:
                enc_feats[enc_taps[i]] = x
        lq_feat = x
        b = x.shape[0]
        pos = self.position_emb.unsqueeze(1).expand(-1, b, -1)
        query = self.feat_emb(lq_feat.flatten(2).permute(2, 0, 1))
        for layer in self.ft_layers:
            query = layer(query, query_pos=pos)
        logits = self.idx_pred_layer(query).permute(1, 0, 2)  # (B, HW, codebook)
        indices = logits.argmax(dim=2)
        hw = self.latent_hw
        quant = self.quantize.lookup(indices, (b, hw, hw, self.emb_dim))
        if adain:
            quant = adaptive_instance_normalization(quant, lq_feat)
        gen_taps = {self.generator.taps[s]: s for s in self.connect_list}
        x = quant
        for i, block in enumerate(self.generator.blocks):
            x = block(x)
            if i in gen_taps and w > 0:
                x = self.fuse_convs_dict[gen_taps[i]](enc_feats[gen_taps[i]], x, w)
        return x
