"""Vision Permutator weight import: our model with the official-layout weights gives the
logits of an independent PyTorch ViP (`reference/torch_models/permutator.py`) to 1e-5.

The fixture is made by `reference/make_permutator_fixture.py` (random weights, randomised
LayerNorm affines, a tiny three-stage config with both kinds of Downsample), so this
test needs no PyTorch.
"""

import json
import os

import numpy as np
import pytest
from flax import nnx

import smlp_jax
from smlp_jax.convert import WeightsMismatchError, load_pretrained

FIXTURE = os.path.join(os.path.dirname(__file__), "..", "fixtures", "permutator_tiny.npz")
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
        "vip_s7",
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
    del broken["network.2.1.attn.mlp_h.weight"]
    broken["head.weight"] = np.zeros((3, 3), np.float32)
    with pytest.raises(WeightsMismatchError) as info:
        load_pretrained(model, broken, model_name="vip_s7")
    message = str(info.value)
    assert "network.2.1.attn.mlp_h.weight" in message
    assert "'head.weight' has shape (3, 3)" in message


def test_reads_the_state_dict_inside_a_training_checkpoint(model, fixture):
    # The official .pth.tar files come from timm's train.py: {'state_dict': ..., ...}.
    _, weights, x, expected = fixture
    load_pretrained(model, {"state_dict": weights, "state_dict_ema": {}})
    model.eval()
    np.testing.assert_allclose(np.asarray(forward(model, x)), expected["logits"], atol=1e-5, rtol=0)
