"""MLP-Mixer: shapes, the official initialisation, grid checks, stochastic depth."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import smlp_jax

TINY = dict(hidden_dim=32, num_blocks=2, tokens_mlp_dim=16, channels_mlp_dim=64, patch_size=8)


def _tiny(**kw):
    return smlp_jax.create_model("mixer_s16", num_classes=5, image_size=32, **{**TINY, **kw})


def test_logits_shape_and_dtype():
    model = _tiny()
    x = jnp.ones((3, 32, 32, 3))
    assert model(x).shape == (3, 5)
    assert model(x).dtype == jnp.float32


def test_official_init_zero_head_and_lecun_kernels():
    model = _tiny()
    assert not np.any(np.asarray(model.head.kernel[...]))
    assert not np.any(np.asarray(model.blocks[0].token_mixing.fc1.bias[...]))
    # LeCun normal: std 1/sqrt(fan_in) (truncated), not PyTorch's uniform bound.
    wide = _tiny(hidden_dim=256, channels_mlp_dim=512, num_blocks=1)
    kernel = np.asarray(wide.blocks[0].channel_mixing.fc1.kernel[...])
    assert abs(kernel.std() * np.sqrt(256) - 1.0) < 0.05


def test_token_and_channel_mlp_shapes_follow_the_grid():
    model = _tiny()
    block = model.blocks[0]
    assert block.token_mixing.fc1.kernel.shape == (16, 16)  # 4x4 patches -> 16 dims
    assert block.channel_mixing.fc1.kernel.shape == (32, 64)


def test_other_image_size_is_refused():
    model = _tiny()
    with pytest.raises(ValueError, match="built for 32x32 images"):
        model(jnp.ones((1, 64, 64, 3)))


def test_image_size_must_divide_by_patch():
    with pytest.raises(ValueError, match="divisible by 8"):
        smlp_jax.create_model("mixer_s16", image_size=36, **TINY)


def test_bfloat16_compute_keeps_float32_params():
    model = _tiny(dtype=jnp.bfloat16)
    params = nnx.state(model, nnx.Param)
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(params))
    assert model(jnp.ones((1, 32, 32, 3))).dtype == jnp.float32


def test_stochastic_depth_only_in_train_mode():
    model = _tiny(drop_path_rate=0.5)
    model.head.kernel[...] = jnp.ones_like(model.head.kernel[...])
    x = jax.random.normal(jax.random.key(0), (4, 32, 32, 3))
    a, b = model(x), model(x)  # train mode: new masks each call
    assert not np.allclose(a, b)
    model.eval()
    np.testing.assert_array_equal(model(x), model(x))


def test_gelu_choice_is_an_option():
    exact = _tiny(gelu_approximate=False)
    assert exact.blocks[0].token_mixing.gelu_approximate is False
    assert _tiny().blocks[0].token_mixing.gelu_approximate is True
