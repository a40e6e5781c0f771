"""DynaMixer logits parity with an independent PyTorch DynaMixer in the official layout.

Fixtures from `reference/make_dynamixer_fixture.py`: a tiny three-stage model (8x8 then
4x4 grid, a stride-2 transition and a 1x1 width change) with random weights.
"""

import json
import os

import numpy as np
import pytest
from flax import nnx

import smlp_jax
from smlp_jax.convert import WeightsMismatchError, load_pretrained, read_weights

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "fixtures")
WEIGHTS = os.path.join(FIXTURES, "dynamixer_tiny.npz")

forward = nnx.jit(lambda model, x: model(x))


@pytest.fixture(scope="module")
def reference():
    with np.load(os.path.join(FIXTURES, "dynamixer_logits.npz")) as f:
        ref = {k: f[k] for k in f.files}
    ref["config"] = json.loads(str(ref["config"]))
    return ref


def _model(reference, pretrained, **kw):
    config = {**reference["config"], **kw}
    model = smlp_jax.create_model("dynamixer_s", pretrained=pretrained, **config)
    model.eval()
    return model


@pytest.fixture(scope="module")
def loaded(reference):
    return _model(reference, WEIGHTS)


def test_logits_match_the_reference(reference, loaded):
    logits = np.asarray(forward(loaded, reference["images"]))
    np.testing.assert_allclose(logits, reference["logits"], atol=1e-5, rtol=1e-5)


def test_training_checkpoint_with_ddp_prefix_loads(reference, loaded):
    """The official script saves `{'state_dict': ...}` from a DDP-wrapped model."""
    weights = {f"module.{k}": v for k, v in read_weights(WEIGHTS).items()}
    model = nnx.clone(loaded)
    model.head.kernel[...] = model.head.kernel[...] * 0
    load_pretrained(model, {"state_dict": weights, "epoch": 3})
    np.testing.assert_allclose(
        np.asarray(forward(model, reference["images"])), reference["logits"], atol=1e-5, rtol=1e-5
    )


def test_other_grid_is_refused_with_the_option_named(loaded):
    weights = read_weights(WEIGHTS)
    # As saved from a model built for 64x64 images: stage 0's generate layers are 16x16.
    for key in ("network.0.0.attn.mix_h.generate.weight", "network.0.0.attn.mix_w.generate.weight"):
        weights[key] = np.zeros((16 * 16, 16 * 2), np.float32)
    with pytest.raises(WeightsMismatchError, match="resample_to_grid=True"):
        load_pretrained(nnx.clone(loaded), weights)


def test_resampled_to_a_larger_grid_runs(reference):
    model = _model(reference, WEIGHTS, image_size=64, resample_to_grid=True)
    generate = model.network[0][0].attn.mix_h.generate
    assert generate.kernel.shape == (16 * 2, 16 * 16)
    logits = np.asarray(forward(model, np.ones((1, 64, 64, 3), np.float32)))
    assert logits.shape == (1, 10) and np.all(np.isfinite(logits))
