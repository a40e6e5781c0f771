"""ConvMixer logits parity with timm: its state dict through our importer.

Fixtures from `reference/make_convmixer_fixture.py` (timm 1.0 `ConvMixer`, random
weights and BatchNorm statistics, eval mode): a GELU model with kernel 5 and a ReLU
model with an even kernel 4 (PyTorch's asymmetric 'same' padding).
"""

import json
import os

import numpy as np
import pytest

import smlp_jax
from smlp_jax.convert import WeightsMismatchError, read_weights

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "fixtures")


@pytest.fixture(scope="module")
def reference():
    with np.load(os.path.join(FIXTURES, "convmixer_logits.npz")) as f:
        return {k: f[k] for k in f.files}


def _model(reference, act, pretrained, image_size=32):
    config = json.loads(str(reference[f"config_{act}"]))
    model = smlp_jax.create_model(
        "convmixer_768_32",
        num_classes=int(reference["num_classes"]),
        image_size=image_size,
        pretrained=pretrained,
        **config,
    )
    model.eval()
    return model


@pytest.mark.parametrize("act", ["gelu", "relu"])
def test_logits_match_timm(reference, act):
    model = _model(reference, act, os.path.join(FIXTURES, f"convmixer_{act}_timm.npz"))
    logits = np.asarray(model(reference["images"]))
    np.testing.assert_allclose(logits, reference[f"logits_{act}"], atol=1e-5, rtol=1e-5)


def test_weights_load_at_any_resolution(reference):
    """Resolution-free: the same weights fit a model built for another image size."""
    model = _model(reference, "gelu", os.path.join(FIXTURES, "convmixer_gelu_timm.npz"), 64)
    assert model(np.ones((1, 48, 48, 3), np.float32)).shape == (1, 10)


def test_wrong_kernel_size_names_the_key(reference):
    weights = read_weights(os.path.join(FIXTURES, "convmixer_relu_timm.npz"))
    with pytest.raises(WeightsMismatchError, match=r"blocks\.0\.0\.fn\.0\.weight"):
        _model(reference, "gelu", weights)
