"""Writes tests/fixtures/hire_mlp_tiny.npz: a tiny Hire-MLP's official-layout weights, an
input batch and the logits of our independent PyTorch Hire-MLP, in eval mode (running
BatchNorm statistics) and in train mode (batch statistics).

Run: .venv-ref/bin/python reference/make_hire_mlp_fixture.py
Keys: `config` (JSON of the HireMLPNet hyperparameters), `input` (NHWC float32),
`logits`, `train_logits`, and `weights/<official key>` for the whole state dict.
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_models.hire_mlp import HireMLPNet  # noqa: E402

# 40x40 gives grids 10/5/3: none is a multiple of its region size (4/3/2), so the
# circular extension and crop run in every stage; steps 0,2 / 0,1,2 / 0 exercise the
# cross-region shift with dilation and stride as the official variants use them.
CONFIG = dict(
    layers=[2, 3, 1],
    embed_dims=[16, 24, 32],
    mlp_ratios=[2, 2, 2],
    pixel=[4, 3, 2],
    step_stride=[2, 3, 1],
    step_dilation=[2, 1, 1],
    num_classes=10,
)
IMAGE_SIZE = 40
OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "hire_mlp_tiny.npz")


def randomise_norms(model: torch.nn.Module, gen: torch.Generator) -> None:
    """Non-trivial BatchNorm affines and running statistics, so loading them matters."""
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.weight.data = 1 + 0.3 * torch.randn(m.weight.shape, generator=gen)
            m.bias.data = 0.3 * torch.randn(m.bias.shape, generator=gen)
            m.running_mean.data = 0.3 * torch.randn(m.running_mean.shape, generator=gen)
            m.running_var.data = 0.5 + torch.rand(m.running_var.shape, generator=gen)


def main() -> None:
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1)
    model = HireMLPNet(**CONFIG)
    randomise_norms(model, gen)
    x = torch.randn(2, 3, IMAGE_SIZE, IMAGE_SIZE, generator=gen)
    arrays = {f"weights/{k}": v.numpy().copy() for k, v in model.state_dict().items()}
    with torch.no_grad():
        logits = model.eval()(x)
        train_logits = model.train()(x)  # batch statistics (updates running stats after)
    arrays["config"] = np.array(json.dumps({**CONFIG, "image_size": IMAGE_SIZE}))
    arrays["input"] = x.permute(0, 2, 3, 1).numpy()
    arrays["logits"] = logits.numpy()
    arrays["train_logits"] = train_logits.numpy()
    np.savez_compressed(OUT, **arrays)
    print(f"wrote {os.path.normpath(OUT)} ({os.path.getsize(OUT)} bytes)")


if __name__ == "__main__":
    main()
