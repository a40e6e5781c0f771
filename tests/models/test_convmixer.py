"""ConvMixer: shapes at several resolutions, the block's structure, input checks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import smlp_jax

TINY = dict(dim=16, depth=2, kernel_size=3, patch_size=4)


# One jitted forward: far fewer compilations than running the model op by op.
forward = nnx.jit(lambda model, x: model(x))
features = nnx.jit(lambda model, x: model.forward_features(x))


def _tiny(**kw):
    kw = {"num_classes": 7, "image_size": 32, **TINY, **kw}
    return smlp_jax.create_model("convmixer_256_8", **kw)


def test_any_resolution_divisible_by_the_patch():
    model = _tiny()
    model.eval()
    for side in (16, 40):
        assert forward(model, jnp.ones((2, side, side, 3))).shape == (2, 7)
    assert features(model, jnp.ones((1, 40, 24, 3))).shape == (1, 10, 6, 16)


def test_side_not_divisible_by_patch_is_refused():
    with pytest.raises(ValueError, match="divisible by 4"):
        _tiny()(jnp.ones((1, 30, 32, 3)))
    with pytest.raises(ValueError, match="divisible by 4"):
        _tiny(image_size=30)


def test_unknown_activation_is_refused():
    with pytest.raises(ValueError, match="activation takes one of 'gelu', 'relu'"):
        _tiny(activation="swish")


def test_depthwise_mixing_is_local():
    """With kernel 3, one block moves information at most one patch per step: a change
    in one corner patch leaves the far corner of the feature map untouched."""
    model = _tiny(depth=1)
    model.eval()
    x = jax.random.normal(jax.random.key(0), (1, 32, 32, 3))
    y = x.at[:, :4, :4].add(1.0)
    fx, fy = features(model, x), features(model, y)
    assert not np.allclose(fx[:, 0, 0], fy[:, 0, 0])
    np.testing.assert_array_equal(fx[:, 2:, 2:], fy[:, 2:, 2:])


def test_registered_variants_keep_the_official_settings():
    entry = smlp_jax.models.get_entry("convmixer_768_32")
    assert entry.defaults["activation"] == "relu" and entry.defaults["kernel_size"] == 7
    cifar = smlp_jax.models.get_entry("convmixer_256_8").defaults
    assert (cifar["kernel_size"], cifar["patch_size"]) == (5, 2)


def test_train_mode_updates_batch_statistics():
    model = _tiny()
    before = np.asarray(model.blocks[0].pointwise_norm.mean[...])
    forward(model, jax.random.normal(jax.random.key(1), (4, 32, 32, 3)))
    assert not np.allclose(before, model.blocks[0].pointwise_norm.mean[...])
