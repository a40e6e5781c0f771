"""Writes the MLP-Mixer parity fixtures, with timm as the independent reference.

    .venv-ref/bin/python reference/make_mixer_fixture.py

A tiny Mixer (32x32 images, patch 8, 2 blocks) is built with timm's `MlpMixer`, every
weight is replaced by random values (timm zero-initialises the head), and three files
land in tests/fixtures/:
  mixer_timm.npz     timm's state dict, exactly as `model.state_dict()` names it
  mixer_vit_jax.npz  the same weights as the official vit_jax Flax tree
                     (`stem/kernel`, `MixerBlock_0/token_mixing/Dense_0/kernel`, ...)
  mixer_logits.npz   NHWC images, timm's logits with exact GELU (timm's default) and
                     with tanh GELU (the official Flax `nn.gelu`), and the config;
                     `blocks_exact_gelu/<i>`, block i's output tokens `(B, N, C)`, and
                     `features_exact_gelu`, the final norm's, for `forward_intermediates`
"""

from __future__ import annotations

import json
import os
import sys
from functools import partial

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import timm_import  # noqa: E402, F401  (timm without torchvision)

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures")
CONFIG = dict(
    image_size=32,
    patch_size=8,
    hidden_dim=32,
    num_blocks=2,
    tokens_mlp_dim=24,
    channels_mlp_dim=64,
    num_classes=10,
)


def build(act_layer) -> torch.nn.Module:
    from timm.models.mlp_mixer import MlpMixer

    c = CONFIG
    return MlpMixer(
        num_classes=c["num_classes"],
        img_size=c["image_size"],
        patch_size=c["patch_size"],
        num_blocks=c["num_blocks"],
        embed_dim=c["hidden_dim"],
        mlp_ratio=(c["tokens_mlp_dim"] / c["hidden_dim"], c["channels_mlp_dim"] / c["hidden_dim"]),
        act_layer=act_layer,
    ).eval()


def to_vit_jax(sd: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """timm key/layout -> the official Flax tree (kernels `(in, out)`, conv HWIO)."""
    out = {
        "stem/kernel": sd["stem.proj.weight"].transpose(2, 3, 1, 0),
        "stem/bias": sd["stem.proj.bias"],
        "pre_head_layer_norm/scale": sd["norm.weight"],
        "pre_head_layer_norm/bias": sd["norm.bias"],
        "head/kernel": sd["head.weight"].T,
        "head/bias": sd["head.bias"],
    }
    names = {
        "norm1": "LayerNorm_0",
        "norm2": "LayerNorm_1",
        "mlp_tokens.fc1": "token_mixing/Dense_0",
        "mlp_tokens.fc2": "token_mixing/Dense_1",
        "mlp_channels.fc1": "channel_mixing/Dense_0",
        "mlp_channels.fc2": "channel_mixing/Dense_1",
    }
    for i in range(CONFIG["num_blocks"]):
        for timm_name, flax_name in names.items():
            w = sd[f"blocks.{i}.{timm_name}.weight"]
            is_norm = timm_name.startswith("norm")
            out[f"MixerBlock_{i}/{flax_name}/{'scale' if is_norm else 'kernel'}"] = (
                w if is_norm else w.T
            )
            out[f"MixerBlock_{i}/{flax_name}/bias"] = sd[f"blocks.{i}.{timm_name}.bias"]
    return out


def block_outputs(model: torch.nn.Module, images: torch.Tensor) -> dict[str, np.ndarray]:
    """One forward of timm's Mixer, recording each block's output tokens and the final
    norm's (`forward_intermediates(..., output_fmt="NLC")` and `forward_features`)."""
    seen: dict[str, np.ndarray] = {}

    def record(name):
        def hook(module, args, output):  # returns None: the forward is unchanged
            seen[name] = output.numpy()

        return hook

    hooks = [
        b.register_forward_hook(record(f"blocks_exact_gelu/{i}"))
        for i, b in enumerate(model.blocks)
    ]
    hooks.append(model.norm.register_forward_hook(record("features_exact_gelu")))
    model(images)
    for hook in hooks:
        hook.remove()
    return seen


def main() -> None:
    torch.manual_seed(0)
    exact = build(torch.nn.GELU)
    with torch.no_grad():
        for name, p in exact.named_parameters():
            if p.ndim == 1:  # biases, and LayerNorm scales around 1
                base = 1.0 if "norm" in name and name.endswith("weight") else 0.0
                p.copy_(base + 0.2 * torch.randn_like(p))
            else:  # large enough that tanh and exact GELU give clearly different logits
                p.copy_(2.0 * torch.randn_like(p) / np.sqrt(p[0].numel()))
    tanh = build(partial(torch.nn.GELU, approximate="tanh"))
    tanh.load_state_dict(exact.state_dict())

    images = torch.randn(2, 3, CONFIG["image_size"], CONFIG["image_size"])
    with torch.no_grad():
        logits_exact = exact(images).numpy()
        logits_tanh = tanh(images).numpy()
        activations = block_outputs(exact, images)
    sd = {k: v.numpy() for k, v in exact.state_dict().items()}

    os.makedirs(OUT, exist_ok=True)
    np.savez(os.path.join(OUT, "mixer_timm.npz"), **sd)
    np.savez(os.path.join(OUT, "mixer_vit_jax.npz"), **to_vit_jax(sd))
    np.savez(
        os.path.join(OUT, "mixer_logits.npz"),
        images=images.permute(0, 2, 3, 1).numpy(),
        logits_exact_gelu=logits_exact,
        logits_tanh_gelu=logits_tanh,
        config=np.array(json.dumps(CONFIG)),
        **activations,
    )
    print("tanh vs exact GELU logits differ by", float(np.abs(logits_exact - logits_tanh).max()))


if __name__ == "__main__":
    main()
