"""RaftMLP building blocks and whole-model behaviour (resampling, sizes, train mode)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import smlp_jax
from smlp_jax.models.raft_mlp import RaftTokenMixing, bicubic_matrix

TINY = dict(
    num_classes=5,
    dims=(8, 12),
    depths=(1, 1),
    patch_sizes=(4, 2),
    embedding_kernels=((4, 8), (2,)),
    image_size=32,
)


def test_bicubic_matrix_is_identity_at_same_size_and_preserves_constants():
    np.testing.assert_allclose(bicubic_matrix(7, 7), np.eye(7), atol=1e-7)
    for n_in, n_out in [(4, 9), (10, 3), (5, 6)]:
        # Cubic convolution weights sum to one, so a constant signal stays constant.
        np.testing.assert_allclose(bicubic_matrix(n_in, n_out).sum(axis=1), 1.0, atol=1e-6)


def test_bicubic_matrix_doubling_interpolates_between_samples():
    m = bicubic_matrix(4, 8).astype(np.float64)
    # Output 2i + 1 sits at source position i + 0.25: taps (i-1, i, i+1, i+2) with the
    # A = -0.75 cubic weights at t = 0.25, borders clamped.
    a, t = -0.75, 0.25
    near = lambda s: ((a + 2) * s - (a + 3)) * s * s + 1  # noqa: E731
    far = lambda s: ((a * s - 5 * a) * s + 8 * a) * s - 4 * a  # noqa: E731
    np.testing.assert_allclose(m[3, :4], [far(1 + t), near(t), near(1 - t), far(2 - t)], atol=1e-6)


def test_token_mixing_mixes_within_rafts_along_its_axis_only():
    # Channel c = j (C/r) + o belongs to raft o: a vertical mixer must not move signal
    # between rafts or between columns.
    mixing = RaftTokenMixing(4, 6, 2, 2, axis=1, rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(1), (1, 4, 3, 6))

    def raft_column_output(x):
        return mixing(x)[0, :, 1, 0]  # column 1, raft 0, member 0

    grad = np.asarray(jax.grad(lambda x: raft_column_output(x).sum())(x))[0]
    touched = np.argwhere(np.abs(grad) > 0)
    assert set(touched[:, 1]) == {1}  # only column 1
    # LayerNorm couples all channels of a token; the MLP then only reads raft 0 (c = 0, 3).
    mixing.norm.scale[...] = jnp.zeros(6).at[jnp.array([0, 3])].set(1.0)
    mixing.norm.bias[...] = jnp.zeros(6)
    grad = np.asarray(jax.grad(lambda x: raft_column_output(x).sum())(x))[0]
    assert np.abs(grad[:, 1, :]).sum() > 0


def test_other_sizes_need_the_switch_and_then_work():
    model = smlp_jax.create_model("raftmlp_s", **TINY)
    model.eval()
    with pytest.raises(ValueError, match="resize_to_trained_grid=True"):
        jax.eval_shape(model, jnp.zeros((1, 40, 40, 3)))
    resized = smlp_jax.create_model("raftmlp_s", resize_to_trained_grid=True, **TINY)
    resized.eval()
    assert jax.eval_shape(resized, jnp.zeros((1, 36, 44, 3))).shape == (1, 5)
    with pytest.raises(ValueError, match="divisible by 32"):
        smlp_jax.create_model("raftmlp_s", image_size=200)
    with pytest.raises(ValueError, match="raft_size"):
        smlp_jax.create_model("raftmlp_s", **{**TINY, "dims": (8, 9)})


def test_train_step_gradients_are_finite_and_drop_path_is_active():
    model = smlp_jax.create_model("raftmlp_s", **{**TINY, "drop_path_rate": 0.5})
    x = jax.random.normal(jax.random.key(0), (4, 32, 32, 3))

    def loss_fn(m):
        return jnp.mean(jnp.square(m(x)))

    loss, grads = nnx.jit(nnx.value_and_grad(loss_fn))(model)
    assert np.isfinite(float(loss))
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads))
    forward = nnx.jit(lambda m, x: m(x))
    assert not np.allclose(np.asarray(forward(model, x)), np.asarray(forward(model, x)))
