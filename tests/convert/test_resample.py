"""Weight resampling for fine-tuning at a new resolution (`resample_to_grid=True`)."""

import json
import os
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import smlp_jax
from smlp_jax.convert import WeightsMismatchError, converter, load_pretrained
from smlp_jax.convert.dynamixer import dynamixer_generate_kernel
from smlp_jax.convert.export import variable_rules
from smlp_jax.convert.resample import axial_bias, axial_kernel, grid_resamplers, interpolate_tokens
from smlp_jax.models.registry import get_entry

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
    with pytest.raises(WeightsMismatchError, match="tokens_mlp_dim=96") as raised:
        _mixer(64, resample_to_grid=True)
    # One line naming our path, the official key it came from and both shapes (ours).
    assert "\n" not in str(raised.value)
    assert (
        "cannot resample 'blocks/0/token_mixing/fc1/kernel' ('blocks.0.mlp_tokens.fc1.weight') "
        "from (16, 24) to (64, 24): "
    ) in str(raised.value)


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


def test_token_interpolation_keeps_a_mean_over_the_grid():
    """A token MLP input layer that averages the 4x4 grid still averages the 8x8 one."""
    kernel = np.full((16, 3), 1.0 / 16, np.float32)
    out = interpolate_tokens(kernel, (64, 3), grid=(0,), summed=(0,))
    np.testing.assert_allclose(out, np.full((64, 3), 1 / 64), rtol=1e-6)


def test_token_interpolation_of_a_grid_is_axial_along_rows_and_columns():
    """A flattened grid axis is interpolated along its columns, then its rows: sMLPNet's
    axial interpolation applied along W and along H."""
    w = np.random.default_rng(0).normal(size=(4 * 4,)).astype(np.float32)
    out = interpolate_tokens(w, (8 * 8,), grid=(0,)).reshape(8, 8)
    along_w = np.stack([axial_bias(row, (8,)) for row in w.reshape(4, 4)])
    both = np.stack([axial_bias(column, (8,)) for column in along_w.T]).T
    np.testing.assert_allclose(out, both, atol=1e-6)


def test_token_interpolation_line_and_grid_axes_together():
    w = np.random.default_rng(1).normal(size=(2, 32, 16)).astype(np.float32)  # (E, 2S, S)
    out = interpolate_tokens(w, (2, 128, 64), line=(1,), grid=(2,), summed=(1,))
    assert out.shape == (2, 128, 64) and out.dtype == np.float32
    # The same shape is the array itself, bit for bit.
    same = interpolate_tokens(w, w.shape, line=(1,), grid=(2,), summed=(1,))
    np.testing.assert_array_equal(same, w)


def test_token_interpolation_refuses_an_axis_not_tied_to_the_grid():
    w = np.zeros((16, 8), np.float32)
    with pytest.raises(WeightsMismatchError, match=r"axis 1 is not tied to the grid \(8 in"):
        interpolate_tokens(w, (64, 16), grid=(0,), summed=(0,))
    with pytest.raises(WeightsMismatchError, match="do not form a square grid"):
        interpolate_tokens(w, (60, 8), grid=(0,))


def _abstract(name, image_size):
    return nnx.eval_shape(
        lambda: smlp_jax.create_model(name, num_classes=5, image_size=image_size, rngs=0)
    )


FAMILIES = sorted({get_entry(name).family: name for name in smlp_jax.list_models()}.items())


@pytest.mark.parametrize("family,name", FAMILIES)
def test_every_family_declares_its_grid_tied_arrays(family, name):
    """Built at 224 and 448 (abstractly): every array whose shape changes is named by the
    family's GRID_RESAMPLERS, every pattern names some array, and a family tied to the
    grid without a resampler says so (GRID_RESAMPLING_UNAVAILABLE)."""
    module = converter(family)
    if getattr(module, "GRID_RESAMPLING_UNAVAILABLE", None):
        with pytest.raises(WeightsMismatchError, match="cannot resample to another grid") as e:
            grid_resamplers(module, name)
        assert "\n" not in str(e.value)
        return
    small, large = (
        {path: tuple(v.shape) for path, (v, _) in variable_rules(_abstract(name, size)).items()}
        for size in (224, 448)
    )
    assert small.keys() == large.keys()
    patterns = [re.compile(p) for p, _ in grid_resamplers(module, name)]
    tied = sorted(p for p in small if small[p] != large[p])
    unnamed = [p for p in tied if not any(rx.search(p) for rx in patterns)]
    assert not unnamed, unnamed
    unused = [rx.pattern for rx in patterns if not any(rx.search(p) for p in small)]
    assert not unused, unused
    if family in ("convmixer", "as_mlp", "hire_mlp"):
        assert not tied and not patterns  # resolution-free


@pytest.mark.parametrize("name", ["vip_s7", "raftmlp_s"])
def test_tied_families_without_a_resampler_refuse_in_one_line(name):
    model = _abstract(name, 224)
    with pytest.raises(WeightsMismatchError, match=f"{name}: cannot resample to another grid"):
        load_pretrained(model, {"x": np.zeros(1)}, model_name=name, resample_to_grid=True)
