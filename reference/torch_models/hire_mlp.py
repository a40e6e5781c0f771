"""An independent PyTorch Hire-MLP with the state-dict layout of the official
`ggjy/Hire-Wave-MLP.pytorch` checkpoints (`hire_mlp_tiny.pth` etc.).

Used only to make parity fixtures (`reference/make_hire_mlp_fixture.py`). Written from
the paper (arXiv 2108.13341) with the checkpoint's key names; the official file has no
licence and nothing of it is copied. NCHW, as the checkpoints' convolutions. The
circular extension is an index gather and the rearrangements are einops patterns.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import nn
from torch.nn import functional as F


class Mlp(nn.Module):
    """1x1 conv -> GELU -> 1x1 conv."""

    def __init__(self, dim: int, hidden: int, out: int | None = None):
        super().__init__()
        self.fc1 = nn.Conv2d(dim, hidden, 1)
        self.fc2 = nn.Conv2d(hidden, out or dim, 1)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))


def extend_circularly(x: torch.Tensor, dim: int, multiple: int) -> torch.Tensor:
    size = x.shape[dim]
    index = torch.arange(size + (-size) % multiple) % size
    return x.index_select(dim, index)


class HireMLP(nn.Module):
    def __init__(self, dim: int, pixel: int, step: int):
        super().__init__()
        self.pixel, self.step = pixel, step
        self.mlp_h1 = nn.Conv2d(dim * pixel, dim // 2, 1, bias=False)
        self.mlp_h1_norm = nn.BatchNorm2d(dim // 2)
        self.mlp_h2 = nn.Conv2d(dim // 2, dim * pixel, 1)
        self.mlp_w1 = nn.Conv2d(dim * pixel, dim // 2, 1, bias=False)
        self.mlp_w1_norm = nn.BatchNorm2d(dim // 2)
        self.mlp_w2 = nn.Conv2d(dim // 2, dim * pixel, 1)
        self.mlp_c = nn.Conv2d(dim, dim, 1)
        self.reweight = Mlp(dim, dim // 4, dim * 3)
        self.proj = nn.Conv2d(dim, dim, 1)

    def branch(self, x, dim, first, norm, second):
        p, size = self.pixel, x.shape[dim]
        x = torch.roll(x, self.step, dim)
        x = extend_circularly(x, dim, p)
        if dim == 2:
            y = rearrange(x, "b c (r p) w -> b (c p) r w", p=p)
            y = second(F.relu(norm(first(y))))
            y = rearrange(y, "b (c p) r w -> b c (r p) w", p=p)[:, :, :size]
        else:
            y = rearrange(x, "b c h (r p) -> b (c p) h r", p=p)
            y = second(F.relu(norm(first(y))))
            y = rearrange(y, "b (c p) h r -> b c h (r p)", p=p)[:, :, :, :size]
        return torch.roll(y, -self.step, dim)

    def forward(self, x):
        h = self.branch(x, 2, self.mlp_h1, self.mlp_h1_norm, self.mlp_h2)
        w = self.branch(x, 3, self.mlp_w1, self.mlp_w1_norm, self.mlp_w2)
        c = self.mlp_c(x)
        a = self.reweight((h + w + c).mean((2, 3), keepdim=True))
        a = rearrange(a, "b (c k) 1 1 -> k b c 1 1", k=3).softmax(0)
        return self.proj(h * a[0] + w * a[1] + c * a[2])


class HireBlock(nn.Module):
    def __init__(self, dim: int, mlp_ratio: float, pixel: int, step: int):
        super().__init__()
        self.norm1 = nn.BatchNorm2d(dim)
        self.attn = HireMLP(dim, pixel, step)
        self.norm2 = nn.BatchNorm2d(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class ConvBNReLU(nn.Module):
    def __init__(self, cin: int, cout: int, kernel: int, stride: int, padding: int):
        super().__init__()
        self.proj = nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding)
        self.norm = nn.BatchNorm2d(cout)

    def forward(self, x):
        return F.relu(self.norm(self.proj(x)))


class HireMLPNet(nn.Module):
    """`(B, 3, H, W) -> (B, num_classes)`; call `.eval()` for running-statistics BN."""

    def __init__(
        self,
        layers,
        embed_dims,
        mlp_ratios,
        pixel,
        step_stride,
        step_dilation,
        in_chans=3,
        num_classes=1000,
    ):
        super().__init__()
        self.patch_embed = ConvBNReLU(in_chans, embed_dims[0], 7, 4, 2)
        network = []
        for i, depth in enumerate(layers):
            network.append(
                nn.Sequential(
                    *[
                        HireBlock(
                            embed_dims[i],
                            mlp_ratios[i],
                            pixel[i],
                            (j % step_stride[i]) * step_dilation[i],
                        )
                        for j in range(depth)
                    ]
                )
            )
            if i + 1 < len(layers):
                network.append(ConvBNReLU(embed_dims[i], embed_dims[i + 1], 3, 2, 1))
        self.network = nn.ModuleList(network)
        self.norm = nn.BatchNorm2d(embed_dims[-1])
        self.head = nn.Linear(embed_dims[-1], num_classes)

    def forward(self, x):
        x = self.patch_embed(x)
        for part in self.network:
            x = part(x)
        return self.head(self.norm(x).mean((2, 3)))
