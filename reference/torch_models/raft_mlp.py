"""An independent PyTorch RaftMLP with the official `okojoalg/raft-mlp` state-dict layout
(`levels.{i}.fn.0.fc`, `levels.{i}.fn.{2 + d}.{1,3,5}...`, `heads.0.1`, `classifier`).

Used only to make parity fixtures (`reference/make_raft_mlp_fixture.py`); written from
the paper and the official module structure (cross-scale MLP embedding, serial permuted
levels, `shortcut=False` head), not copied. Activations inside a level are tokens
`(B, H*W, C)` as in the official code; the permutations are stated with einops, the
embedding uses `F.unfold` and the resampling `F.interpolate(mode="bicubic")`.
"""

from __future__ import annotations

import math

import torch
from einops import rearrange
from einops.layers.torch import Rearrange
from torch import nn
from torch.nn import functional as F


def drop_path(x: torch.Tensor, rate: float, training: bool) -> torch.Tensor:
    if rate == 0.0 or not training:
        return x
    keep = 1 - rate
    mask = torch.floor(keep + torch.rand((x.shape[0],) + (1,) * (x.ndim - 1)))
    return x / keep * mask


class Residual(nn.Module):
    """`x + drop_path(fn(norm(x)))`; `fn` is Linear-GELU-Dropout-Linear-Dropout (fn.0, fn.3)."""

    def __init__(self, dim: int, expansion: int, norm: nn.Module, rate: float):
        super().__init__()
        self.norm = norm
        self.fn = nn.Sequential(
            nn.Linear(dim, dim * expansion),
            nn.GELU(),
            nn.Dropout(0.0),
            nn.Linear(dim * expansion, dim),
            nn.Dropout(0.0),
        )
        self.rate = rate

    def forward(self, x):
        return x + drop_path(self.fn(self.norm(x)), self.rate, self.training)


def raft_norm(channels: int, raft: int, size: int) -> nn.Sequential:
    """LayerNorm over the channels of `(B, (co o1), (r o2))` raft-major tokens (`norm.1`)."""
    pattern = dict(c1=channels // raft, c2=raft, o2=size)
    return nn.Sequential(
        Rearrange("b (c1 o1) (c2 o2) -> b (o1 o2) (c1 c2)", **pattern),
        nn.LayerNorm(channels),
        Rearrange("b (o1 o2) (c1 c2) -> b (c1 o1) (c2 o2)", **pattern),
    )


class Shrink(nn.Module):
    """`(B, (h w), (r co))` -> `(B, (co W), (r H))` on the trained grid (bicubic if needed)."""

    def __init__(self, raft: int, trained: int):
        super().__init__()
        self.raft, self.trained, self.hw = raft, trained, (trained, trained)

    def forward(self, x):
        h, w = self.hw
        t = self.trained
        if (h, w) != (t, t):
            x = rearrange(x, "b (h w) c -> b c h w", h=h, w=w)
            x = F.interpolate(x, (t, t), mode="bicubic", align_corners=False)
            x = rearrange(x, "b c h w -> b (h w) c")
        return rearrange(x, "b (h w) (r co) -> b (co w) (r h)", h=t, w=t, r=self.raft)


class Turn(nn.Module):
    def __init__(self, raft: int, trained: int):
        super().__init__()
        self.raft, self.trained = raft, trained

    def forward(self, x):
        t = self.trained
        return rearrange(x, "b (co w) (r h) -> b (co h) (r w)", h=t, w=t, r=self.raft)


class Expand(nn.Module):
    def __init__(self, raft: int, trained: int):
        super().__init__()
        self.raft, self.trained, self.hw = raft, trained, (trained, trained)

    def forward(self, x):
        t = self.trained
        x = rearrange(x, "b (co h) (r w) -> b (h w) (r co)", h=t, w=t, r=self.raft)
        if self.hw != (t, t):
            x = rearrange(x, "b (h w) c -> b c h w", h=t, w=t)
            x = F.interpolate(x, self.hw, mode="bicubic", align_corners=False)
            x = rearrange(x, "b c h w -> b (h w) c")
        return x


class Embedding(nn.Module):
    """Unfold with each kernel (stride = smallest), concatenate, Linear (`fc`)."""

    def __init__(self, cin: int, cout: int, kernels):
        super().__init__()
        self.kernels, self.stride = list(kernels), min(kernels)
        self.fc = nn.Linear(cin * sum(k * k for k in kernels), cout)

    def forward(self, x):
        s = self.stride
        parts = [F.unfold(x, k, padding=(k - s) // 2, stride=s) for k in self.kernels]
        return self.fc(torch.cat(parts, dim=1).transpose(1, 2))


class Level(nn.Module):
    def __init__(self, cin, cout, depth, trained, patch, kernels, raft, tok, ch, rate):
        super().__init__()
        self.patch, self.trained = patch, trained
        blocks = []
        for _ in range(depth):
            blocks.append(
                nn.Sequential(
                    Shrink(raft, trained),
                    Residual(trained * raft, tok, raft_norm(cout, raft, trained), rate),
                    Turn(raft, trained),
                    Residual(trained * raft, tok, raft_norm(cout, raft, trained), rate),
                    Expand(raft, trained),
                    Residual(cout, ch, nn.LayerNorm(cout), rate),
                )
            )
        self.fn = nn.Sequential(Embedding(cin, cout, kernels), nn.Identity(), *blocks)

    def forward(self, x):
        _, _, h, w = x.shape
        p = self.patch
        gh, gw = math.ceil(h / p), math.ceil(w / p)
        if (h, w) != (gh * p, gw * p):
            x = F.interpolate(x, (gh * p, gw * p), mode="bicubic", align_corners=False)
        for block in self.fn[2:]:
            block[0].hw = block[4].hw = (gh, gw)
        x = self.fn(x)
        return rearrange(x, "b (h w) c -> b c h w", h=gh, w=gw)


class RaftMLP(nn.Module):
    def __init__(
        self,
        dims,
        depths,
        patch_sizes,
        embedding_kernels,
        raft_size=2,
        token_expansion_factor=2,
        channel_expansion_factor=4,
        image_size=224,
        num_classes=1000,
        drop_path_rate=0.0,
    ):
        super().__init__()
        levels, cin, trained = [], 3, image_size
        for dim, depth, patch, kernels in zip(dims, depths, patch_sizes, embedding_kernels):
            trained = math.ceil(trained / patch)
            levels.append(
                Level(
                    cin,
                    dim,
                    depth,
                    trained,
                    patch,
                    kernels,
                    raft_size,
                    token_expansion_factor,
                    channel_expansion_factor,
                    drop_path_rate,
                )
            )
            cin = dim
        self.levels = nn.ModuleList(levels)
        self.heads = nn.ModuleList([nn.Sequential(nn.Identity(), nn.LayerNorm(dims[-1]))])
        self.classifier = nn.Linear(dims[-1], num_classes)

    def forward(self, x):
        for level in self.levels:
            x = level(x)
        x = self.heads[0](x.permute(0, 2, 3, 1)).mean((1, 2))
        return self.classifier(x)
