"""Weight resampling for fine-tuning at a new resolution (`resample_to_grid=True`)."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import smlp_jax
from smlp_jax.convert import WeightsMismatchError, converter
from smlp_jax.convert.resample import (
    axial_bias,
    axial_kernel,
    dynamixer_generate_kernel,
)

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "fixtures")
MIXER_WEIGHTS = os.path.join(FIXTURES, "mixer_timm.npz")

forward = nnx.jit(lambda model, x: model(x))


def _mixer_config():
    with np.load(os.path.join(FIXTURES, "mixer_logits.npz")) as f:
        config = json.loads(str(f["config"]))
    config.pop("num_classes")
    return config


def _mixer(image_size, **kw):
    config = {**_mixer_config(), "image_size": image_size, **kw}
    model = smlp_jax.create_model("mixer_b16", num_classes=10, pretrained=MIXER_WEIGHTS, **config)
    model.eval()
    return model


@pytest.fixture(scope="module")
def small_mixer():
    return _mixer(_mixer_config()["image_size"])


def test_mixer_block_diagonal_init_processes_each_sub_grid_like_the_original(small_mixer):
    """At 2x the grid, the token MLP sees each 2x2 quadrant as one original image, so the
    logits of a 2x2 mosaic are the mean of the original model's logits on its tiles."""
    config = _mixer_config()
    big = _mixer(
        2 * config["image_size"],
        tokens_mlp_dim=4 * config["tokens_mlp_dim"],
        resample_to_grid=True,
    )
    tiles = jax.random.normal(jax.random.key(1), (4, 32, 32, 3))
    mosaic = jnp.concatenate(
        [jnp.concatenate([tiles[0], tiles[1]], 1), jnp.concatenate([tiles[2], tiles[3]], 1)], 0
    )
    expected = jnp.mean(forward(small_mixer, tiles), axis=0)
    np.testing.assert_allclose(forward(big, mosaic[None])[0], expected, atol=2e-5, rtol=2e-5)


def test_mixer_without_the_option_is_refused_and_told_about_it():
    with pytest.raises(WeightsMismatchError, match="resample_to_grid=True"):
        _mixer(64, tokens_mlp_dim=96)


def test_mixer_names_the_token_width_it_needs():
    with pytest.raises(WeightsMismatchError, match="tokens_mlp_dim=96"):
        _mixer(64, resample_to_grid=True)


def test_mixer_needs_a_whole_multiple_of_the_grid():
    with pytest.raises(WeightsMismatchError, match="whole multiple"):
        _mixer(48, tokens_mlp_dim=54, resample_to_grid=True)


def test_the_option_is_a_no_op_on_the_same_grid(small_mixer):
    same = _mixer(32, resample_to_grid=True)
    for a, b in zip(
        nnx.to_flat_state(nnx.state(same, nnx.Param)),
        nnx.to_flat_state(nnx.state(small_mixer, nnx.Param)),
    ):
        np.testing.assert_array_equal(np.asarray(a[1][...]), np.asarray(b[1][...]))


def test_axial_interpolation_keeps_constant_mixing():
    """A constant n x n mixing matrix (a mean over the axis, times n) stays a mean."""
    kernel = np.full((8, 8), 1.0 / 8, np.float32)
    np.testing.assert_allclose(axial_kernel(kernel, (16, 16)), np.full((16, 16), 1 / 16), 1e-6)
    np.testing.assert_allclose(axial_bias(np.full(8, 0.5, np.float32), (12,)), 0.5, 1e-6)


def test_axial_interpolation_same_size_is_identity():
    kernel = np.random.default_rng(0).normal(size=(7, 7)).astype(np.float32)
    np.testing.assert_allclose(axial_kernel(kernel, (7, 7)), kernel, atol=1e-6)


def test_dynamixer_generate_kernel_keeps_reduced_dim():
    w = np.random.default_rng(0).normal(size=(4 * 2, 4 * 4)).astype(np.float32)
    out = dynamixer_generate_kernel(w, (8 * 2, 8 * 8))
    assert out.shape == (16, 64)
    with pytest.raises(WeightsMismatchError, match="reduced_dim=2"):
        dynamixer_generate_kernel(w, (8 * 3, 8 * 8))


def _official_weights(model, family):
    """`model`'s weights in its family's official layout (the inverse of the importer)."""
    rules = converter(family).official_rules(model)
    return {k: layout.to_official(np.asarray(v[...])) for k, (v, layout) in rules.items()}


def test_smlpnet_axial_weights_are_interpolated():
    tiny = dict(dim=8, depths=(1, 1, 1, 1), num_classes=4)
    source = smlp_jax.create_model("smlpnet_t", image_size=32, **tiny)
    weights = _official_weights(source, "smlpnet")
    with pytest.raises(WeightsMismatchError, match="resample_to_grid=True"):
        smlp_jax.create_model("smlpnet_t", image_size=64, pretrained=weights, **tiny)
    model = smlp_jax.create_model(
        "smlpnet_t", image_size=64, pretrained=weights, resample_to_grid=True, **tiny
    )
    old = np.asarray(source.stages[0][0].token_mixing.smlp.mix_w.kernel[...])
    new = np.asarray(model.stages[0][0].token_mixing.smlp.mix_w.kernel[...])
    assert new.shape == (16, 16)
    np.testing.assert_allclose(new, axial_kernel(old, (16, 16)), atol=1e-6)
    # Everything not tied to the grid is copied unchanged.
    np.testing.assert_array_equal(
        np.asarray(model.stages[1][0].channel_mixing.mlp.fc1.kernel[...]),
        np.asarray(source.stages[1][0].channel_mixing.mlp.fc1.kernel[...]),
    )
