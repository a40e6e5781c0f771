"""The PyTorch reference of a registered smlp_jax model, built from the same hyperparameters.

`build(family, hparams, image_size, num_classes)` returns an `nn.Module` (NCHW input) for
the benchmark harness: timm's own code where timm has the model (MLP-Mixer, ConvMixer),
otherwise our independent PyTorch implementation in the official state-dict layout (the
same modules the parity fixtures are made with). `hparams` are smlp_jax's names
(`smlp_jax.models.registry.get_entry(name).defaults` plus overrides); this module maps
them to each reference constructor. Families without a PyTorch reference (Sparse-MLP:
no public code) raise `NoReference`.

Needs torch (and timm for Mixer/ConvMixer through `timm_import`): run it from .venv-ref.
"""

from __future__ import annotations

import os
import sys
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402

SOURCES = {
    "mixer": "timm MlpMixer",
    "convmixer": "timm ConvMixer",
    "smlpnet": "reference/torch_models/smlpnet.py",
    "dynamixer": "reference/torch_models/dynamixer.py",
    "permutator": "reference/torch_models/permutator.py",
    "as_mlp": "reference/torch_models/as_mlp.py",
    "hire_mlp": "reference/torch_models/hire_mlp.py",
    "raft_mlp": "reference/torch_models/raft_mlp.py",
}


class NoReference(Exception):
    """The family has no PyTorch reference implementation."""


def _pick(hp: dict[str, Any], *names: str) -> dict[str, Any]:
    return {n: (list(hp[n]) if isinstance(hp[n], tuple) else hp[n]) for n in names if n in hp}


def build(family: str, hparams: dict[str, Any], image_size: int, num_classes: int):
    hp = dict(hparams)
    if family == "mixer":
        import timm_import  # noqa: F401  (timm without torchvision)
        from timm.models.mlp_mixer import MlpMixer

        dim = hp["hidden_dim"]
        return MlpMixer(
            num_classes=num_classes,
            img_size=image_size,
            patch_size=hp["patch_size"],
            num_blocks=hp["num_blocks"],
            embed_dim=dim,
            mlp_ratio=(hp["tokens_mlp_dim"] / dim, hp["channels_mlp_dim"] / dim),
            drop_path_rate=hp.get("drop_path_rate", 0.0),
        )
    if family == "convmixer":
        import timm_import  # noqa: F401
        from timm.models.convmixer import ConvMixer

        act = {"gelu": torch.nn.GELU, "relu": torch.nn.ReLU}[hp.get("activation", "gelu")]
        return ConvMixer(
            num_classes=num_classes,
            act_layer=act,
            **_pick(hp, "dim", "depth", "kernel_size", "patch_size"),
        )
    if family == "smlpnet":
        from torch_models.smlpnet import SMLPNetReference

        return SMLPNetReference(
            image_size=image_size,
            num_classes=num_classes,
            dp_rate=hp.get("drop_path_rate", 0.0),
            **_pick(hp, "dim", "alpha", "depths", "patch_size"),
        )
    if family == "dynamixer":
        from torch_models.dynamixer import DynaMixer

        keys = ("layers", "transitions", "embed_dims", "num_heads", "reduced_dims")
        return DynaMixer(
            image_size=image_size,
            num_classes=num_classes,
            **_pick(hp, *keys, "mlp_ratio", "patch_size", "skip_lam"),
        )
    if family == "permutator":
        from torch_models.permutator import VisionPermutator

        ratios = hp["mlp_ratios"]  # one ratio for every stage in the official variants
        if not isinstance(ratios, (tuple, list)):
            hp["mlp_ratios"] = [ratios] * len(hp["layers"])
        keys = ("layers", "embed_dims", "transitions", "segment_dim", "mlp_ratios")
        return VisionPermutator(
            num_classes=num_classes, **_pick(hp, *keys, "patch_size", "qkv_bias", "skip_lam")
        )
    if family == "as_mlp":
        from torch_models.as_mlp import ASMLP

        return ASMLP(
            num_classes=num_classes,
            **_pick(hp, "embed_dim", "depths", "shift_size", "patch_size"),
        )
    if family == "hire_mlp":
        from torch_models.hire_mlp import HireMLPNet

        keys = ("layers", "embed_dims", "mlp_ratios", "pixel", "step_stride", "step_dilation")
        return HireMLPNet(num_classes=num_classes, **_pick(hp, *keys))
    if family == "raft_mlp":
        from torch_models.raft_mlp import RaftMLP

        keys = ("dims", "depths", "patch_sizes", "embedding_kernels", "raft_size")
        return RaftMLP(
            image_size=image_size,
            num_classes=num_classes,
            drop_path_rate=hp.get("drop_path_rate", 0.0),
            **_pick(hp, *keys, "token_expansion_factor", "channel_expansion_factor"),
        )
    raise NoReference(f"no PyTorch reference for the {family} family")
