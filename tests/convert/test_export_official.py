"""Weights out, checked by the PyTorch code: each family's exported tiny model (ours,
tests/convert/export_cases.py) was loaded with `load_state_dict(strict=True)` into timm's
MlpMixer / ConvMixer or the reference port of the official code, and its logits stored
(`make fixtures`: reference/write_export_weights.py, reference/make_export_fixture.py).
Here: today's export is byte for byte the file PyTorch loaded, and our logits are its."""

import numpy as np
import pytest
from flax import nnx

from smlp_jax.convert.checkpoint_io import read_weights
from smlp_jax.convert.export import export_state_dict
from tests.convert.export_cases import EXPORTS, LOGITS, build, cases

forward = nnx.jit(lambda model, x: model(x))


@pytest.fixture(scope="module")
def torch_logits():
    with np.load(LOGITS) as f:
        return {k: f[k] for k in f.files}


@pytest.mark.parametrize("family", sorted(cases()))
def test_pytorch_gives_our_logits_from_our_export(family, torch_logits):
    model = build(family)
    loaded_by_torch = read_weights(str(EXPORTS / f"{family}.safetensors"))
    exported = export_state_dict(model)
    assert exported.keys() == loaded_by_torch.keys()
    for key, value in exported.items():
        assert value.dtype == loaded_by_torch[key].dtype and np.array_equal(
            value, loaded_by_torch[key]
        ), key
    images = np.load(EXPORTS / f"{family}_images.npy")
    np.testing.assert_allclose(
        np.asarray(forward(model, images)), torch_logits[family], atol=1e-4, rtol=1e-4
    )
