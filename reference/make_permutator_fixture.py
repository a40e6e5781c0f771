"""Writes tests/fixtures/permutator_tiny.npz: a tiny Vision Permutator's official-layout
weights, an input batch and the logits of our independent PyTorch ViP.

Run: .venv-ref/bin/python reference/make_permutator_fixture.py
Keys: `config` (JSON of the VisionPermutator hyperparameters), `input` (NHWC float32),
`logits`, and `weights/<official key>` for every entry of the state dict.
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_models.permutator import VisionPermutator  # noqa: E402

# 32x32 with patch 4: an 8x8 grid (segment 8), a stride-2 Downsample to 4x4, then a 1x1
# Downsample that only widens 24 -> 32: both official Downsample kinds and the
# `network` index gaps they make are exercised; skip_lam 2 checks the branch scaling.
CONFIG = dict(
    layers=[1, 2, 1],
    embed_dims=[16, 24, 32],
    transitions=[True, False, False],
    segment_dim=[8, 4, 4],
    mlp_ratios=[3, 3, 3],
    patch_size=4,
    skip_lam=2.0,
    num_classes=10,
)
IMAGE_SIZE = 32
OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "permutator_tiny.npz")


def randomise_norms(model: torch.nn.Module, gen: torch.Generator) -> None:
    for m in model.modules():
        if isinstance(m, torch.nn.LayerNorm):
            m.weight.data = 1 + 0.3 * torch.randn(m.weight.shape, generator=gen)
            m.bias.data = 0.3 * torch.randn(m.bias.shape, generator=gen)


def main() -> None:
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1)
    model = VisionPermutator(**CONFIG).eval()
    randomise_norms(model, gen)
    x = torch.randn(2, 3, IMAGE_SIZE, IMAGE_SIZE, generator=gen)
    with torch.no_grad():
        logits = model(x)
    arrays = {f"weights/{k}": v.numpy() for k, v in model.state_dict().items()}
    arrays["config"] = np.array(json.dumps({**CONFIG, "image_size": IMAGE_SIZE}))
    arrays["input"] = x.permute(0, 2, 3, 1).numpy()
    arrays["logits"] = logits.numpy()
    np.savez_compressed(OUT, **arrays)
    print(f"wrote {os.path.normpath(OUT)} ({os.path.getsize(OUT)} bytes)")


if __name__ == "__main__":
    main()
