"""sMLPNet behaviour: train vs eval mode, drop path, dtype, input checks, variants."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import smlp_jax
from smlp_jax.models.registry import UnknownModelError

TINY = dict(num_classes=10, image_size=32, dim=8, depths=(1, 1, 1, 1))
forward = nnx.jit(lambda model, x: model(x))


def images(seed=0, n=4, size=32):
    return jax.random.normal(jax.random.key(seed), (n, size, size, 3))


def batch_stats(model):
    return [np.asarray(x) for x in jax.tree.leaves(nnx.state(model, nnx.BatchStat))]


def test_batch_statistics_move_only_in_train_mode():
    model = smlp_jax.create_model("smlpnet_t", **TINY)
    start = batch_stats(model)
    model.eval()
    forward(model, images())
    assert all(np.array_equal(a, b) for a, b in zip(start, batch_stats(model)))
    model.train()
    forward(model, images())
    assert all(not np.array_equal(a, b) for a, b in zip(start, batch_stats(model)))


def test_drop_path_rates_follow_the_linear_rule():
    model = smlp_jax.create_model("smlpnet_t", **{**TINY, "drop_path_rate": 0.3})
    rates = [block.drop_path.rate for blocks in model.stages for block in blocks]
    np.testing.assert_allclose(rates, [0.0, 0.1, 0.2, 0.3])


def test_drop_path_only_in_train_mode_and_reproducible_from_the_seed():
    def outputs(seed, train):
        model = smlp_jax.create_model("smlpnet_t", rngs=seed, **{**TINY, "drop_path_rate": 0.9})
        model.eval()  # running statistics, so only drop path can differ
        if train:
            model.set_attributes(deterministic=False, raise_if_not_found=False)
        return np.asarray(forward(model, images()))

    def without_drop_path(seed):
        model = smlp_jax.create_model("smlpnet_t", rngs=seed, **TINY)
        model.eval()
        return np.asarray(forward(model, images()))

    # Same parameters (same seed) with and without drop path: eval ignores it.
    np.testing.assert_array_equal(outputs(0, train=False), without_drop_path(0))
    assert not np.allclose(outputs(0, train=True), without_drop_path(0))
    # Same seed -> same masks; another seed -> other parameters and masks.
    np.testing.assert_array_equal(outputs(0, train=True), outputs(0, train=True))
    assert not np.allclose(outputs(0, train=True), outputs(5, train=True))


def test_bfloat16_computation_with_float32_parameters():
    f32 = smlp_jax.create_model("smlpnet_t", rngs=3, **TINY)
    bf16 = smlp_jax.create_model("smlpnet_t", rngs=3, dtype=jnp.bfloat16, **TINY)
    params = jax.tree.leaves(nnx.state(bf16, nnx.Param))
    assert all(p.dtype == jnp.float32 for p in params)
    f32.eval()
    bf16.eval()
    a = np.asarray(forward(f32, images()))
    b = np.asarray(forward(bf16, images()))
    assert b.dtype == np.float32  # logits come back in float32
    # bf16 has an 8-bit mantissa: agreement to a few percent of the logit scale.
    assert np.max(np.abs(a - b)) < 0.05 * np.max(np.abs(a)) + 0.05


def test_wrong_image_size_is_one_clear_error():
    model = smlp_jax.create_model("smlpnet_t", **TINY)
    with pytest.raises(ValueError, match=r"built for 32x32 images.*got 64x64.*image_size=64"):
        model(images(size=64))
    with pytest.raises(ValueError, match="3-channel"):
        model(jnp.zeros((1, 32, 32, 1)))


def test_image_size_must_divide_through_the_stages():
    with pytest.raises(ValueError, match="divisible by 32"):
        smlp_jax.create_model("smlpnet_t", **{**TINY, "image_size": 48})


def test_unknown_model_and_hyperparameter():
    with pytest.raises(UnknownModelError, match="Did you mean smlpnet_t"):
        smlp_jax.create_model("smlpnet_tt")
    with pytest.raises(TypeError, match="unknown hyperparameter.*dimm"):
        smlp_jax.create_model("smlpnet_t", dimm=8)


def test_overrides_win_over_variant_values():
    model = nnx.eval_shape(lambda: smlp_jax.create_model("smlpnet_s", dim=16, drop_path_rate=0.0))
    assert model.stems[0].kernel.shape == (4, 4, 3, 16)
    assert len(model.stages[2]) == 24  # depths from the variant
    assert all(b.drop_path.rate == 0.0 for blocks in model.stages for b in blocks)
