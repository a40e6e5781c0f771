"""Writes the ConvMixer parity fixtures, with timm's `ConvMixer` as the reference.

    .venv-ref/bin/python reference/make_convmixer_fixture.py

Two tiny ConvMixers (dim 16, depth 2; GELU with kernel 5 and ReLU with an even kernel
4, so PyTorch's asymmetric 'same' padding is covered), every weight and BatchNorm
statistic randomised, in eval mode. For each, tests/fixtures/ gets
  convmixer_<act>_timm.npz    timm's state dict, as `model.state_dict()` names it
and convmixer_logits.npz holds the NHWC images, the logits and the configs, and each
block's output `blocks_<act>/<i>` (NHWC) for `forward_intermediates`.
"""

from __future__ import annotations

import functools
import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import timm_import  # noqa: E402, F401  (timm without torchvision)

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures")
CONFIGS = {
    "gelu": dict(dim=16, depth=2, kernel_size=5, patch_size=4, activation="gelu"),
    "relu": dict(dim=16, depth=2, kernel_size=4, patch_size=4, activation="relu"),
}
NUM_CLASSES = 10


def build(config: dict) -> torch.nn.Module:
    from timm.models.convmixer import ConvMixer

    act = {"gelu": torch.nn.GELU, "relu": torch.nn.ReLU}[config["activation"]]
    kw = {k: v for k, v in config.items() if k != "activation"}
    return ConvMixer(num_classes=NUM_CLASSES, act_layer=act, **kw)


def randomise(model: torch.nn.Module) -> None:
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim == 1:
                base = 1.0 if name.endswith("weight") else 0.0  # BatchNorm scales near 1
                p.copy_(base + 0.2 * torch.randn_like(p))
            else:
                p.copy_(1.5 * torch.randn_like(p) / np.sqrt(p[0].numel()))
        for name, b in model.named_buffers():
            if name.endswith("running_mean"):
                b.copy_(0.3 * torch.randn_like(b))
            elif name.endswith("running_var"):
                b.copy_(0.5 + torch.rand_like(b))


def record(store: dict, key: str, module, args, output) -> None:
    """A forward hook: `store[key]` = the module's output, NHWC (returns None, so the
    forward is unchanged)."""
    store[key] = output.permute(0, 2, 3, 1).numpy()


def main() -> None:
    torch.manual_seed(0)
    images = torch.randn(2, 3, 32, 32)
    out = {"images": images.permute(0, 2, 3, 1).numpy(), "num_classes": np.array(NUM_CLASSES)}
    for act, config in CONFIGS.items():
        model = build(config)
        randomise(model)
        model.eval()
        hooks = [
            block.register_forward_hook(functools.partial(record, out, f"blocks_{act}/{i}"))
            for i, block in enumerate(model.blocks)
        ]
        with torch.no_grad():
            out[f"logits_{act}"] = model(images).numpy()
        for hook in hooks:
            hook.remove()
        sd = {k: v.numpy() for k, v in model.state_dict().items()}
        np.savez(os.path.join(OUT, f"convmixer_{act}_timm.npz"), **sd)
        out[f"config_{act}"] = np.array(json.dumps(config))
    np.savez(os.path.join(OUT, "convmixer_logits.npz"), **out)
    from timm.models.convmixer import ConvMixer

    cifar = ConvMixer(dim=256, depth=8, kernel_size=5, patch_size=2)
    print("ConvMixer-256/8 k5 p2 parameters:", sum(p.numel() for p in cifar.parameters()))


if __name__ == "__main__":
    main()
