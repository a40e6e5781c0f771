"""Writes tests/fixtures/raft_mlp_tiny.npz: a tiny RaftMLP's official-layout weights, two
input batches and the eval-mode logits of our independent PyTorch RaftMLP.

Run: .venv-ref/bin/python reference/make_raft_mlp_fixture.py
Keys: `config` (JSON of the RaftMLP hyperparameters), `input`/`logits` at the trained
size, `input_resized`/`logits_resized` at another (non-square) size, where every level
resamples bicubically (the input at level 2 is not a multiple of the patch), and
`weights/<official key>` for every entry of the state dict.
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_models.raft_mlp import RaftMLP  # noqa: E402

# Grids 8/4/2 at 32 px; at 40x48 px the levels see 10x12, 5x6 and (resized) 3x3.
CONFIG = dict(
    dims=[8, 12, 16],
    depths=[1, 2, 1],
    patch_sizes=[4, 2, 2],
    embedding_kernels=[[4, 8], [2, 4], [2]],
    raft_size=2,
    token_expansion_factor=2,
    channel_expansion_factor=3,
    num_classes=10,
)
IMAGE_SIZE = 32
RESIZED = (40, 48)
OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "raft_mlp_tiny.npz")


def randomise_norms(model: torch.nn.Module, gen: torch.Generator) -> None:
    """Gives every LayerNorm a non-trivial affine so the test sees it is loaded in order."""
    for m in model.modules():
        if isinstance(m, torch.nn.LayerNorm):
            m.weight.data = 1 + 0.3 * torch.randn(m.weight.shape, generator=gen)
            m.bias.data = 0.3 * torch.randn(m.bias.shape, generator=gen)


def main() -> None:
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1)
    model = RaftMLP(**CONFIG, image_size=IMAGE_SIZE).eval()
    randomise_norms(model, gen)
    x = torch.randn(2, 3, IMAGE_SIZE, IMAGE_SIZE, generator=gen)
    x_resized = torch.randn(2, 3, *RESIZED, generator=gen)
    with torch.no_grad():
        logits = model(x)
        logits_resized = model(x_resized)
    arrays = {f"weights/{k}": v.numpy() for k, v in model.state_dict().items()}
    arrays["config"] = np.array(json.dumps({**CONFIG, "image_size": IMAGE_SIZE}))
    arrays["input"] = x.permute(0, 2, 3, 1).numpy()
    arrays["logits"] = logits.numpy()
    arrays["input_resized"] = x_resized.permute(0, 2, 3, 1).numpy()
    arrays["logits_resized"] = logits_resized.numpy()
    np.savez_compressed(OUT, **arrays)
    print(f"wrote {os.path.normpath(OUT)} ({os.path.getsize(OUT)} bytes)")


if __name__ == "__main__":
    main()
