"""Vision Permutator pieces and whole-model behaviour (grid rule, train mode)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import smlp_jax
from smlp_jax.models.permutator import SegmentAxisLinear

TINY = dict(
    num_classes=5,
    layers=(1, 1),
    embed_dims=(16, 24),
    transitions=(True, False),
    segment_dim=(8, 4),
    mlp_ratios=3.0,
    patch_size=4,
    image_size=32,
)


def permute_dense_reference(x, weight, bias, segments, axis):
    """The paper's permute -> Linear(C, C) -> permute back, in numpy (torch layout weight)."""
    b, h, w, c = x.shape
    s = c // segments
    x = x.reshape(b, h, w, segments, s)
    if axis == 1:
        t = x.transpose(0, 3, 2, 1, 4).reshape(b, segments, w, h * s)
        t = t @ weight.T + bias
        return t.reshape(b, segments, w, h, s).transpose(0, 3, 2, 1, 4).reshape(b, h, w, c)
    t = x.transpose(0, 1, 3, 2, 4).reshape(b, h, segments, w * s)
    t = t @ weight.T + bias
    return t.reshape(b, h, segments, w, s).transpose(0, 1, 3, 2, 4).reshape(b, h, w, c)


@pytest.mark.parametrize("axis", [1, 2])
def test_segment_axis_linear_is_the_permuted_dense(axis):
    rng = np.random.default_rng(0)
    segments, c = 4, 12  # grid side must equal segments: 4 x 3 = 12 inputs
    x = rng.normal(size=(2, 4, 4, c)).astype(np.float32)
    layer = SegmentAxisLinear(c, segments, axis, True, dtype=jnp.float32, rngs=nnx.Rngs(0))
    weight = rng.normal(size=(c, c)).astype(np.float32)  # torch (out, in)
    bias = rng.normal(size=(c,)).astype(np.float32)
    layer.dense.kernel[...] = jnp.asarray(weight.T)
    layer.dense.bias[...] = jnp.asarray(bias)
    expected = permute_dense_reference(x, weight, bias, segments, axis)
    np.testing.assert_allclose(np.asarray(layer(jnp.asarray(x))), expected, atol=1e-5)


def test_grid_must_equal_segment_dim():
    with pytest.raises(ValueError, match="Use image_size=224"):
        smlp_jax.create_model("vip_s7", image_size=256)
    with pytest.raises(ValueError, match="Use image_size=32"):
        smlp_jax.create_model("vip_s7", **{**TINY, "image_size": 48})
    model = smlp_jax.create_model("vip_s7", **TINY)
    with pytest.raises(ValueError, match="built for 32x32"):
        jax.eval_shape(model, jnp.zeros((1, 64, 64, 3)))


def test_official_init_linears_truncated_normal_convs_pytorch_default():
    model = smlp_jax.create_model("vip_s7", **TINY)
    fc1 = model.stages[0][0].mlp.fc1
    assert 0.015 < float(jnp.std(fc1.kernel[...])) < 0.025
    assert not np.any(np.asarray(fc1.bias[...]))
    bound = 1 / np.sqrt(3 * 4 * 4)  # the patch-embedding conv keeps PyTorch's default
    assert 0.5 * bound < float(jnp.max(jnp.abs(model.patch_embed.kernel[...]))) <= bound


def test_train_step_gradients_are_finite():
    model = smlp_jax.create_model("vip_s7", drop_path_rate=0.3, **TINY)
    x = jax.random.normal(jax.random.key(0), (4, 32, 32, 3))

    def loss_fn(m):
        return jnp.mean(jnp.square(m(x)))

    loss, grads = nnx.jit(nnx.value_and_grad(loss_fn))(model)
    assert np.isfinite(float(loss))
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads))
    # Every weight gets a gradient (none is left out of the computation).
    assert all(float(jnp.max(jnp.abs(g))) > 0 for g in jax.tree.leaves(grads))
