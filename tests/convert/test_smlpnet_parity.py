"""sMLPNet weight import: our model, given official-layout weights, reproduces an
independent PyTorch sMLPNet (`reference/torch_models/smlpnet.py`) to 1e-5.

The fixture (`reference/make_smlpnet_fixture.py`) holds random weights with every
norm's statistics and affine randomised, an input batch, the eval logits, one
train-mode output and the BN running statistics after it; no PyTorch needed here.
"""

import json
import os

import numpy as np
import pytest
from flax import nnx

import smlp_jax
from smlp_jax.convert import load_pretrained
from smlp_jax.convert.smlpnet import official_rules

FIXTURE = os.path.join(os.path.dirname(__file__), "..", "fixtures", "smlpnet_tiny.npz")
forward = nnx.jit(lambda model, x: model(x))


@pytest.fixture(scope="module")
def fixture():
    with np.load(FIXTURE, allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    config = json.loads(str(arrays.pop("config")))
    weights = {k.removeprefix("weights/"): v for k, v in arrays.items() if k.startswith("weights/")}
    after = {
        k.removeprefix("after_train/"): v for k, v in arrays.items() if k.startswith("after_train/")
    }
    return config, weights, after, arrays


def build(config, pretrained):
    config = dict(config)
    return smlp_jax.create_model(
        "smlpnet_t",
        num_classes=config.pop("num_classes"),
        image_size=config.pop("image_size"),
        depths=tuple(config.pop("depths")),
        pretrained=pretrained,
        **config,
    )


def test_eval_logits_match_reference(fixture):
    config, weights, _, arrays = fixture
    model = build(config, weights)
    model.eval()
    out = np.asarray(forward(model, arrays["input"]))
    np.testing.assert_allclose(out, arrays["logits"], atol=1e-5, rtol=0)


def test_train_mode_output_and_running_stats_match_reference(fixture):
    """Batch statistics, PyTorch momentum 0.1 and the unbiased running variance."""
    config, weights, after, arrays = fixture
    model = build(config, weights)
    model.train()
    out = np.asarray(forward(model, arrays["input"]))
    np.testing.assert_allclose(out, arrays["train_output"], atol=1e-5, rtol=0)
    rules = official_rules(model)
    for key, expected in after.items():
        variable, _ = rules[key]
        np.testing.assert_allclose(np.asarray(variable[...]), expected, atol=1e-5, rtol=1e-5)


def test_loads_from_npz_path_and_nested_checkpoint(fixture, tmp_path):
    config, weights, _, arrays = fixture
    path = tmp_path / "smlp_tiny.npz"
    np.savez(path, **weights)
    model = build(config, str(path))
    model.eval()
    np.testing.assert_allclose(
        np.asarray(forward(model, arrays["input"])), arrays["logits"], atol=1e-5, rtol=0
    )
    # A SPACH training checkpoint nests the weights under 'model' and 'model_ema'.
    shifted = {k: v + 1.0 if k == "mlp_head.0.bias" else v for k, v in weights.items()}
    load_pretrained(model, {"model": weights, "model_ema": shifted}, checkpoint_key="model_ema")
    np.testing.assert_allclose(
        np.asarray(forward(model, arrays["input"])), arrays["logits"] + 1.0, atol=1e-5, rtol=0
    )
