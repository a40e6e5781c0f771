"""An independent PyTorch DynaMixer with the official state-dict layout.

Written from the paper (Wang et al., "DynaMixer: A Vision MLP Architecture with Dynamic
Mixing", ICML 2022) and the module names of ziyuwwang/DynaMixer (`models/dynamixer.py`,
`models/vision_model.py`, `models/configs/conf_dynamixer.py`), so that a state dict
saved by the official training code loads here with `strict=True` and vice versa.
Used only to make the parity fixtures (reference/make_dynamixer_fixture.py).

Key layout: `patch_embed.proj` (7x7 stride-7 conv); `network.{n}` alternates stages
(`nn.Sequential` of blocks) and `Downsample` convs (`network.{n}.proj`), in the order
the official constructor appends them; block `network.{n}.{j}` has `norm1`,
`attn.mix_h.{compress,generate,out}`, `attn.mix_w.*`, `attn.mlp_c` (no bias),
`attn.reweight.fc1/fc2`, `attn.proj`, `norm2`, `mlp.fc1/fc2`; then `norm`, `head`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# The official variants (conf_dynamixer.py); patch 7 on 224x224 gives a 32x32 grid.
VARIANTS = {
    "s": dict(
        layers=(4, 3, 8, 3),
        transitions=(True, False, False, False),
        embed_dims=(192, 384, 384, 384),
        num_heads=(8, 16, 16, 16),
        reduced_dims=(2, 2, 2, 2),
    ),
    "m": dict(
        layers=(4, 3, 14, 3),
        transitions=(False, True, False, False),
        embed_dims=(256, 256, 512, 512),
        num_heads=(8, 8, 16, 16),
        reduced_dims=(2, 2, 2, 2),
    ),
    "l": dict(
        layers=(8, 8, 16, 4),
        transitions=(True, False, False, False),
        embed_dims=(256, 512, 512, 512),
        num_heads=(8, 16, 16, 16),
        reduced_dims=(8, 8, 8, 8),
    ),
}


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int, out: int | None = None):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, out or dim)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))


class DynaMixerOp(nn.Module):
    """Mixes a sequence `(N, L, C)` with an L x L matrix generated from its content, one
    matrix per head (group of C / num_head channels)."""

    def __init__(self, dim: int, seq_len: int, num_head: int, reduced_dim: int):
        super().__init__()
        self.num_head, self.reduced_dim = num_head, reduced_dim
        self.out = nn.Linear(dim, dim)
        self.compress = nn.Linear(dim, num_head * reduced_dim)
        self.generate = nn.Linear(seq_len * reduced_dim, seq_len * seq_len)

    def forward(self, x):
        n, length, c = x.shape
        h = self.num_head
        feats = self.compress(x).view(n, length, h, self.reduced_dim).transpose(1, 2)
        logits = self.generate(feats.reshape(n, h, length * self.reduced_dim))
        mixing = torch.softmax(logits.view(n, h, length, length), dim=2)  # over inputs
        groups = x.view(n, length, h, c // h).permute(0, 2, 3, 1)  # (n, h, c/h, L_in)
        mixed = groups @ mixing  # (n, h, c/h, L_out)
        return self.out(mixed.permute(0, 3, 1, 2).reshape(n, length, c))


class DynaMixerBlock(nn.Module):
    def __init__(self, dim: int, resolution: int, num_head: int, reduced_dim: int):
        super().__init__()
        self.mix_h = DynaMixerOp(dim, resolution, num_head, reduced_dim)
        self.mix_w = DynaMixerOp(dim, resolution, num_head, reduced_dim)
        self.mlp_c = nn.Linear(dim, dim, bias=False)
        self.reweight = Mlp(dim, dim // 4, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        b, hh, ww, c = x.shape
        cols = x.transpose(1, 2).reshape(b * ww, hh, c)
        h = self.mix_h(cols).view(b, ww, hh, c).transpose(1, 2)
        w = self.mix_w(x.reshape(b * hh, ww, c)).view(b, hh, ww, c)
        ch = self.mlp_c(x)
        pooled = (h + w + ch).mean(dim=(1, 2))  # (b, c)
        a = torch.softmax(self.reweight(pooled).view(b, c, 3), dim=2)
        a = a.permute(2, 0, 1)[:, :, None, None, :]  # (3, b, 1, 1, c)
        return self.proj(h * a[0] + w * a[1] + ch * a[2])


class VisionBlock(nn.Module):
    def __init__(self, dim, resolution, num_head, reduced_dim, mlp_ratio, skip_lam=1.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = DynaMixerBlock(dim, resolution, num_head, reduced_dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.skip_lam = skip_lam

    def forward(self, x):  # eval only: drop path is the identity
        x = x + self.attn(self.norm1(x)) / self.skip_lam
        return x + self.mlp(self.norm2(x)) / self.skip_lam


class Downsample(nn.Module):
    def __init__(self, dim_in: int, dim_out: int, patch: int):
        super().__init__()
        self.proj = nn.Conv2d(dim_in, dim_out, kernel_size=patch, stride=patch)

    def forward(self, x):  # NHWC in and out
        return self.proj(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)


class DynaMixer(nn.Module):
    """NCHW images `(B, 3, H, W)` -> logits `(B, num_classes)`."""

    def __init__(
        self,
        layers,
        transitions,
        embed_dims,
        num_heads,
        reduced_dims,
        mlp_ratio=3.0,
        image_size=224,
        patch_size=7,
        in_chans=3,
        num_classes=1000,
        skip_lam=1.0,
    ):
        super().__init__()
        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Conv2d(in_chans, embed_dims[0], patch_size, patch_size)
        resolution = image_size // patch_size
        network = []
        for i, depth in enumerate(layers):
            network.append(
                nn.Sequential(
                    *[
                        VisionBlock(
                            embed_dims[i],
                            resolution,
                            num_heads[i],
                            reduced_dims[i],
                            mlp_ratio,
                            skip_lam,
                        )
                        for _ in range(depth)
                    ]
                )
            )
            if i == len(layers) - 1:
                break
            if transitions[i] or embed_dims[i] != embed_dims[i + 1]:
                patch = 2 if transitions[i] else 1
                network.append(Downsample(embed_dims[i], embed_dims[i + 1], patch))
                resolution //= patch
        self.network = nn.ModuleList(network)
        self.norm = nn.LayerNorm(embed_dims[-1])
        self.head = nn.Linear(embed_dims[-1], num_classes)

    def forward(self, x):
        x = self.patch_embed.proj(x).permute(0, 2, 3, 1)
        for module in self.network:
            x = module(x)
        x = self.norm(x.flatten(1, 2))
        return self.head(x.mean(1))
