"""MLP-Mixer: shapes, the official initialisation, grid checks, stochastic depth."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import smlp_jax

TINY = dict(hidden_dim=32, num_blocks=2, tokens_mlp_dim=16, channels_mlp_dim=64, patch_size=8)

# One jitted forward: far fewer compilations than running the model op by op.
forward = nnx.jit(lambda model, x: model(x))


def _tiny(**kw):
    return smlp_jax.create_model("mixer_s16", num_classes=5, image_size=32, **{**TINY, **kw})


@pytest.fixture(scope="module")
def tiny():
    return _tiny(drop_path_rate=0.5)


def test_logits_shape_and_dtype(tiny):
    model = nnx.clone(tiny)
    model.eval()
    logits = forward(model, jnp.ones((3, 32, 32, 3)))
    assert logits.shape == (3, 5) and logits.dtype == jnp.float32


def test_official_init_zero_head_and_lecun_kernels(tiny):
    assert not np.any(np.asarray(tiny.head.kernel[...]))
    assert not np.any(np.asarray(tiny.blocks[0].token_mixing.fc1.bias[...]))
    # LeCun normal: std 1/sqrt(fan_in) (truncated), not PyTorch's uniform bound.
    kernel = np.asarray(tiny.blocks[0].channel_mixing.fc2.kernel[...])  # fan_in 64
    assert abs(kernel.std() * np.sqrt(64) - 1.0) < 0.1


def test_token_and_channel_mlp_shapes_follow_the_grid(tiny):
    block = tiny.blocks[0]
    assert block.token_mixing.fc1.kernel.shape == (16, 16)  # 4x4 patches -> 16 dims
    assert block.channel_mixing.fc1.kernel.shape == (32, 64)


def test_other_image_size_is_refused(tiny):
    with pytest.raises(ValueError, match="built for 32x32 images"):
        tiny(jnp.ones((1, 64, 64, 3)))


def test_image_size_must_divide_by_patch():
    with pytest.raises(ValueError, match="divisible by 8"):
        smlp_jax.create_model("mixer_s16", image_size=36, **TINY)


def test_bfloat16_compute_keeps_float32_params():
    model = nnx.eval_shape(lambda: _tiny(dtype=jnp.bfloat16))
    params = nnx.state(model, nnx.Param)
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(params))
    logits = nnx.eval_shape(lambda: _tiny(dtype=jnp.bfloat16)(jnp.ones((1, 32, 32, 3))))
    assert logits.dtype == jnp.float32


def test_stochastic_depth_only_in_train_mode(tiny):
    model = nnx.clone(tiny)
    model.head.kernel[...] = jnp.ones_like(model.head.kernel[...])
    x = jax.random.normal(jax.random.key(0), (4, 32, 32, 3))
    assert not np.allclose(forward(model, x), forward(model, x))  # a new mask each call
    model.eval()
    np.testing.assert_array_equal(forward(model, x), forward(model, x))


def test_gelu_choice_is_an_option(tiny):
    assert tiny.blocks[0].token_mixing.gelu_approximate is True  # the official Flax GELU
    exact = nnx.eval_shape(lambda: _tiny(gelu_approximate=False))
    assert exact.blocks[0].token_mixing.gelu_approximate is False
