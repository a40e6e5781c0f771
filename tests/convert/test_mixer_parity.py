"""MLP-Mixer logits parity with timm, through both official weight layouts.

Fixtures from `reference/make_mixer_fixture.py` (timm 1.0 as the reference): the same
random weights as timm's state dict and as the official vit_jax Flax tree, and timm's
logits with exact and with tanh GELU.
"""

import json
import os

import jax
import numpy as np
import pytest
from flax import nnx

import smlp_jax
from smlp_jax.convert import WeightsMismatchError, load_pretrained, read_weights

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "fixtures")

forward = nnx.jit(lambda model, x: model(x))


def _fixture(name):
    return os.path.join(FIXTURES, name)


@pytest.fixture(scope="module")
def reference():
    with np.load(_fixture("mixer_logits.npz")) as f:
        ref = {k: f[k] for k in f.files}
    ref["config"] = json.loads(str(ref["config"]))
    return ref


def _model(reference, *, gelu_approximate, pretrained, **kw):
    c = {**reference["config"], **kw}
    model = smlp_jax.create_model(
        "mixer_b16", gelu_approximate=gelu_approximate, pretrained=pretrained, **c
    )
    model.eval()
    return model


@pytest.fixture(scope="module")
def from_timm(reference):
    """timm's state dict, with timm's exact GELU."""
    return _model(reference, gelu_approximate=False, pretrained=_fixture("mixer_timm.npz"))


@pytest.fixture(scope="module")
def from_vit_jax(reference):
    """The official vit_jax tree, with the official tanh GELU."""
    return _model(reference, gelu_approximate=True, pretrained=_fixture("mixer_vit_jax.npz"))


def test_timm_state_dict_matches_timm(reference, from_timm):
    logits = np.asarray(forward(from_timm, reference["images"]))
    np.testing.assert_allclose(logits, reference["logits_exact_gelu"], atol=1e-5, rtol=1e-5)


def test_vit_jax_tree_matches_timm_with_tanh_gelu(reference, from_vit_jax):
    logits = np.asarray(forward(from_vit_jax, reference["images"]))
    np.testing.assert_allclose(logits, reference["logits_tanh_gelu"], atol=1e-5, rtol=1e-5)
    # The GELU choice moves the logits by far more than the tolerance: the tests have teeth.
    assert np.abs(logits - reference["logits_exact_gelu"]).max() > 5e-5


def test_both_layouts_give_the_same_parameters(from_timm, from_vit_jax):
    a = nnx.state(from_timm, nnx.Param)
    b = nnx.state(from_vit_jax, nnx.Param)
    for x, y in zip(nnx.to_flat_state(a), nnx.to_flat_state(b)):
        assert x[0] == y[0]
        np.testing.assert_array_equal(np.asarray(x[1][...]), np.asarray(y[1][...]))


def test_missing_key_is_named(from_vit_jax):
    weights = read_weights(_fixture("mixer_vit_jax.npz"))
    del weights["MixerBlock_1/token_mixing/Dense_0/kernel"]
    with pytest.raises(WeightsMismatchError, match="MixerBlock_1/token_mixing/Dense_0/kernel"):
        load_pretrained(nnx.clone(from_vit_jax), weights)


def test_other_grid_is_refused_with_the_option_named(reference):
    with pytest.raises(WeightsMismatchError, match="resample_to_grid=True"):
        _model(
            reference, gelu_approximate=True, pretrained=_fixture("mixer_timm.npz"), image_size=64
        )


def test_vit_jax_tree_nested_or_with_a_params_prefix(reference, from_vit_jax):
    """The same vit_jax weights as a nested Flax tree (`flax.serialization` / orbax), or
    flat under big_vision's `params/` prefix beside optimiser state, load the same."""
    flat = read_weights(_fixture("mixer_vit_jax.npz"))
    nested: dict = {}
    for key, value in flat.items():
        *parents, leaf = key.split("/")
        node = nested
        for name in parents:
            node = node.setdefault(name, {})
        node[leaf] = value
    prefixed = {f"params/{k}": v for k, v in flat.items()} | {"opt/state/step": np.zeros(())}
    expected = nnx.to_pure_dict(nnx.state(from_vit_jax, nnx.Param))
    for weights in ({"params": nested}, nested, prefixed):
        model = _model(reference, gelu_approximate=True, pretrained=weights)
        got = nnx.to_pure_dict(nnx.state(model, nnx.Param))
        same = jax.tree.map(np.array_equal, got, expected)
        assert all(jax.tree.leaves(same))
