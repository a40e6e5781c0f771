"""Writes the DynaMixer parity fixtures from our independent PyTorch DynaMixer
(reference/torch_models/dynamixer.py, official state-dict layout).

    .venv-ref/bin/python reference/make_dynamixer_fixture.py

A tiny three-stage model (32x32 images, patch 4: an 8x8 grid, a stride-2 transition to
4x4, then a 1x1 width change) with every weight randomised. tests/fixtures/ gets
  dynamixer_tiny.npz         the state dict, as `model.state_dict()` names it
  dynamixer_logits.npz       NHWC images, the logits and the config
It also prints the official variants' parameter counts.
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_models.dynamixer import VARIANTS, DynaMixer  # noqa: E402

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures")
CONFIG = dict(
    layers=[1, 1, 1],
    transitions=[True, False, False],
    embed_dims=[16, 32, 48],
    num_heads=[2, 4, 4],
    reduced_dims=[2, 2, 3],
    mlp_ratio=3.0,
    patch_size=4,
    image_size=32,
    num_classes=10,
)


def main() -> None:
    torch.manual_seed(0)
    model = DynaMixer(**CONFIG).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim == 1:
                base = 1.0 if "norm" in name and name.endswith("weight") else 0.0
                p.copy_(base + 0.2 * torch.randn_like(p))
            else:  # large enough that the generated mixing matrices are far from uniform
                p.copy_(1.5 * torch.randn_like(p) / np.sqrt(p[0].numel()))
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        logits = model(images).numpy()
    os.makedirs(OUT, exist_ok=True)
    np.savez(
        os.path.join(OUT, "dynamixer_tiny.npz"),
        **{k: v.numpy() for k, v in model.state_dict().items()},
    )
    np.savez(
        os.path.join(OUT, "dynamixer_logits.npz"),
        images=images.permute(0, 2, 3, 1).numpy(),
        logits=logits,
        config=np.array(json.dumps(CONFIG)),
    )
    for name, variant in VARIANTS.items():
        count = sum(p.numel() for p in DynaMixer(**variant).parameters())
        print(f"dynamixer_{name}: {count:,} parameters")


if __name__ == "__main__":
    main()
