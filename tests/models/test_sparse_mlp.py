"""Sparse-MLP: block layout, re-represent shapes, aux loss collection, train mode."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import smlp_jax
from smlp_jax.models.mixer import MixerBlock
from smlp_jax.models.moe import total_aux_loss, total_dropped_tokens
from smlp_jax.models.sparse_mlp import SparseBlock

TINY = dict(
    num_classes=5,
    image_size=32,
    patch_size=8,
    hidden_dim=16,
    num_blocks=3,
    tokens_mlp_dim=8,
    channels_mlp_dim=32,
    sparse_blocks=(1, 2),
)


@pytest.fixture(scope="module")
def tiny():
    """One tiny model for the module (building is the slow part on CPU); tests clone it."""
    return smlp_jax.create_model("sparse_mlp_s", drop_path_rate=0.1, **TINY)


def test_block_layout_and_re_represent_shapes(tiny):
    model = tiny
    assert [type(b) for b in model.blocks] == [MixerBlock, SparseBlock, SparseBlock]
    block = model.blocks[1]
    # S = 16 patches, D = 16 channels -> S' = 32, D' = 8 routed tokens of 32 features.
    assert block.represent_in.patches.kernel.shape == (16, 32)
    assert block.represent_in.channels.kernel.shape == (16, 8)
    assert block.token_moe.experts.fc1_kernel.shape == (4, 32, 8)
    assert block.token_moe.k == 1 and block.channel_moe.k == 2
    # Channel experts: half the dense channel-MLP width by default.
    assert block.channel_moe.experts.fc1_kernel.shape == (4, 16, 16)
    y = block.represent_in(jnp.zeros((2, 16, 16)))
    assert y.shape == (2, 8, 32)


def test_forward_collects_aux_loss_and_eval_is_deterministic(tiny):
    model = nnx.clone(tiny)
    x = jax.random.normal(jax.random.key(0), (3, 32, 32, 3))
    forward = nnx.jit(lambda m, x: (m(x), total_aux_loss(m), total_dropped_tokens(m)))
    logits, aux, dropped = forward(model, x)
    assert logits.shape == (3, 5)
    assert float(aux) > 0  # four MoE layers, random routers: never perfectly balanced
    assert int(dropped) >= 0
    model.eval()
    a, _, _ = forward(model, x)
    b, _, _ = forward(model, x)
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_train_step_with_aux_loss_has_finite_gradients_everywhere(tiny):
    model = nnx.clone(tiny)
    x = jax.random.normal(jax.random.key(1), (4, 32, 32, 3))
    labels = jnp.array([0, 1, 2, 3])

    def loss_fn(m):
        logits = m(x)
        task = -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None], 1))
        return task + 0.01 * total_aux_loss(m)

    loss, grads = nnx.jit(nnx.value_and_grad(loss_fn))(model)
    assert np.isfinite(float(loss))
    leaves = jax.tree.leaves(grads)
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in leaves)
    router = grads.blocks[1].channel_moe.router.kernel[...]
    assert float(jnp.abs(router).sum()) > 0


def test_bad_settings_get_clear_errors(tiny):
    with pytest.raises(ValueError, match="outside 0..2"):
        smlp_jax.create_model("sparse_mlp_s", **{**TINY, "sparse_blocks": (3,)})
    with pytest.raises(ValueError, match="divisible by 8"):
        smlp_jax.create_model("sparse_mlp_s", **{**TINY, "image_size": 36})
    with pytest.raises(ValueError, match="built for 32x32"):
        jax.eval_shape(nnx.clone(tiny), jnp.zeros((1, 40, 40, 3)))


def test_pretrained_weights_are_refused_with_a_clear_message(tiny):
    from smlp_jax.convert import WeightsMismatchError

    weights = {"stem.weight": np.zeros((16, 3, 8, 8), np.float32)}
    with pytest.raises(WeightsMismatchError, match="no official weights"):
        smlp_jax.load_pretrained(nnx.clone(tiny), weights)
