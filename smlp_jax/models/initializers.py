"""The initialisers every family uses, drawn in a handful of compilations.

What is drawn is exactly `jax.random`'s: PyTorch's default `U(-1/sqrt(fan_in),
1/sqrt(fan_in))` (`torch_uniform_init`), timm's `trunc_normal_(std)`
(`trunc_normal_init`) and Flax's LeCun normal (`lecun_normal_init`, the official Mixer's),
the same values bit for bit as calling `jax.random.uniform(key, shape, ...)` etc.

Why not call `jax.random` directly: outside `jit`, every new shape is a new XLA program
(the threefry hash plus the transform, ~0.17 s to compile on a 2-core CPU), so a model with
40 distinct parameter shapes spent seconds compiling random-number generators
(`create_model("smlpnet_t")` 8.7 s, 6.6 s of it compiling). Compiling the whole
initialisation as one program is worse (32 s: one very large program).

The draw is made at a bucketed flat length and cut: with the partitionable threefry that
JAX uses by default (`jax_threefry_partitionable`), element i of a draw depends only on
the key and its flat row-major index i, so `draw(key, (N,))[:n].reshape(shape)` equals
`draw(key, shape)` for any N >= n = prod(shape). Lengths are rounded up to one of a short
list (`bucket`), so a model needs a few compilations, shared by every model in the process.
Under a trace (`jit`, `eval_shape`) there is nothing to compile per shape: the draw is
direct.

A model about to receive every parameter from a checkpoint needs no draw at all:
`draws_skipped()` builds it with NaN parameters of the right shapes while the rng streams
advance exactly as when drawing (tools/trained.py: a trained sMLPNet-T's build for
`predict`, benchmarks/README.md "The first seconds").
"""

from __future__ import annotations

import contextlib
import contextvars
import math
from collections.abc import Callable, Iterator, Sequence

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array
Initializer = Callable[..., Array]

_SKIP_DRAWS: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "smlp_jax_skip_draws", default=False
)


@contextlib.contextmanager
def draws_skipped() -> Iterator[None]:
    """Within the block, the initialisers draw nothing: each parameter is NaN of its shape
    and dtype, and every rng stream advances as it does when drawing (the keys are taken,
    only the numbers are not made), so the built model's rng state is the drawn one's.

    For a model whose every parameter is restored next. NaN rather than zeros: a parameter
    the restore missed poisons the output instead of passing as a plausible weight. Under a
    trace the draw is made as usual (a traced draw costs no compilation per shape).
    """
    token = _SKIP_DRAWS.set(True)
    try:
        yield
    finally:
        _SKIP_DRAWS.reset(token)


def bucket(n: int) -> int:
    """The flat length drawn for `n` elements: >= n, from a small set shared by all sizes:
    4096 or 65536 for small arrays (biases, norms, small kernels: drawing 64k numbers
    costs ~1 ms, a compilation ~170), above that 2^k or 1.5 x 2^k (at most a third drawn
    in vain)."""
    if n <= 4096:
        return 4096
    if n <= 65536:
        return 65536
    octave = 1 << (n - 1).bit_length()  # the power of two >= n
    return octave * 3 // 4 if n <= octave * 3 // 4 else octave


def _draw(
    sample: Callable[[Array, tuple[int, ...]], Array],
    key: Array,
    shape: Sequence[int],
    dtype,
    scale: Array | float | None = None,
) -> Array:
    """`sample(key, shape) * scale` for a sampler of `dtype` whose element i depends only on
    (key, i) (`scale`: a scalar of that dtype or a Python float, as jax's weak typing
    treats it); NaNs of the shape under `draws_skipped()`."""
    shape = tuple(int(d) for d in shape)
    n = math.prod(shape)
    if _SKIP_DRAWS.get() and not isinstance(key, jax.core.Tracer):
        return jax.device_put(np.full(shape, np.nan, np.dtype(dtype)))
    if isinstance(key, jax.core.Tracer) or not jax.config.jax_threefry_partitionable or n == 0:
        # Traced: no compilation per shape to save. Not partitionable: element i would
        # depend on the shape, so draw exactly as asked.
        x = sample(key, shape)
        return x if scale is None else scale * x
    # Cut and scale on the host: each would otherwise be one more compilation per shape
    # (IEEE float32 products, so the same bits as XLA's).
    x = np.asarray(sample(key, (bucket(n),)))[:n].reshape(shape)
    if scale is not None:
        x = x * np.asarray(scale, x.dtype)
    return jax.device_put(x)  # a transfer; jnp.asarray would compile a copy per shape


def uniform(key: Array, shape: Sequence[int], dtype, minval: float, maxval: float) -> Array:
    """`jax.random.uniform(key, shape, dtype, minval, maxval)`, bit for bit."""
    return _draw(lambda k, s: jax.random.uniform(k, s, dtype, minval, maxval), key, shape, dtype)


def truncated_normal(
    key: Array, lower: float, upper: float, shape: Sequence[int], dtype, scale=None
) -> Array:
    """`jax.random.truncated_normal(key, lower, upper, shape, dtype) * scale`, bit for bit."""

    def sample(k, s):
        return jax.random.truncated_normal(k, lower, upper, s, dtype)

    return _draw(sample, key, shape, dtype, scale)


def torch_uniform_init(fan_in: int) -> Initializer:
    """PyTorch's default Linear/Conv init: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).

    This is kaiming_uniform(a=sqrt(5)) for weights and the matching bias rule; both
    reduce to the same bound.
    """
    bound = 1.0 / math.sqrt(fan_in)

    def init(key, shape, dtype=jnp.float32):
        return uniform(key, shape, dtype, -bound, bound)

    return init


def trunc_normal_init(std: float = 0.02) -> Initializer:
    """timm's `trunc_normal_(w, std=std)`: N(0, std^2) cut at +-2 (absolute, as timm does).

    The official `_init_weights` of ViT-style models (ViP, Hire-MLP, ...) applies it to
    their `nn.Linear` weights, with zero biases.
    """

    def init(key, shape, dtype=jnp.float32):
        return truncated_normal(key, -2.0 / std, 2.0 / std, shape, dtype, scale=std)

    return init


def lecun_normal_init() -> Initializer:
    """Flax's `lecun_normal()` (`jax.nn.initializers.variance_scaling(1, "fan_in",
    "truncated_normal")`): N(0, 1/fan_in) cut at +-2 standard deviations, rescaled to keep
    the variance; fan_in = shape[-2] x the receptive field (every axis but the last two)."""

    def init(key, shape, dtype=jnp.float32):
        shape = tuple(shape)
        if len(shape) < 2:
            raise ValueError(f"lecun_normal_init needs a kernel of 2+ axes, got {shape}")
        receptive_field = math.prod(shape) / shape[-2] / shape[-1]
        fan_in = shape[-2] * receptive_field  # jax's steps, for the same float
        # The same float32 steps as jax's: sqrt(variance) / stddev of N(0, 1) cut at +-2.
        variance = jnp.array(1.0 / fan_in, dtype=dtype)
        stddev = jnp.sqrt(variance) / jnp.array(0.87962566103423978, dtype)
        return truncated_normal(key, -2, 2, shape, dtype, scale=stddev)

    return init


def next_key(stream) -> Array:
    """The next key of an `nnx.RngStream`, what `stream()` returns: `fold_in(key, count)`,
    then the count advanced by one, as flax 0.12 draws it (same keys, same order). The
    count is set whole (`set_value`), not by index as flax does: under a trace (the sharded
    state init, a train step's DropPath) flax's indexed set asks the traced count for its
    sharding, and the error message JAX builds for that walks the whole jaxpr traced so far,
    so a model's draws cost time quadratic in its size (2.1 s of sMLPNet-T's state init in
    main.py)."""
    stream.count._check_can_update()  # flax's own check (e.g. inside a transform it forbids)
    count = stream.count[...]
    key = jax.random.fold_in(stream.key[...], count)
    stream.count.set_value(count + 1)
    return key


def split(key: Array, num: int) -> list[Array]:
    """`list(jax.random.split(key, num))`, bit for bit, for `num` <= 8: drawn as a split in
    8 and cut on the host (element i of a split depends only on the key and i, as for the
    draws above), so every count shares one compilation."""
    if isinstance(key, jax.core.Tracer) or not jax.config.jax_threefry_partitionable or num > 8:
        return list(jax.random.split(key, num))
    data = np.asarray(jax.random.key_data(jax.random.split(key, 8)))[:num]
    impl = jax.random.key_impl(key)
    return [jax.random.wrap_key_data(jax.device_put(d), impl=impl) for d in data]


def zeros(shape: Sequence[int]) -> Array:
    """float32 zeros of `shape`, put on the device without a program to compile
    (`jnp.zeros` compiles a broadcast per shape outside `jit`; under a trace this is a
    constant, so keep it for biases and norms, not large kernels)."""
    return jax.device_put(np.zeros(tuple(shape), np.float32))


def ones(shape: Sequence[int]) -> Array:
    """float32 ones of `shape`, as `zeros`."""
    return jax.device_put(np.ones(tuple(shape), np.float32))
