"""Writes tests/fixtures/smlpnet_tiny.npz from the independent PyTorch sMLPNet.

Run: .venv-ref/bin/python reference/make_smlpnet_fixture.py
Keys: `config` (JSON), `input` (NHWC), `logits` (eval mode), `train_output` (one
train-mode forward, drop path 0, batch statistics), `weights/<official key>` (every
entry of the state dict, BN statistics and affines randomised so a mis-mapped norm
shows), `after_train/<key>` (BN running statistics after that train-mode forward:
checks the momentum and the unbiased running variance), and, from the eval forward,
`stages/<i>` (stage i's output, NHWC: the input of the next patch merge, or of the final
BatchNorm) and `features` (that BatchNorm's output, NHWC) for `forward_intermediates`.
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_models.smlpnet import SMLPNetReference  # noqa: E402

CONFIG = dict(dim=8, alpha=3, depths=[2, 2, 2, 2], patch_size=4, num_classes=10)
IMAGE_SIZE = 64
OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "smlpnet_tiny.npz")


def randomise_norms(model: torch.nn.Module, gen: torch.Generator) -> None:
    for m in model.modules():
        if isinstance(m, (torch.nn.BatchNorm2d, torch.nn.LayerNorm)):
            m.weight.data = 1 + 0.3 * torch.randn(m.weight.shape, generator=gen)
            m.bias.data = 0.3 * torch.randn(m.bias.shape, generator=gen)
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.data = 0.3 * torch.randn(m.running_mean.shape, generator=gen)
            m.running_var.data = 0.5 + torch.rand(m.running_var.shape, generator=gen)


def stage_outputs(model: SMLPNetReference, x: torch.Tensor) -> dict[str, np.ndarray]:
    """One forward of `model`, recording what enters each later patch merge and the final
    BatchNorm (the stage outputs), and that BatchNorm's output; NHWC."""
    seen: dict[str, np.ndarray] = {}

    def record(name):
        def hook(module, args, *output):  # returns None: the forward is unchanged
            seen[name] = (output[0] if output else args[0]).permute(0, 2, 3, 1).numpy()

        return hook

    last = len(model.depths) - 1
    hooks = [
        model.to_patch_embedding[i + 1].register_forward_pre_hook(record(f"stages/{i}"))
        for i in range(last)
    ]
    hooks.append(model.batch_norm.register_forward_pre_hook(record(f"stages/{last}")))
    hooks.append(model.batch_norm.register_forward_hook(record("features")))
    model(x)
    for hook in hooks:
        hook.remove()
    return seen


def main() -> None:
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1)
    model = SMLPNetReference(image_size=IMAGE_SIZE, dp_rate=0.0, **CONFIG)
    randomise_norms(model, gen)
    x = torch.randn(2, 3, IMAGE_SIZE, IMAGE_SIZE, generator=gen)
    arrays = {f"weights/{k}": v.numpy().copy() for k, v in model.state_dict().items()}
    model.eval()
    with torch.no_grad():
        arrays["logits"] = model(x).numpy()
        arrays.update(stage_outputs(model, x))
        model.train()
        arrays["train_output"] = model(x).numpy()
    for k, v in model.state_dict().items():
        if "running_" in k:
            arrays[f"after_train/{k}"] = v.numpy().copy()
    arrays["config"] = np.array(json.dumps({**CONFIG, "image_size": IMAGE_SIZE}))
    arrays["input"] = x.permute(0, 2, 3, 1).numpy()
    np.savez_compressed(OUT, **arrays)
    print(f"wrote {os.path.normpath(OUT)} ({os.path.getsize(OUT)} bytes)")


if __name__ == "__main__":
    main()
