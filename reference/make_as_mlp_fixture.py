"""Writes tests/fixtures/as_mlp_tiny.npz: a tiny AS-MLP's official-layout weights, an
input batch and the eval-mode logits of our independent PyTorch AS-MLP.

Run: .venv-ref/bin/python reference/make_as_mlp_fixture.py
Keys: `config` (JSON of the ASMLP hyperparameters), `input` (NHWC float32), `logits`,
and `weights/<official key>` for every entry of the state dict.
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_models.as_mlp import ASMLP  # noqa: E402

# Three stages with patch 2 on 32x32 give grids 16/8/4; with shift 5 there are
# fewer than 5 channel groups at 8 and 16 channels, 5 unequal groups at 32: both group
# rules are exercised.
CONFIG = dict(embed_dim=8, depths=[1, 2, 1], shift_size=5, patch_size=2, num_classes=10)
IMAGE_SIZE = 32
OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "as_mlp_tiny.npz")


def randomise_norms(model: torch.nn.Module, gen: torch.Generator) -> None:
    """Gives every GroupNorm a non-trivial affine so the test sees it is loaded."""
    for m in model.modules():
        if isinstance(m, torch.nn.GroupNorm):
            m.weight.data = 1 + 0.3 * torch.randn(m.weight.shape, generator=gen)
            m.bias.data = 0.3 * torch.randn(m.bias.shape, generator=gen)


def main() -> None:
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1)
    model = ASMLP(**CONFIG).eval()
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
