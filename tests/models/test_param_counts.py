"""Exact parameter counts of every registered model at 1000 classes, 224x224.

Counted from `jax.eval_shape` (nothing is allocated or compiled). The figures are the
official implementations' `sum(p.numel() for p in model.parameters())`: trainable
parameters only, BatchNorm running statistics excluded.
"""

import jax
import numpy as np
import pytest
from flax import nnx

import smlp_jax

PARAM_COUNTS = {
    # sMLPNet, microsoft/SPACH models/smlp.py
    "smlpnet_t": 24_123_584,
    "smlpnet_s": 48_558_136,
    "smlpnet_b": 65_880_408,
    # MLP-Mixer, vit_jax models_mixer.py (= timm mlp_mixer.py mixer_*_224)
    "mixer_s32": 19_104_624,
    "mixer_s16": 18_528_264,
    "mixer_b32": 60_293_428,
    "mixer_b16": 59_880_472,
    "mixer_l32": 206_939_264,
    "mixer_l16": 208_196_168,
    # ConvMixer, timm convmixer.py (= locuslab/convmixer); 256_8: the CIFAR-10 setting
    "convmixer_1536_20": 51_625_960,
    "convmixer_768_32": 21_110_248,
    "convmixer_1024_20": 24_383_464,
    "convmixer_256_8": 848_616,
    # DynaMixer, ziyuwwang/DynaMixer models/configs/conf_dynamixer.py
    "dynamixer_s": 26_265_960,
    "dynamixer_m": 57_128_264,
    "dynamixer_l": 97_818_088,
    # AS-MLP, svip-lab/AS-MLP models/as_mlp.py + configs/as_*_patch4_shift5_224.yaml
    "asmlp_t": 28_282_696,
    "asmlp_s": 49_594_696,
    "asmlp_b": 87_752_808,
    # Vision Permutator, houqb/VisionPermutator models/vip.py
    "vip_s14": 29_892_904,
    "vip_s7": 25_114_984,
    "vip_m7": 55_272_488,
    "vip_l7": 87_784_936,
    # RaftMLP, okojoalg/raft-mlp libs/models.py + imagenet-raft-mlp-cross-mlp-emb-*.yaml
    "raftmlp_s": 9_868_768,
    "raftmlp_m": 21_413_632,
    "raftmlp_l": 36_184_672,
    # Sparse-MLP (arXiv 2109.02008; no public code): our reconstruction, see
    # smlp_jax/models/sparse_mlp.py (paper: ~22M, 69M, 130M)
    "sparse_mlp_s": 24_980_504,
    "sparse_mlp_b": 72_940_584,
    "sparse_mlp_l": 127_032_616,
    # Hire-MLP, ggjy/Hire-Wave-MLP.pytorch mlp_based/hire_mlp.py (hire_mlp_tiny/small/base/large)
    "hiremlp_t": 18_041_672,
    "hiremlp_s": 33_113_848,
    "hiremlp_b": 58_226_856,
    "hiremlp_l": 95_723_944,
}


def count_params(name: str) -> int:
    model = nnx.eval_shape(lambda: smlp_jax.create_model(name))
    return int(sum(np.prod(x.shape) for x in jax.tree.leaves(nnx.state(model, nnx.Param))))


def test_every_registered_model_is_in_the_table():
    missing = sorted(set(smlp_jax.list_models()) - set(PARAM_COUNTS))
    assert not missing, f"registered models without a parameter count: {missing}"
    stale = sorted(set(PARAM_COUNTS) - set(smlp_jax.list_models()))
    assert not stale, f"table rows for models that are not registered: {stale}"


@pytest.mark.parametrize("name", sorted(PARAM_COUNTS))
def test_param_count(name):
    assert count_params(name) == PARAM_COUNTS[name]


def _smallest_of_each_family() -> list[str]:
    smallest = {}
    for name, count in PARAM_COUNTS.items():
        family = smlp_jax.models.registry.get_entry(name).family
        if family not in smallest or count < PARAM_COUNTS[smallest[family]]:
            smallest[family] = name
    return sorted(smallest.values())


@pytest.mark.parametrize("name", _smallest_of_each_family())
def test_output_shape_at_the_default_input(name):
    """The forward at the model's own input size (its pretrained configuration) gives
    `(B, num_classes)` logits, traced with `jax.eval_shape` (no compute). One model a
    family: the variants of a family differ only in widths and depths, and tracing every
    full-size model measured 420 s, too long for the suite."""
    cfg = smlp_jax.models.pretrained_cfg(name)
    c, h, w = cfg.input_size

    def forward():
        model = smlp_jax.create_model(name, num_classes=7, image_size=h)
        model.eval()
        return model(jax.numpy.zeros((2, h, w, c)))

    out = jax.eval_shape(forward)
    assert out.shape == (2, 7) and out.dtype == jax.numpy.float32, (name, out)
