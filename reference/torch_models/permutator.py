"""An independent PyTorch Vision Permutator with the official `houqb/VisionPermutator`
state-dict layout (`network.{n}.{j}...`, `patch_embed.proj`, `norm`, `head`).

Used only to make parity fixtures (`reference/make_permutator_fixture.py`); written from
the paper and the official attribute names, not copied. Activations are (B, H, W, C), as
in the official code; the permutations are stated with einops.
"""

from __future__ import annotations

from einops import rearrange
from torch import nn
from torch.nn import functional as F


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int, out: int | None = None):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, out or dim)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))


class WeightedPermuteMLP(nn.Module):
    def __init__(self, dim: int, segment_dim: int, qkv_bias: bool = False):
        super().__init__()
        self.segment_dim = segment_dim
        self.mlp_c = nn.Linear(dim, dim, bias=qkv_bias)
        self.mlp_h = nn.Linear(dim, dim, bias=qkv_bias)
        self.mlp_w = nn.Linear(dim, dim, bias=qkv_bias)
        self.reweight = Mlp(dim, dim // 4, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        g = self.segment_dim
        h = rearrange(x, "b h w (g s) -> b g w (h s)", g=g)
        h = rearrange(self.mlp_h(h), "b g w (h s) -> b h w (g s)", h=x.shape[1])
        w = rearrange(x, "b h w (g s) -> b h g (w s)", g=g)
        w = rearrange(self.mlp_w(w), "b h g (w s) -> b h w (g s)", w=x.shape[2])
        c = self.mlp_c(x)
        weights = self.reweight((h + w + c).mean((1, 2)))
        weights = rearrange(weights, "b (c k) -> k b 1 1 c", k=3).softmax(0)
        return self.proj(h * weights[0] + w * weights[1] + c * weights[2])


class PermutatorBlock(nn.Module):
    def __init__(self, dim, segment_dim, mlp_ratio, qkv_bias=False, skip_lam=1.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WeightedPermuteMLP(dim, segment_dim, qkv_bias)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.skip_lam = skip_lam

    def forward(self, x):
        x = x + self.attn(self.norm1(x)) / self.skip_lam
        return x + self.mlp(self.norm2(x)) / self.skip_lam


class Conv(nn.Module):
    """Holds `proj`, a stride == kernel conv; NHWC in and out."""

    def __init__(self, cin: int, cout: int, patch: int):
        super().__init__()
        self.proj = nn.Conv2d(cin, cout, patch, stride=patch)

    def forward(self, x):
        return self.proj(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)


class VisionPermutator(nn.Module):
    """`(B, 3, H, W) -> (B, num_classes)` (eval semantics, no drop path)."""

    def __init__(
        self,
        layers,
        embed_dims,
        transitions,
        segment_dim,
        mlp_ratios,
        patch_size,
        qkv_bias=False,
        skip_lam=1.0,
        in_chans=3,
        num_classes=1000,
    ):
        super().__init__()
        self.patch_embed = Conv(in_chans, embed_dims[0], patch_size)
        network = []
        for i, depth in enumerate(layers):
            network.append(
                nn.Sequential(
                    *[
                        PermutatorBlock(
                            embed_dims[i], segment_dim[i], mlp_ratios[i], qkv_bias, skip_lam
                        )
                        for _ in range(depth)
                    ]
                )
            )
            if i + 1 < len(layers) and (transitions[i] or embed_dims[i] != embed_dims[i + 1]):
                network.append(Conv(embed_dims[i], embed_dims[i + 1], 2 if transitions[i] else 1))
        self.network = nn.ModuleList(network)
        self.norm = nn.LayerNorm(embed_dims[-1])
        self.head = nn.Linear(embed_dims[-1], num_classes)

    def forward(self, x):
        x = self.patch_embed(x.permute(0, 2, 3, 1))
        for part in self.network:
            x = part(x)
        return self.head(self.norm(x).mean((1, 2)))
