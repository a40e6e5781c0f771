"""DynaMixer: shapes, the official network numbering, grid checks, the mixing operator."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import smlp_jax
from smlp_jax.models.dynamixer import DynaMixerOp

TINY = dict(
    layers=(1, 1),
    transitions=(True, False),
    embed_dims=(8, 8),  # equal widths: fewer distinct shapes, fewer compilations
    num_heads=(2, 2),
    reduced_dims=(2, 2),
    patch_size=4,
)


# One jitted forward: far fewer compilations than running the model op by op.
forward = nnx.jit(lambda model, x: model(x))


def _tiny(**kw):
    kw = {"num_classes": 3, "image_size": 32, **TINY, **kw}
    return smlp_jax.create_model("dynamixer_s", **kw)


@pytest.fixture(scope="module")
def tiny():
    return _tiny(drop_path_rate=0.9)


def test_logits_shape_and_stage_grids(tiny):
    model = nnx.clone(tiny)
    model.eval()
    assert forward(model, jnp.ones((2, 32, 32, 3))).shape == (2, 3)
    # 8x8 grid in stage 0, a 2x2 transition conv, then 4x4.
    assert model.network[0][0].attn.mix_h.generate.kernel.shape == (8 * 2, 8 * 8)
    assert model.network[1].kernel.shape == (2, 2, 8, 8)
    assert model.network[2][0].attn.mix_w.generate.kernel.shape == (4 * 2, 4 * 4)


def test_official_variants_network_numbering():
    """dynamixer_m downsamples after its second stage: network = stage, stage, conv, ..."""
    model = nnx.eval_shape(lambda: smlp_jax.create_model("dynamixer_m"))
    kinds = ["stage" if isinstance(m, nnx.List) else "conv" for m in model.network]
    assert kinds == ["stage", "stage", "conv", "stage", "stage"]
    assert model.network[0][0].attn.mix_h.generate.kernel.shape == (32 * 2, 32 * 32)
    assert model.network[3][0].attn.mix_h.generate.kernel.shape == (16 * 2, 16 * 16)


def test_other_image_size_is_refused(tiny):
    with pytest.raises(ValueError, match="built for 32x32 images"):
        tiny(jnp.ones((1, 64, 64, 3)))
    with pytest.raises(ValueError, match="divisible by 8"):
        _tiny(image_size=36)


def test_mixing_is_a_convex_combination_over_inputs():
    """Each generated matrix is a softmax over input positions, so a constant sequence
    comes out unchanged before the output projection."""
    op = DynaMixerOp(8, 5, 2, 2, jax.random.key(0), dtype=jnp.float32)
    op.out.kernel[...] = jnp.eye(8)
    op.out.bias[...] = jnp.zeros(8)
    token = jax.random.normal(jax.random.key(0), (1, 1, 8))
    x = jnp.tile(token, (3, 5, 1))
    np.testing.assert_allclose(op(x), x, atol=1e-6)


def test_mixing_depends_on_content():
    """Unlike a static token MLP, the mixing matrix changes with the input, so the
    operator is not affine: op(2x) - op(x) != op(x) - op(0)."""
    op = DynaMixerOp(8, 5, 2, 2, jax.random.key(0), dtype=jnp.float32)
    op.generate.kernel[...] = op.generate.kernel[...] * 50
    x = jax.random.normal(jax.random.key(1), (1, 5, 8))
    lhs = op(2 * x) - op(x)
    rhs = op(x) - op(jnp.zeros_like(x))
    assert not np.allclose(lhs, rhs, atol=1e-3)


def test_stochastic_depth_only_in_train_mode(tiny):
    model = nnx.clone(tiny)
    x = jax.random.normal(jax.random.key(2), (4, 32, 32, 3))
    model.head.kernel[...] = jnp.ones_like(model.head.kernel[...])
    assert not np.allclose(forward(model, x), forward(model, x))
    model.eval()
    np.testing.assert_array_equal(forward(model, x), forward(model, x))
