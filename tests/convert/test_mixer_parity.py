"""MLP-Mixer logits parity with timm, through both official weight layouts.

Fixtures from `reference/make_mixer_fixture.py` (timm 1.0 as the reference): the same
random weights as timm's state dict and as the official vit_jax Flax tree, and timm's
logits with exact and with tanh GELU.
"""

import json
import os

import numpy as np
import pytest

import smlp_jax
from smlp_jax.convert import WeightsMismatchError, read_weights

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "fixtures")


def _fixture(name):
    return os.path.join(FIXTURES, name)


@pytest.fixture(scope="module")
def reference():
    with np.load(_fixture("mixer_logits.npz")) as f:
        ref = {k: f[k] for k in f.files}
    ref["config"] = json.loads(str(ref["config"]))
    return ref


def _model(reference, *, gelu_approximate, pretrained):
    c = dict(reference["config"])
    model = smlp_jax.create_model(
        "mixer_b16",
        num_classes=c.pop("num_classes"),
        image_size=c.pop("image_size"),
        gelu_approximate=gelu_approximate,
        pretrained=pretrained,
        **c,
    )
    model.eval()
    return model


@pytest.mark.parametrize(
    "source, gelu_approximate, expected",
    [
        ("mixer_timm.npz", False, "logits_exact_gelu"),
        ("mixer_vit_jax.npz", True, "logits_tanh_gelu"),
    ],
)
def test_logits_match_timm(reference, source, gelu_approximate, expected):
    model = _model(reference, gelu_approximate=gelu_approximate, pretrained=_fixture(source))
    logits = np.asarray(model(reference["images"]))
    np.testing.assert_allclose(logits, reference[expected], atol=1e-5, rtol=1e-5)


def test_gelu_choice_matters(reference):
    """The wrong GELU misses by far more than the tolerance, so the test above has teeth."""
    model = _model(reference, gelu_approximate=True, pretrained=_fixture("mixer_timm.npz"))
    logits = np.asarray(model(reference["images"]))
    assert np.abs(logits - reference["logits_exact_gelu"]).max() > 5e-5


def test_both_layouts_give_the_same_parameters(reference):
    timm_model = _model(reference, gelu_approximate=True, pretrained=_fixture("mixer_timm.npz"))
    jax_model = _model(reference, gelu_approximate=True, pretrained=_fixture("mixer_vit_jax.npz"))
    a = np.asarray(timm_model.blocks[1].token_mixing.fc2.kernel[...])
    b = np.asarray(jax_model.blocks[1].token_mixing.fc2.kernel[...])
    np.testing.assert_array_equal(a, b)


def test_missing_key_is_named(reference):
    weights = read_weights(_fixture("mixer_vit_jax.npz"))
    del weights["MixerBlock_1/token_mixing/Dense_0/kernel"]
    with pytest.raises(WeightsMismatchError, match="MixerBlock_1/token_mixing/Dense_0/kernel"):
        _model(reference, gelu_approximate=True, pretrained=weights)


def test_other_grid_is_refused_with_the_option_named(reference):
    c = dict(reference["config"])
    c.pop("image_size")
    with pytest.raises(WeightsMismatchError, match="resample_to_grid=True"):
        smlp_jax.create_model(
            "mixer_b16", image_size=64, pretrained=_fixture("mixer_timm.npz"), **c
        )
