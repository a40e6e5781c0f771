"""An independent PyTorch sMLPNet that produces the official SPACH state-dict layout.

Written for this repo from the paper and the official module structure (it shares no
code with microsoft/SPACH): the attribute nesting reproduces the official key names —
`to_patch_embedding.{i}.0`, `token_mix.{k}.0.conv_merge.{BN,Conv}`,
`token_mix.{k}.1.{BN,proj_h,proh_w,fuse}`, `channel_mix.{k}.{1,2.net.0,2.net.3}`,
`batch_norm`, `mlp_head.0` — so its `state_dict()` is what an official checkpoint holds.
Used only to make fixtures and as the benchmark's PyTorch side; NCHW throughout.
"""

from __future__ import annotations

import torch
from torch import nn


class _Permute(nn.Module):
    """Parameter-free stand-in for the official einops Rearrange (keeps key indices)."""

    def __init__(self, *order: int):
        super().__init__()
        self.order = order

    def forward(self, x):
        return x.permute(*self.order)


class _ConvMerge(nn.Module):
    """BN -> GELU -> depthwise 3x3 conv (no bias)."""

    def __init__(self, channels: int):
        super().__init__()
        self.BN = nn.BatchNorm2d(channels)
        self.Conv = nn.Conv2d(channels, channels, 3, 1, 1, groups=channels, bias=False)

    def forward(self, x):
        return self.Conv(nn.functional.gelu(self.BN(x)))


class _DepthwiseBranch(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv_merge = _ConvMerge(channels)

    def forward(self, x):
        return self.conv_merge(x)


class _SparseMLP(nn.Module):
    """BN -> GELU -> fuse(cat[a, mix along W, mix along H]) on (B, C, N, N)."""

    def __init__(self, grid: int, channels: int):
        super().__init__()
        self.BN = nn.BatchNorm2d(channels)
        self.proj_h = nn.Conv2d(grid, grid, 1)  # mixes the width axis
        self.proh_w = nn.Conv2d(grid, grid, 1)  # mixes the height axis
        self.fuse = nn.Conv2d(3 * channels, channels, 1, bias=False)

    def forward(self, x):
        a = nn.functional.gelu(self.BN(x))
        along_w = self.proj_h(a.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        along_h = self.proh_w(a.permute(0, 2, 1, 3)).permute(0, 2, 1, 3)
        return self.fuse(torch.cat([a, along_w, along_h], dim=1))


class _FeedForward(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(0.0), nn.Linear(hidden, dim)
        )

    def forward(self, x):
        return self.net(x)


def _drop_path(x, rate: float, training: bool):
    if rate == 0.0 or not training:
        return x
    keep = 1.0 - rate
    mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
    return x * mask / keep


class SMLPNetReference(nn.Module):
    """`(B, 3, S, S) -> (B, num_classes)`; hyperparameters as the official class."""

    def __init__(
        self,
        in_chans=3,
        dim=80,
        alpha=3,
        num_classes=1000,
        patch_size=4,
        image_size=224,
        depths=(2, 8, 14, 2),
        dp_rate=0.0,
    ):
        super().__init__()
        grid = image_size // patch_size
        self.depths = list(depths)
        total = sum(depths)
        self.rates = [dp_rate * k / (total - 1) if total > 1 else 0.0 for k in range(total)]
        self.to_patch_embedding = nn.ModuleList()
        self.token_mix = nn.ModuleList()
        self.channel_mix = nn.ModuleList()
        for i, depth in enumerate(depths):
            c = dim * 2**i
            if i == 0:
                stem = nn.Conv2d(in_chans, dim, patch_size, patch_size, bias=False)
            else:
                stem = nn.Conv2d(c // 2, c, 2, 2, bias=False)
            self.to_patch_embedding.append(nn.Sequential(stem))
            for _ in range(depth):
                self.token_mix.append(
                    nn.Sequential(_DepthwiseBranch(c), _SparseMLP(grid // 2**i, c))
                )
                self.channel_mix.append(
                    nn.Sequential(
                        _Permute(0, 2, 3, 1),
                        nn.LayerNorm(c),
                        _FeedForward(c, c * alpha),
                        _Permute(0, 3, 1, 2),
                    )
                )
        final = dim * 2 ** (len(depths) - 1)
        self.batch_norm = nn.BatchNorm2d(final)
        self.mlp_head = nn.Sequential(nn.Linear(final, num_classes))

    def forward(self, x):
        k = 0
        for i, depth in enumerate(self.depths):
            x = self.to_patch_embedding[i](x)
            for _ in range(depth):
                rate = self.rates[k]
                x = x + _drop_path(self.token_mix[k](x), rate, self.training)
                x = x + _drop_path(self.channel_mix[k](x), rate, self.training)
                k += 1
        x = self.batch_norm(x).mean(dim=(2, 3))
        return self.mlp_head(x)
