"""AS-MLP weight import: our model with the official-layout weights gives the logits of
an independent PyTorch AS-MLP (`reference/torch_models/as_mlp.py`) to 1e-5.

The fixture is made by `reference/make_as_mlp_fixture.py` (random weights, randomised
GroupNorm affines, a tiny three-stage config), so this test needs no PyTorch.
"""

import json
import os

import numpy as np
import pytest

import smlp_jax
from smlp_jax.convert import WeightsMismatchError

FIXTURE = os.path.join(os.path.dirname(__file__), "..", "fixtures", "as_mlp_tiny.npz")


def load_fixture():
    with np.load(FIXTURE, allow_pickle=False) as f:
        config = json.loads(str(f["config"]))
        weights = {k.removeprefix("weights/"): f[k] for k in f.files if k.startswith("weights/")}
        return config, weights, f["input"], f["logits"]


def build(config, pretrained):
    config = dict(config)
    return smlp_jax.create_model(
        "asmlp_t",
        num_classes=config.pop("num_classes"),
        image_size=config.pop("image_size"),
        pretrained=pretrained,
        **config,
    )


def test_logits_match_pytorch_reference():
    config, weights, x, expected = load_fixture()
    model = build(config, weights)
    model.eval()
    np.testing.assert_allclose(np.asarray(model(x)), expected, atol=1e-5, rtol=0)


def test_loads_from_npz_file(tmp_path):
    config, weights, x, expected = load_fixture()
    path = tmp_path / "asmlp.npz"
    np.savez(path, **{f"module.{k}": v for k, v in weights.items()})  # DDP prefix too
    model = build(config, str(path))
    model.eval()
    np.testing.assert_allclose(np.asarray(model(x)), expected, atol=1e-5, rtol=0)


def test_missing_and_misshapen_keys_are_named():
    config, weights, _, _ = load_fixture()
    broken = dict(weights)
    del broken["layers.1.blocks.0.axial_shift.conv2_1.weight"]
    broken["head.weight"] = np.zeros((3, 3), np.float32)
    with pytest.raises(WeightsMismatchError) as info:
        build(config, broken)
    message = str(info.value)
    assert "layers.1.blocks.0.axial_shift.conv2_1.weight" in message
    assert "'head.weight' has shape (3, 3)" in message
