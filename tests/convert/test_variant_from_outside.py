"""A family is declared in one place: a variant registered from this test alone (no edit of
any central module) is built, has its pretrained configuration and its official argument
names (timm's too, where it names a timm twin), and loads weights in the official layout
through its family's converter.

The throwaway `smlpnet_test_tiny` is the sMLPNet of the parity fixture
(`reference/make_smlpnet_fixture.py`); its logits must be the reference's. The registry is
restored after each test, so no other test sees the variant.
"""

import dataclasses
import json
import os

import numpy as np
import pytest
from flax import nnx

import smlp_jax
from smlp_jax.convert.hub import read_hub_config
from smlp_jax.models import PretrainedCfg, pretrained_cfg, register_model, registry
from smlp_jax.models.smlpnet import PRETRAINED_CFG, SMLPNet

FIXTURE = os.path.join(os.path.dirname(__file__), "..", "fixtures", "smlpnet_tiny.npz")
NAME = "smlpnet_test_tiny"
CFG = dataclasses.replace(
    PRETRAINED_CFG,  # sMLPNet's head and stem names, its release and licence
    input_size=(3, 64, 64),
    num_classes=10,
    url="https://example.invalid/smlpnet_test_tiny.npz",
    file_name="smlpnet_test_tiny.npz",
    # A made-up timm twin, and a default its implementation would compute differently.
    timm_architecture="smlpnet_test_tiny_timm",
    timm_model_args=(("alpha", 2),),
)


def official_args(kwargs):
    """A made-up official name for the width: `width` -> `dim`."""
    if "width" in kwargs:
        kwargs["dim"] = kwargs.pop("width")


@pytest.fixture
def registered(monkeypatch):
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    register_model(
        NAME,
        family="smlpnet",
        build=SMLPNet,
        pretrained_cfg=CFG,
        official_args=official_args,
        dim=8,
        depths=(2, 2, 2, 2),
        alpha=3,
        patch_size=4,
    )
    return NAME


@pytest.fixture(scope="module")
def fixture():
    with np.load(FIXTURE, allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    config = json.loads(str(arrays["config"]))
    weights = {k.removeprefix("weights/"): v for k, v in arrays.items() if k.startswith("weights/")}
    return config, weights, arrays


def test_registered_from_outside(registered):
    assert registered in smlp_jax.list_models("smlpnet")
    assert registered in smlp_jax.list_models(pretrained=True)
    assert pretrained_cfg(registered) is CFG
    assert isinstance(CFG, PretrainedCfg)
    model = nnx.eval_shape(lambda: smlp_jax.create_model(registered, num_classes=10))
    assert model.model_spec.image_size == 64  # the pretrained configuration's input size
    assert model.model_spec.kwargs()["dim"] == 8
    # Its official argument names, through the translation registered with it.
    by_official = nnx.eval_shape(lambda: smlp_jax.create_model(registered, width=16))
    by_ours = nnx.eval_shape(lambda: smlp_jax.create_model(registered, dim=16))
    assert by_official.model_spec == by_ours.model_spec


def test_official_weights_load_through_the_family_converter(
    registered, fixture, tmp_path, monkeypatch
):
    config, weights, arrays = fixture
    assert config["dim"] == 8 and config["depths"] == [2, 2, 2, 2]
    assert config["image_size"] == CFG.image_size and config["num_classes"] == CFG.num_classes
    # pretrained=True: the official file under its name in $SMLP_JAX_WEIGHTS.
    np.savez(tmp_path / CFG.file_name, **weights)
    monkeypatch.setenv("SMLP_JAX_WEIGHTS", str(tmp_path))
    for pretrained in (weights, True):
        model = smlp_jax.create_model(registered, pretrained=pretrained, num_classes=10)
        model.eval()
        logits = np.asarray(nnx.jit(lambda m, x: m(x))(model, arrays["input"]))
        np.testing.assert_allclose(logits, arrays["logits"], atol=1e-5, rtol=0)


def test_timm_folders_of_its_timm_name_are_read_as_it(registered, tmp_path):
    """timm's Hub layout names the variant by the timm architecture its pretrained
    configuration declares, and its arguments come through the variant's translation."""
    config = {
        "architecture": "smlpnet_test_tiny_timm",
        "num_classes": 10,
        "model_args": {"width": 16, "global_pool": "avg"},
        "pretrained_cfg": {"input_size": [3, 64, 64]},
    }
    (tmp_path / "config.json").write_text(json.dumps(config))
    found = read_hub_config(str(tmp_path))
    assert (found.name, found.num_classes, found.weights_layout) == (registered, 10, "official")
    assert found.model_args == {"alpha": 2, "dim": 16, "image_size": 64}


def test_a_second_variant_with_the_same_timm_name_is_refused(registered):
    """A timm Hub folder names one architecture; two variants claiming it would make the
    one it builds depend on registration order."""
    with pytest.raises(ValueError, match="already 'smlpnet_test_tiny'"):
        register_model(NAME + "_twin", family="smlpnet", build=SMLPNet, pretrained_cfg=CFG, dim=8)


def test_the_registry_is_restored():
    assert NAME not in smlp_jax.list_models()
