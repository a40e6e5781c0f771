"""RaftMLP weight import: our model with the official-layout weights gives the logits of
an independent PyTorch RaftMLP (`reference/torch_models/raft_mlp.py`) to 1e-5, at the
trained size and, with `resize_to_trained_grid`, at another size (bicubic resampling).

The fixture is made by `reference/make_raft_mlp_fixture.py` (random weights, randomised
LayerNorm affines, a tiny three-level config), so this test needs no PyTorch.
"""

import json
import os

import numpy as np
import pytest

import smlp_jax
from smlp_jax.convert import WeightsMismatchError

FIXTURE = os.path.join(os.path.dirname(__file__), "..", "fixtures", "raft_mlp_tiny.npz")


def load_fixture():
    with np.load(FIXTURE, allow_pickle=False) as f:
        config = json.loads(str(f["config"]))
        weights = {k.removeprefix("weights/"): f[k] for k in f.files if k.startswith("weights/")}
        arrays = {k: f[k] for k in ("input", "logits", "input_resized", "logits_resized")}
        return config, weights, arrays


def build(config, pretrained, **kwargs):
    config = dict(config)
    return smlp_jax.create_model(
        "raftmlp_s",
        num_classes=config.pop("num_classes"),
        image_size=config.pop("image_size"),
        pretrained=pretrained,
        **config,
        **kwargs,
    )


def test_logits_match_pytorch_reference():
    config, weights, arrays = load_fixture()
    model = build(config, weights)
    model.eval()
    np.testing.assert_allclose(np.asarray(model(arrays["input"])), arrays["logits"], atol=1e-5)


def test_resized_input_matches_pytorch_bicubic_resampling():
    config, weights, arrays = load_fixture()
    model = build(config, weights, resize_to_trained_grid=True)
    model.eval()
    got = np.asarray(model(arrays["input_resized"]))
    np.testing.assert_allclose(got, arrays["logits_resized"], atol=1e-5, rtol=0)
    # The switch changes nothing at the trained size.
    np.testing.assert_allclose(np.asarray(model(arrays["input"])), arrays["logits"], atol=1e-5)


def test_loads_from_pt_style_npz_file_with_ddp_prefix(tmp_path):
    config, weights, arrays = load_fixture()
    path = tmp_path / "raftmlp.npz"
    np.savez(path, **{f"module.{k}": v for k, v in weights.items()})
    model = build(config, str(path))
    model.eval()
    np.testing.assert_allclose(np.asarray(model(arrays["input"])), arrays["logits"], atol=1e-5)


def test_missing_and_misshapen_keys_are_named():
    config, weights, _ = load_fixture()
    broken = dict(weights)
    del broken["levels.1.fn.3.3.fn.0.weight"]
    broken["classifier.weight"] = np.zeros((3, 3), np.float32)
    with pytest.raises(WeightsMismatchError) as info:
        build(config, broken)
    message = str(info.value)
    assert "levels.1.fn.3.3.fn.0.weight" in message
    assert "'classifier.weight' has shape (3, 3)" in message
