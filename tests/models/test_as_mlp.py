"""AS-MLP building blocks and whole-model behaviour (shapes, sizes, train mode)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import smlp_jax
from smlp_jax.models.as_mlp import GroupNorm1, axial_shift

TINY = dict(num_classes=5, embed_dim=8, depths=(1, 1, 1), patch_size=2, image_size=32)


def shift_by_loops(x: np.ndarray, shift_size: int, axis: int) -> np.ndarray:
    """The paper's rule, one element at a time: group k reads from `shift//2 - k` on."""
    out = np.zeros_like(x)
    group = math.ceil(x.shape[-1] / shift_size)
    size = x.shape[axis]
    for c in range(x.shape[-1]):
        s = shift_size // 2 - c // group
        for i in range(size):
            if 0 <= i + s < size:
                if axis == 1:
                    out[:, i, :, c] = x[:, i + s, :, c]
                else:
                    out[:, :, i, c] = x[:, :, i + s, c]
    return out


@pytest.mark.parametrize("channels", [4, 7, 10, 12])
@pytest.mark.parametrize("shift_size", [3, 5])
@pytest.mark.parametrize("axis", [1, 2])
def test_axial_shift_matches_elementwise_rule(channels, shift_size, axis):
    x = np.random.default_rng(0).normal(size=(2, 6, 5, channels)).astype(np.float32)
    got = np.asarray(axial_shift(jnp.asarray(x), shift_size, axis))
    np.testing.assert_array_equal(got, shift_by_loops(x, shift_size, axis))


def test_group_norm_one_group_normalises_each_sample_over_all_values():
    x = np.random.default_rng(1).normal(2.0, 3.0, size=(3, 4, 5, 6)).astype(np.float32)
    norm = GroupNorm1(6)
    norm.scale[...] = jnp.arange(1.0, 7.0)
    norm.bias[...] = jnp.full((6,), 0.5)
    flat = x.reshape(3, -1)
    expected = (x - flat.mean(1)[:, None, None, None]) / np.sqrt(
        flat.var(1)[:, None, None, None] + 1e-5
    )
    expected = expected * np.arange(1.0, 7.0) + 0.5
    np.testing.assert_allclose(np.asarray(norm(jnp.asarray(x))), expected, atol=1e-5)


def test_resolution_free_and_clear_error_for_bad_sizes():
    model = smlp_jax.create_model("asmlp_t", **TINY)
    model.eval()
    # Weights do not depend on the grid: a non-square input larger than image_size works.
    assert jax.eval_shape(model, jnp.zeros((1, 32, 48, 3))).shape == (1, 5)
    with pytest.raises(ValueError, match="divisible by 8"):
        jax.eval_shape(model, jnp.zeros((1, 36, 36, 3)))
    with pytest.raises(ValueError, match="divisible by 32"):
        smlp_jax.create_model("asmlp_t", image_size=200)


def test_gradients_are_finite_and_reach_every_weight():
    model = smlp_jax.create_model("asmlp_t", drop_path_rate=0.5, **TINY)
    x = jax.random.normal(jax.random.key(0), (4, 32, 32, 3))

    def loss_fn(m):
        return jnp.mean(jnp.square(m(x)))

    loss, grads = nnx.jit(nnx.value_and_grad(loss_fn))(model)
    leaves = jax.tree.leaves(grads)
    assert np.isfinite(float(loss))
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in leaves)
    assert all(float(jnp.max(jnp.abs(g))) > 0 for g in leaves)  # no weight left unused
