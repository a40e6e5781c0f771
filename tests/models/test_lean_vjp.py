"""`models/lean_vjp.py`: every hand-written VJP equals JAX's autodiff of the plain formula
(values and gradients; float32 and bfloat16; batches of one and more), saves less, and the
models pick the forms `models/backend.py` says."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax._src.ad_checkpoint import saved_residuals

from smlp_jax import create_model
from smlp_jax.models import backend, lean_vjp


def _plain_batch_norm(x, scale, bias, *, epsilon, dtype, act=None):
    """`layers.BatchNorm`'s train-mode formula, differentiated by autodiff."""
    x32 = x.astype(jnp.float32)
    axes = tuple(range(x.ndim - 1))
    mean = jnp.mean(x32, axis=axes)
    var = jnp.mean(jnp.square(x32 - mean), axis=axes)
    inv = jax.lax.rsqrt(var + epsilon) * scale
    y = ((x32 - mean) * inv + bias).astype(dtype)
    return (lean_vjp.gelu_plain(y) if act == "gelu" else y), mean, var


def _plain_layer_norm(x, scale, bias, *, epsilon, dtype):
    x32 = x.astype(jnp.float32)
    mean = jnp.mean(x32, axis=-1, keepdims=True)
    var = jnp.mean(jnp.square(x32 - mean), axis=-1, keepdims=True)
    return ((x32 - mean) * jax.lax.rsqrt(var + epsilon) * scale + bias).astype(dtype)


def _plain_gelu(x, approximate=False):
    return jax.nn.gelu(x, approximate=True) if approximate else lean_vjp.gelu_plain(x)


def _plain_gelu_dense(z, kernel, bias, approximate=False):
    return jnp.dot(_plain_gelu(z, approximate), kernel) + bias


def _vjp(f, args, cotangent):
    """Outputs and input cotangents of `f` at `args` for the first output's `cotangent`."""
    out, pullback = jax.vjp(f, *args)
    first = out[0] if isinstance(out, tuple) else out
    if isinstance(out, tuple):  # statistics outputs get zero cotangents
        cot = (cotangent, *(jnp.zeros_like(o) for o in out[1:]))
    else:
        cot = cotangent
    return first, out, pullback(cot)


def _error(got, want):
    got, want = np.asarray(got, np.float32), np.asarray(want, np.float32)
    return float(np.max(np.abs(got - want)) / (np.max(np.abs(want)) + 1e-12))


def _case(name, dtype, batch):
    """(lean f, plain f, args, cotangent) for one op at one dtype and batch size."""
    k = jax.random.split(jax.random.PRNGKey(hash((name, batch)) % 1000), 5)
    x = (3.0 * jax.random.normal(k[0], (batch, 5, 6, 8)) + 1.5).astype(dtype)
    scale = 1.0 + 0.3 * jax.random.normal(k[1], (8,))
    bias = 0.2 * jax.random.normal(k[2], (8,))
    g = jax.random.normal(k[3], x.shape).astype(dtype)
    if name.startswith("batch_norm"):
        act = "gelu" if name.endswith("gelu") else None
        kw = dict(epsilon=1e-5, dtype=dtype, act=act)
        return (
            lambda *a: lean_vjp.batch_norm_train(*a, **kw),
            lambda *a: _plain_batch_norm(*a, **kw),
            (x, scale, bias),
            g,
        )
    if name == "layer_norm":
        kw = dict(epsilon=1e-6, dtype=dtype)
        return (
            lambda *a: lean_vjp.layer_norm(*a, **kw),
            lambda *a: _plain_layer_norm(*a, **kw),
            (x, scale, bias),
            g,
        )
    approximate = name.endswith("tanh")
    if name.startswith("gelu_dense"):
        kernel = (0.3 * jax.random.normal(k[4], (8, 7))).astype(dtype)
        args = (x, kernel, bias[:7].astype(dtype))
        g = jax.random.normal(k[3], (*x.shape[:-1], 7)).astype(dtype)
        return (
            lambda *a: lean_vjp.gelu_dense(*a, approximate=approximate),
            lambda *a: _plain_gelu_dense(*a, approximate=approximate),
            args,
            g,
        )
    return (
        lambda a: lean_vjp.gelu(a, approximate),
        lambda a: _plain_gelu(a, approximate),
        (x,),
        g,
    )


OPS = [
    "batch_norm",
    "batch_norm_gelu",
    "layer_norm",
    "gelu",
    "gelu_tanh",
    "gelu_dense",
    "gelu_dense_tanh",
]


@pytest.mark.parametrize("batch", [1, 4])
@pytest.mark.parametrize("op", OPS)
def test_float32_equals_autodiff_of_the_plain_formula(op, batch):
    """Same forward values (bit for bit: the same operations), gradients to f32 rounding."""
    lean, plain, args, g = _case(op, jnp.float32, batch)
    y, out, grads = _vjp(lean, args, g)
    y_ref, out_ref, grads_ref = _vjp(plain, args, g)
    np.testing.assert_array_equal(y, y_ref)
    if isinstance(out, tuple):  # BatchNorm's batch mean and variance
        for got, want in zip(out[1:], out_ref[1:]):
            np.testing.assert_array_equal(got, want)
    assert len(grads) == len(grads_ref)
    for got, want in zip(grads, grads_ref):
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-5 * float(jnp.abs(want).max()))


@pytest.mark.parametrize("batch", [1, 4])
@pytest.mark.parametrize("op", OPS)
def test_bfloat16_no_less_accurate_than_autodiff(op, batch):
    """In bf16 both forms round; measured against the f32 autodiff of the same inputs, the
    hand-written gradients are as close as autodiff's (they compute in float32 inside)."""
    lean, plain, args, g = _case(op, jnp.bfloat16, batch)
    y, _, grads = _vjp(lean, args, g)
    y_ref, _, grads_ref = _vjp(plain, args, g)
    np.testing.assert_array_equal(np.asarray(y, np.float32), np.asarray(y_ref, np.float32))
    exact_args = tuple(a.astype(jnp.float32) for a in args)
    _, plain32, _, _ = _case(op, jnp.float32, batch)
    _, _, grads32 = _vjp(plain32, exact_args, g.astype(jnp.float32))
    for got, ref, exact in zip(grads, grads_ref, grads32):
        assert got.dtype == ref.dtype
        assert _error(got, exact) <= 1.5 * _error(ref, exact) + 1e-2


def test_batch_norm_statistics_are_not_differentiated():
    """The mean and variance outputs feed the running averages under stop_gradient; a
    cotangent on them is ignored (the plain form's would flow through them)."""
    lean, _, args, g = _case("batch_norm", jnp.float32, 2)
    _, pullback = jax.vjp(lean, *args)
    zeros = jnp.zeros_like(g)
    dx, dscale, dbias = pullback((zeros, jnp.ones((8,)), jnp.ones((8,))))
    assert float(jnp.abs(dx).max()) == 0.0 == float(jnp.abs(dscale).max())


def _saved_bytes_per_image(name: str, **forms) -> float:
    """Bytes autodiff saves for the backward of a tiny model's loss, per image: the
    difference between batches of 4 and 2 over 2, so that weight-sized residuals (bf16
    copies, slices of kernels) do not count. Abstract: nothing is compiled or allocated."""
    model = nnx.eval_shape(
        lambda: create_model(name, image_size=32, num_classes=10, rngs=nnx.Rngs(0))
    )
    graph, params, rest = nnx.split(model, nnx.Param, ...)

    def loss(params, rest, x):
        return jnp.sum(nnx.merge(graph, params, rest)(x))

    saved = []
    for batch in (2, 4):
        x = jax.ShapeDtypeStruct((batch, 32, 32, 3), jnp.float32)
        with backend.forms(**forms):
            residuals = saved_residuals(loss, params, rest, x)
        saved.append(
            sum(a.size * a.dtype.itemsize for a, why in residuals if "argument" not in why)
        )
    return (saved[1] - saved[0]) / 2


@pytest.mark.parametrize("name", ["smlpnet_t", "mixer_s16"])
def test_models_save_less_with_the_lean_forms(name):
    plain = _saved_bytes_per_image(name, platform="gpu", lean_vjp=False, fuse_sum=False)
    lean = _saved_bytes_per_image(name, platform="gpu")
    assert lean < 0.6 * plain


def test_backend_forms_choose_per_platform():
    with backend.forms(platform="gpu"):
        assert backend.platform() == "gpu" and backend.fuse_sum() and backend.lean_vjp()
        assert backend.gelu_dense() and not backend.axial_batched()
    with backend.forms(platform="cpu"):
        assert not backend.fuse_sum() and not backend.gelu_dense() and backend.lean_vjp()
        with backend.forms(fuse_sum=True, lean_vjp=False):
            assert backend.fuse_sum() and not backend.lean_vjp()
    with pytest.raises(ValueError, match="platform"):
        with backend.forms(platform="cuda"):
            pass


@pytest.mark.parametrize("forms", [dict(fuse_sum=True, axial_batched=True), dict(lean_vjp=False)])
def test_smlpnet_forms_give_the_same_logits_and_gradients(forms):
    """The accelerators' forms (the sMLP fuse as three matmuls, GELU -> Dense as one op),
    the batched height mix and the plain autodiff forms compute what the CPU's default
    forms do (float32, train mode)."""
    model = create_model(
        "smlpnet_t", image_size=64, num_classes=10, depths=(1, 1, 2, 1), rngs=nnx.Rngs(0)
    )
    x = jax.random.normal(jax.random.PRNGKey(1), (4, 64, 64, 3))

    def loss(model):
        # Nonlinear in the logits: a loss linear in them has zero gradient before the head's
        # BatchNorm (constant per channel), and its rounding noise would be compared.
        logits = model(x)
        return jnp.sum(jax.nn.log_softmax(logits)[:, :4] ** 2), logits

    grad_fn = nnx.value_and_grad(loss, has_aux=True)
    (_, logits), grads = nnx.jit(grad_fn)(nnx.clone(model))
    with backend.forms(**forms):  # a new jitted function, traced with these forms
        (_, logits2), grads2 = nnx.jit(grad_fn)(nnx.clone(model))
    np.testing.assert_allclose(logits2, logits, rtol=1e-5, atol=1e-5)
    # Leaf by leaf against the largest gradient: the last block's fc2 bias feeds the head's
    # BatchNorm, so its true gradient is zero and both forms give rounding noise there.
    scale = max(float(jnp.linalg.norm(g)) for g in jax.tree.leaves(grads))
    for got, want in zip(jax.tree.leaves(grads2), jax.tree.leaves(grads)):
        assert float(jnp.linalg.norm(got - want)) < 1e-4 * scale


def test_drop_path_draws_and_scales_as_nnx_dropout_but_saves_its_small_mask():
    from smlp_jax.models.layers import DropPath

    x = jax.random.normal(jax.random.PRNGKey(2), (8, 4, 4, 6))
    ours = DropPath(0.3, rngs=nnx.Rngs(dropout=5))
    theirs = nnx.Dropout(0.3, broadcast_dims=(1, 2, 3), rngs=nnx.Rngs(dropout=5))

    def loss(module, a):
        return jnp.sum(module(a) * a), module(a)

    grad_fn = nnx.grad(loss, argnums=1, has_aux=True)
    for _ in range(2):  # the streams advance alike
        (g, y), (g_ref, y_ref) = grad_fn(ours, x), grad_fn(theirs, x)
        np.testing.assert_array_equal(y, y_ref)
        np.testing.assert_array_equal(g, g_ref)
    assert 0 < int(jnp.sum(jnp.any(y != 0, axis=(1, 2, 3)))) < 8  # some samples dropped

    graphdef, state = nnx.split(ours)
    saved = saved_residuals(lambda st, a: jnp.sum(nnx.merge(graphdef, st)(a) ** 2), state, x)
    full = [a for a, why in saved if "argument" not in why and a.size == x.size]
    assert len(full) == 1  # the output, for the square; no full-size mask, no zeros
