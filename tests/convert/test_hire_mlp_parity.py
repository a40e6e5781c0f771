"""Hire-MLP weight import: our model with the official-layout weights gives the logits of
an independent PyTorch Hire-MLP (`reference/torch_models/hire_mlp.py`) to 1e-5, in eval
mode (running BatchNorm statistics) and in train mode (batch statistics).

The fixture is made by `reference/make_hire_mlp_fixture.py` (random weights, randomised
BatchNorm affines and statistics, a tiny three-stage config on 40x40 images whose grids
need the circular extension in every stage), so this test needs no PyTorch.
"""

import json
import os

import numpy as np
import pytest
from flax import nnx

import smlp_jax
from smlp_jax.convert import WeightsMismatchError, load_pretrained

FIXTURE = os.path.join(os.path.dirname(__file__), "..", "fixtures", "hire_mlp_tiny.npz")
# One jitted forward for every test here: compiled once per mode, not op by op.
forward = nnx.jit(lambda model, x: model(x))


@pytest.fixture(scope="module")
def fixture():
    with np.load(FIXTURE, allow_pickle=False) as f:
        config = json.loads(str(f["config"]))
        weights = {k.removeprefix("weights/"): f[k] for k in f.files if k.startswith("weights/")}
        return config, weights, f["input"], {k: f[k] for k in f.files if k.endswith("logits")}


@pytest.fixture(scope="module")
def model(fixture):
    """Built once through `create_model(..., pretrained=)`; each test reloads weights."""
    config, weights, _, _ = fixture
    config = {k: tuple(v) if isinstance(v, list) else v for k, v in config.items()}
    return smlp_jax.create_model(
        "hiremlp_t",
        num_classes=config.pop("num_classes"),
        image_size=config.pop("image_size"),
        pretrained=weights,
        **config,
    )


def test_logits_match_pytorch_reference(model, fixture):
    _, weights, x, expected = fixture
    load_pretrained(model, weights)
    model.eval()
    np.testing.assert_allclose(np.asarray(forward(model, x)), expected["logits"], atol=1e-5, rtol=0)


def test_loads_from_npz_file(model, fixture, tmp_path):
    _, weights, x, expected = fixture
    path = tmp_path / "weights.npz"
    np.savez(path, **{f"module.{k}": v for k, v in weights.items()})  # DDP prefix too
    load_pretrained(model, str(path))
    model.eval()
    np.testing.assert_allclose(np.asarray(forward(model, x)), expected["logits"], atol=1e-5, rtol=0)


def test_missing_and_misshapen_keys_are_named(model, fixture):
    _, weights, _, _ = fixture
    broken = dict(weights)
    del broken["network.2.1.attn.mlp_w1_norm.running_var"]
    broken["head.weight"] = np.zeros((3, 3), np.float32)
    with pytest.raises(WeightsMismatchError) as info:
        load_pretrained(model, broken, model_name="hiremlp_t")
    message = str(info.value)
    assert "network.2.1.attn.mlp_w1_norm.running_var" in message
    assert "'head.weight' has shape (3, 3)" in message


def test_train_mode_batch_statistics_match_pytorch(model, fixture):
    _, weights, x, expected = fixture
    load_pretrained(model, weights)
    model.train()  # batch statistics; drop_path_rate is 0 (the variant's t value)
    got = np.asarray(forward(model, x))
    np.testing.assert_allclose(got, expected["train_logits"], atol=1e-5, rtol=0)
