"""The depthwise convolution (`models/depthwise.py`): its two implementations agree, values
and gradients; the shifted form's hand-written VJP keeps train-step memory small; and the
XLA-CPU workarounds (`models/xla_cpu.py`) do what they are for, and only when switched on."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from smlp_jax.models import depthwise, xla_cpu
from smlp_jax.models.depthwise import shifted_conv2d, xla_conv2d
from smlp_jax.models.layers import DepthwiseConv, DropPath, residual
from smlp_jax.models.xla_cpu import store_grad


@pytest.mark.parametrize("kernel_shape", [(4, 4), (3, 5)])  # even k; rectangular
def test_shifted_form_equals_grouped_convolution(kernel_shape):
    """Forward and both cotangents (input, kernel) against XLA's grouped convolution;
    even kernels pad the extra pixel after, as PyTorch's padding='same' does."""
    keys = jax.random.split(jax.random.PRNGKey(0), 3)
    x = jax.random.normal(keys[0], (2, 9, 8, 5))
    kernel = jax.random.normal(keys[1], (*kernel_shape, 5))
    cotangent = jax.random.normal(keys[2], x.shape)
    y, vjp = jax.vjp(shifted_conv2d, x, kernel)
    y_ref, vjp_ref = jax.vjp(xla_conv2d, x, kernel)
    np.testing.assert_allclose(y, y_ref, atol=1e-5)
    for got, want in zip(vjp(cotangent), vjp_ref(cotangent)):
        np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize("images_per_chunk", [1, 2, 4, 6])
def test_kernel_gradient_in_image_chunks(images_per_chunk):
    """The kernel gradient over chunks of images (a batch of 6 in chunks of 1, 2, 3 when
    4 do not divide it, or all 6) equals XLA's grouped convolution's."""
    keys = jax.random.split(jax.random.PRNGKey(3), 3)
    x = jax.random.normal(keys[0], (6, 7, 5, 3))
    kernel = jax.random.normal(keys[1], (3, 3, 3))
    g = jax.random.normal(keys[2], x.shape)
    _, vjp_ref = jax.vjp(xla_conv2d, x, kernel)
    xp = depthwise.pad_same(x, 3, 3)
    per_image = xp[0].size * xp.dtype.itemsize
    dk = depthwise._kernel_grad(xp, g, 3, 3, chunk_bytes=images_per_chunk * per_image)
    np.testing.assert_allclose(dk.reshape(3, 3, 3), vjp_ref(g)[1], atol=1e-4, rtol=1e-5)
    # Fewer bytes than one image still makes progress, one image at a time.
    dk_small = depthwise._kernel_grad(xp, g, 3, 3, chunk_bytes=1)
    np.testing.assert_allclose(dk_small, dk, atol=1e-4, rtol=1e-5)


def test_shifted_form_keeps_bfloat16():
    x = jnp.ones((1, 6, 6, 4), jnp.bfloat16)
    kernel = jnp.ones((3, 3, 4), jnp.bfloat16)
    y, vjp = jax.vjp(shifted_conv2d, x, kernel)
    dx, dk = vjp(y)
    assert (y.dtype, dx.dtype, dk.dtype) == (jnp.bfloat16,) * 3
    # Interior pixel: 9 taps of 1. The centre tap sees the unshifted (all-ones) input,
    # so its cotangent is the sum of the output cotangent.
    assert float(y[0, 2, 2, 0]) == 9.0
    np.testing.assert_allclose(
        np.asarray(dk[1, 1], np.float32), float(jnp.sum(y[..., 0])), rtol=1e-2
    )


def test_module_implementations_agree():
    layer = DepthwiseConv(6, 5, use_bias=True, impl="shift", rngs=nnx.Rngs(0))
    other = DepthwiseConv(6, 5, use_bias=True, impl="xla", rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.PRNGKey(1), (2, 10, 10, 6))
    np.testing.assert_allclose(layer(x), other(x), atol=1e-5)

    def grads(module):
        return nnx.grad(lambda m: jnp.sum(jnp.sin(m(x))))(module)

    np.testing.assert_allclose(grads(layer).kernel[...], grads(other).kernel[...], atol=1e-4)


def test_auto_uses_the_shifted_form_on_cpu():
    layer = DepthwiseConv(4, 3, rngs=nnx.Rngs(0))
    jaxpr = str(jax.make_jaxpr(layer)(jnp.ones((1, 5, 5, 4))))
    assert "custom_vjp_call" in jaxpr and "conv_general_dilated" not in jaxpr


def test_unknown_implementation_is_refused():
    with pytest.raises(ValueError, match="impl must be"):
        DepthwiseConv(4, 3, impl="fft", rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="impl must be"):
        depthwise.conv2d(jnp.ones((1, 4, 4, 2)), jnp.ones((3, 3, 2)), "fft")


def test_train_step_memory_does_not_grow_with_the_kernel_taps():
    """Regression guard for the bug where XLA stored one shifted input copy per tap (k^2
    activations per layer; a ConvMixer-768/32 train step at batch 8 asked for 42 GB).
    Compiled, never run: XLA's own buffer assignment for a 4-layer k=7 stack."""
    x = jnp.ones((2, 16, 16, 32))
    kernels = [jnp.ones((7, 7, 32)) * 0.01 for _ in range(4)]

    def loss(kernels, x):
        for kernel in kernels:
            x = x + jax.nn.relu(shifted_conv2d(x, kernel))
        return jnp.sum(x**2)

    compiled = jax.jit(jax.grad(loss)).lower(kernels, x).compile()
    activations = compiled.memory_analysis().temp_size_in_bytes / x.nbytes
    # Autodiff of the same shifted sum needs ~49 activations per layer here (~200).
    assert activations < 4 * 8, activations


def _fusions_with_taps(hlo: str, taps: int) -> int:
    """Fused computations of a compiled module's text holding a whole k x k shifted sum
    (at least `taps` slices)."""
    return sum(
        part.count(" slice(") >= taps
        for part in hlo.split("\n\n")
        if part.lstrip("%").startswith("fused_")
    )


def test_depthwise_output_is_computed_once():
    """A ConvMixer-like layer (conv -> ReLU -> normalise, residual): on CPU the conv's
    output is stored, so its 49-tap loop is fused once in the forward and once for the
    input gradient; unstored, XLA CPU fused the loop into every consumer (8 here)."""
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(2, 12, 12, 8)), jnp.float32)
    kernel = jnp.asarray(rng.normal(size=(7, 7, 8)) / 7, jnp.float32)

    def loss(kernel, x):
        y = jax.nn.relu(shifted_conv2d(x, kernel))
        y = (y - y.mean((0, 1, 2))) * jax.lax.rsqrt(y.var((0, 1, 2)) + 1e-5)
        return jnp.sum((x + y) ** 2)

    counts, grads = {}, {}
    for store in (True, False):
        fn = jax.jit(jax.value_and_grad(loss, (0, 1)))
        with xla_cpu.options(depthwise_output=store):  # a switch read when traced
            counts[store] = _fusions_with_taps(fn.lower(kernel, x).compile().as_text(), 49)
            grads[store] = fn(kernel, x)
    assert counts[True] == 2, counts
    assert counts[False] > 2, counts
    for a, b in zip(jax.tree.leaves(grads[True]), jax.tree.leaves(grads[False])):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def _residual_stack(x, weights, barrier):
    """A pre-norm residual stack: the shape of every family's blocks."""
    for w in weights:
        if barrier:
            x = store_grad(x)
        h = (x - x.mean(-1, keepdims=True)) * jax.lax.rsqrt(x.var(-1, keepdims=True) + 1e-5)
        x = x + jnp.tanh(h @ w)
    return (x**2).sum()


def _largest_fusion(hlo: str) -> int:
    """Instructions in the largest fused computation of a compiled module's text."""
    sizes = [0]
    for part in hlo.split("\n\n"):
        if part.lstrip("%").startswith("fused_"):
            sizes.append(part.count("\n"))
    return max(sizes)


def test_store_grad_is_the_identity_and_stores_the_residual_cotangent():
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(4, 9, 16)), jnp.float32)
    weights = [jnp.asarray(rng.normal(size=(16, 16)) / 4, jnp.float32) for _ in range(12)]
    grads, hlo = {}, {}
    for barrier in (False, True):
        fn = jax.jit(jax.value_and_grad(lambda x, w, b=barrier: _residual_stack(x, w, b), (0, 1)))
        _, grads[barrier] = fn(x, weights)
        hlo[barrier] = fn.lower(x, weights).compile().as_text()
    # One conditional per call, none optimised away; without them XLA fuses the chain of
    # cotangent adds into its consumers (the largest fusion grows with the depth).
    assert hlo[True].count(" conditional(") == len(weights)
    assert " conditional(" not in hlo[False]
    fused = {b: _largest_fusion(text) for b, text in hlo.items()}
    assert fused[True] < fused[False] / 2, fused
    # Float32 rounding of sums that XLA fuses differently: an element near zero in an array
    # of values near 100 differs by the array's last bits, so atol is one ulp of its scale.
    for a, b in zip(jax.tree.leaves(grads[True]), jax.tree.leaves(grads[False])):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7 * float(np.abs(b).max()))
    # The forward is untouched, and a non-finite cotangent goes through as it is.
    assert " conditional(" not in jax.jit(store_grad).lower(x).compile().as_text()
    _, vjp = jax.vjp(store_grad, x)
    g = jnp.full_like(x, jnp.nan).at[1].set(2.0)
    (back,) = vjp(g)
    np.testing.assert_array_equal(back, g)


def test_residual_is_x_plus_the_branch_and_stores_its_cotangent_only_when_switched_on():
    """`layers.residual` computes x + drop_path(branch(x)) / divisor; on CPU its backward
    holds one conditional (the stored cotangent), none with `residual_grad=False`."""
    x = jnp.arange(24.0).reshape(2, 3, 4) / 10
    off = DropPath(0.0)
    np.testing.assert_allclose(residual(x, jnp.sin, off, 2.0), x + jnp.sin(x) / 2.0, rtol=1e-6)

    def loss(x):
        return jnp.sum(residual(x, jnp.tanh, off) ** 2)

    grad = jax.jit(jax.grad(loss))
    assert grad.lower(x).compile().as_text().count(" conditional(") == 1
    with xla_cpu.options(residual_grad=False):
        assert not xla_cpu.enabled("residual_grad")
        unstored = jax.jit(jax.grad(loss))
        assert " conditional(" not in unstored.lower(x).compile().as_text()
        np.testing.assert_allclose(unstored(x), grad(x), rtol=1e-6)
    assert xla_cpu.enabled("residual_grad")  # the block's switch is undone on exit
