"""Hire-MLP pieces and whole-model behaviour (region rule, shift schedule, any size)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import smlp_jax
from smlp_jax.models.hire_mlp import RegionMixing

TINY = dict(
    num_classes=5,
    layers=(2, 1),
    embed_dims=(16, 24),
    mlp_ratios=(2, 2),
    pixel=(4, 3),
    step_stride=(2, 1),
    step_dilation=(2, 1),
    image_size=32,
)


def region_mixing_by_loops(x, pixel, axis, w1, scale, shift, w2, b2):
    """The paper's inner-region rule, one region at a time, in numpy.

    Region r along `axis` holds positions r*pixel .. r*pixel + pixel - 1 (taken modulo
    the size, i.e. circularly extended); channel c of its i-th position is input
    c*pixel + i of the MLP; only outputs for positions inside the grid are kept.
    """
    if axis == 2:
        x = x.transpose(0, 2, 1, 3)
    b, n, m, c = x.shape
    out = np.zeros_like(x)
    for r in range(-(-n // pixel)):
        rows = [(r * pixel + i) % n for i in range(pixel)]
        stacked = np.stack([x[:, row] for row in rows], axis=-1).reshape(b, m, c * pixel)
        hidden = np.maximum((stacked @ w1) * scale + shift, 0)
        y = (hidden @ w2 + b2).reshape(b, m, c, pixel)
        for i in range(pixel):
            if r * pixel + i < n:
                out[:, r * pixel + i] = y[..., i]
    return out.transpose(0, 2, 1, 3) if axis == 2 else out


@pytest.mark.parametrize("size,pixel", [(6, 3), (7, 3), (5, 2), (9, 4)])
@pytest.mark.parametrize("axis", [1, 2])
def test_region_mixing_matches_region_loops(size, pixel, axis):
    rng = np.random.default_rng(0)
    c = 8
    x = rng.normal(size=(2, size, size + 1, c)).astype(np.float32)
    layer = RegionMixing(c, pixel, axis, rngs=nnx.Rngs(0))
    mean = rng.normal(size=(c // 2,)).astype(np.float32)
    var = rng.uniform(0.5, 2.0, size=(c // 2,)).astype(np.float32)
    layer.norm.mean[...] = jnp.asarray(mean)
    layer.norm.var[...] = jnp.asarray(var)
    layer.eval()
    scale = 1 / np.sqrt(var + 1e-5)
    expected = region_mixing_by_loops(
        x,
        pixel,
        axis,
        np.asarray(layer.reduce.kernel[...]),
        scale,
        -mean * scale,
        np.asarray(layer.expand.kernel[...]),
        np.asarray(layer.expand.bias[...]),
    )
    np.testing.assert_allclose(np.asarray(layer(jnp.asarray(x))), expected, atol=1e-5)


def test_cross_region_steps_follow_the_official_schedule():
    model = nnx.eval_shape(lambda: smlp_jax.create_model("hiremlp_t"))
    steps = [[block.attn.step for block in blocks] for blocks in model.stages]
    # step = (j % step_stride) * step_dilation with strides (2,2,3,2), dilations (2,2,1,1)
    assert steps == [[0, 2], [0, 2], [0, 1, 2, 0], [0, 1]]


def test_any_input_size_and_a_clear_error_for_tiny_ones():
    model = smlp_jax.create_model("hiremlp_t", **TINY)
    model.eval()
    for shape in [(1, 32, 32, 3), (1, 45, 61, 3)]:  # grids 8/4 and 11x15/6x8
        assert jax.eval_shape(model, jnp.zeros(shape)).shape == (1, 5)
    with pytest.raises(ValueError, match="at least 3x3"):
        jax.eval_shape(model, jnp.zeros((1, 2, 32, 3)))


def test_train_step_updates_batch_statistics_and_gradients_are_finite():
    model = smlp_jax.create_model("hiremlp_t", drop_path_rate=0.2, **TINY)
    x = jax.random.normal(jax.random.key(0), (4, 32, 32, 3))
    before = np.asarray(model.norm.mean[...])

    def loss_fn(m):
        return jnp.mean(jnp.square(m(x)))

    loss, grads = nnx.jit(nnx.value_and_grad(loss_fn))(model)
    assert np.isfinite(float(loss))
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads))
    assert not np.allclose(np.asarray(model.norm.mean[...]), before)
