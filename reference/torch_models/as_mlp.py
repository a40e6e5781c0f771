"""An independent PyTorch AS-MLP with the official `svip-lab/AS-MLP` state-dict layout.

Used only to make parity fixtures (`reference/make_as_mlp_fixture.py`). It is written
from the paper and the official module/attribute names (so its `state_dict()` keys and
shapes are the official ones), not copied from the official file. NCHW, as the official
code; the axial shift is written as explicit slice copies (the official uses a CUDA
kernel), so it is a second, independent statement of the same operation.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F


def group_norm(dim: int) -> nn.GroupNorm:
    return nn.GroupNorm(1, dim)


def shift_groups(x: torch.Tensor, shift_size: int, dim: int) -> torch.Tensor:
    """Channel group k of `(B, C, H, W)` reads from `shift_size // 2 - k` further along `dim`."""
    channels, size = x.shape[1], x.shape[dim]
    group = math.ceil(channels / shift_size)
    out = torch.zeros_like(x)
    for k in range(math.ceil(channels / group)):
        s = shift_size // 2 - k
        lo, hi = max(0, -s), min(size, size - s)  # output rows whose source is inside
        ch = slice(k * group, (k + 1) * group)
        if dim == 2:
            out[:, ch, lo:hi, :] = x[:, ch, lo + s : hi + s, :]
        else:
            out[:, ch, :, lo:hi] = x[:, ch, :, lo + s : hi + s]
    return out


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Conv2d(dim, hidden, 1)
        self.fc2 = nn.Conv2d(hidden, dim, 1)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))


class AxialShift(nn.Module):
    def __init__(self, dim: int, shift_size: int, as_bias: bool = True):
        super().__init__()
        self.shift_size = shift_size
        self.conv1 = nn.Conv2d(dim, dim, 1, bias=as_bias)
        self.conv2_1 = nn.Conv2d(dim, dim, 1, bias=as_bias)
        self.conv2_2 = nn.Conv2d(dim, dim, 1, bias=as_bias)
        self.conv3 = nn.Conv2d(dim, dim, 1, bias=as_bias)
        self.norm1 = group_norm(dim)
        self.norm2 = group_norm(dim)

    def forward(self, x):
        x = F.gelu(self.norm1(self.conv1(x)))
        lr = F.gelu(self.conv2_1(shift_groups(x, self.shift_size, 3)))
        td = F.gelu(self.conv2_2(shift_groups(x, self.shift_size, 2)))
        return self.conv3(self.norm2(lr + td))


class AxialShiftedBlock(nn.Module):
    def __init__(self, dim: int, shift_size: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.norm1 = group_norm(dim)
        self.axial_shift = AxialShift(dim, shift_size)
        self.norm2 = group_norm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x):
        x = x + self.axial_shift(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class PatchMerging(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.norm = group_norm(4 * dim)
        self.reduction = nn.Conv2d(4 * dim, 2 * dim, 1, bias=False)

    def forward(self, x):
        parts = [x[:, :, dh::2, dw::2] for dw in (0, 1) for dh in (0, 1)]
        return self.reduction(self.norm(torch.cat(parts, 1)))


class PatchEmbed(nn.Module):
    def __init__(self, patch_size: int, in_chans: int, embed_dim: int):
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, patch_size, stride=patch_size)
        self.norm = group_norm(embed_dim)

    def forward(self, x):
        return self.norm(self.proj(x))


class BasicLayer(nn.Module):
    def __init__(self, dim: int, depth: int, shift_size: int, downsample: bool):
        super().__init__()
        self.blocks = nn.ModuleList([AxialShiftedBlock(dim, shift_size) for _ in range(depth)])
        self.downsample = PatchMerging(dim) if downsample else None

    def forward(self, x):
        for block in self.blocks:
            x = block(x)
        return x if self.downsample is None else self.downsample(x)


class ASMLP(nn.Module):
    """`(B, 3, H, W) -> (B, num_classes)`, eval-mode semantics (no drop path)."""

    def __init__(
        self,
        embed_dim=96,
        depths=(2, 2, 6, 2),
        shift_size=5,
        patch_size=4,
        in_chans=3,
        num_classes=1000,
    ):
        super().__init__()
        self.patch_embed = PatchEmbed(patch_size, in_chans, embed_dim)
        n = len(depths)
        self.layers = nn.ModuleList(
            BasicLayer(embed_dim * 2**i, d, shift_size, i < n - 1) for i, d in enumerate(depths)
        )
        features = embed_dim * 2 ** (n - 1)
        self.norm = group_norm(features)
        self.head = nn.Linear(features, num_classes)

    def forward(self, x):
        x = self.patch_embed(x)
        for layer in self.layers:
            x = layer(x)
        return self.head(self.norm(x).mean((2, 3)))
