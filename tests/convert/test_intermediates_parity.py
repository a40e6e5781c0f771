"""`forward_intermediates` against the reference code's own activations, with its
weights through our importer (eval mode), to the logits tests' 1e-5.

Fixtures (keys added beside the logits, `reference/make_*_fixture.py`): sMLPNet's
independent PyTorch port, each stage's output and the final BatchNorm's
(`stages/<i>`, `features`); timm's MlpMixer, each block's tokens and the final norm's
(`blocks_exact_gelu/<i>`, `features_exact_gelu`); timm's ConvMixer, each block's map
(`blocks_<act>/<i>`).
"""

import json
import os

import numpy as np
import pytest
from flax import nnx

import smlp_jax

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "fixtures")
TOLERANCE = dict(atol=1e-5, rtol=1e-5)


def _arrays(name: str) -> dict:
    with np.load(os.path.join(FIXTURES, name), allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


@nnx.jit(static_argnames="output_fmt")
def _intermediates(model, x, output_fmt="NHWC"):
    return model.forward_intermediates(x, output_fmt=output_fmt)


def _check(final, intermediates, expected_final, expected):
    assert len(intermediates) == len(expected)
    for i, (ours, theirs) in enumerate(zip(intermediates, expected)):
        np.testing.assert_allclose(np.asarray(ours), theirs, **TOLERANCE, err_msg=f"index {i}")
    np.testing.assert_allclose(np.asarray(final), expected_final, **TOLERANCE)


def test_smlpnet_stages_match_the_reference():
    arrays = _arrays("smlpnet_tiny.npz")
    config = json.loads(str(arrays["config"]))
    weights = {k.removeprefix("weights/"): v for k, v in arrays.items() if k.startswith("weights/")}
    model = smlp_jax.create_model(
        "smlpnet_t",
        num_classes=config["num_classes"],
        image_size=config["image_size"],
        dim=config["dim"],
        alpha=config["alpha"],
        depths=tuple(config["depths"]),
        patch_size=config["patch_size"],
        pretrained=weights,
    )
    model.eval()
    final, intermediates = _intermediates(model, arrays["input"])
    stages = [arrays[f"stages/{i}"] for i in range(len(config["depths"]))]
    _check(final, intermediates, arrays["features"], stages)


def test_mixer_blocks_match_timm():
    arrays = _arrays("mixer_logits.npz")
    config = json.loads(str(arrays["config"]))
    model = smlp_jax.create_model(
        "mixer_b16",
        gelu_approximate=False,  # timm's exact GELU
        pretrained=os.path.join(FIXTURES, "mixer_timm.npz"),
        **config,
    )
    model.eval()
    final, tokens = _intermediates(model, arrays["images"], output_fmt="NLC")
    blocks = [arrays[f"blocks_exact_gelu/{i}"] for i in range(config["num_blocks"])]
    _check(final, tokens, arrays["features_exact_gelu"], blocks)


@pytest.mark.parametrize("act", ["gelu", "relu"])
def test_convmixer_blocks_match_timm(act):
    arrays = _arrays("convmixer_logits.npz")
    config = json.loads(str(arrays[f"config_{act}"]))
    model = smlp_jax.create_model(
        "convmixer_768_32",
        num_classes=int(arrays["num_classes"]),
        image_size=32,
        pretrained=os.path.join(FIXTURES, f"convmixer_{act}_timm.npz"),
        **config,
    )
    model.eval()
    final, maps = _intermediates(model, arrays["images"])
    blocks = [arrays[f"blocks_{act}/{i}"] for i in range(config["depth"])]
    _check(final, maps, blocks[-1], blocks)  # no final norm: the last block's map
