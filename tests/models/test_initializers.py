"""Fresh weights drawn in a few compilations are the weights `jax.random` draws.

`smlp_jax.models.initializers` draws at a bucketed flat length and cuts; these tests hold
it to the values of a direct draw: per initialiser over shapes around every kind of
bucket edge, per family on whole models, and against digests of the parameters that the
code before bucketing (commit f864c7f, plain `jax.random` / `nnx.initializers` calls)
built: every family at its tiny size and sMLPNet-T at full size. The digests are of the
test processes' XLA flags (`tests.train.tiny.FAST_COMPILE`, which conftest sets: the
truncated normal's float steps round differently at another optimisation level).
Regenerate them only for a deliberate change of initialisation:
`XLA_FLAGS="$FAST_COMPILE" python -m tests.models.test_initializers --write`.
"""

from __future__ import annotations

import hashlib
import json
import math
import pathlib
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import smlp_jax
from benchmarks.throughput import TINY, TINY_IMAGE_SIZE
from smlp_jax.models import initializers
from smlp_jax.models.registry import get_entry, list_models

DIGESTS = pathlib.Path(__file__).parents[1] / "fixtures" / "init_digests.json"
SHAPES = [(1,), (7, 5), (64, 64), (4097,), (3, 3, 16, 1), (300, 300), (257, 1025), (1024, 1536)]


def _first_variant(family: str) -> str:
    return next(n for n in list_models() if get_entry(n).family == family)


def _cases() -> dict[str, dict]:
    """name -> create_model kwargs: each family tiny, and sMLPNet-T as registered."""
    cases = {
        f"{family}_tiny": dict(
            name=_first_variant(family),
            num_classes=5,
            image_size=TINY_IMAGE_SIZE,
            **TINY[family],
        )
        for family in sorted(TINY)
    }
    cases["smlpnet_t"] = dict(name="smlpnet_t")
    return cases


def _digest(model: nnx.Module) -> str:
    """sha256 over every variable's path, dtype, shape and bytes, in path order (rng
    keys by their data)."""
    h = hashlib.sha256()
    flat = nnx.to_flat_state(nnx.state(model))
    for path, var in sorted(flat, key=lambda kv: tuple(map(str, kv[0]))):
        value = var[...]
        if jnp.issubdtype(value.dtype, jax.dtypes.prng_key):  # the model's rng streams
            value = jax.random.key_data(value)
        value = np.asarray(value)
        h.update(f"{'/'.join(map(str, path))}:{value.dtype}:{value.shape};".encode())
        h.update(np.ascontiguousarray(value).tobytes())
    return h.hexdigest()


def _build(case: dict) -> nnx.Module:
    kwargs = dict(case)
    return smlp_jax.create_model(kwargs.pop("name"), rngs=0, **kwargs)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_each_initialiser_draws_what_jax_random_draws(shape):
    key = jax.random.key(7)
    fan_in = shape[-2] if len(shape) > 1 else shape[0]
    bound = 1.0 / math.sqrt(fan_in)
    expected = {
        "torch_uniform": jax.random.uniform(key, shape, jnp.float32, -bound, bound),
        "trunc_normal": 0.02 * jax.random.truncated_normal(key, -100.0, 100.0, shape),
    }
    got = {
        "torch_uniform": initializers.torch_uniform_init(fan_in)(key, shape),
        "trunc_normal": initializers.trunc_normal_init(0.02)(key, shape),
    }
    if len(shape) > 1:
        expected["lecun_normal"] = nnx.initializers.lecun_normal()(key, shape)
        got["lecun_normal"] = initializers.lecun_normal_init()(key, shape)
    for kind, want in expected.items():
        assert got[kind].shape == want.shape and got[kind].dtype == want.dtype, kind
        np.testing.assert_array_equal(np.asarray(got[kind]), np.asarray(want), err_msg=kind)


def test_bucket_is_at_least_the_length_and_one_of_few():
    lengths = list(range(1, 5000)) + [65536, 65537, 98304, 98305, 10**6, 2**24 + 1]
    buckets = {n: initializers.bucket(n) for n in lengths}
    assert all(b >= n for n, b in buckets.items())
    assert all(b <= 1.5 * n for n, b in buckets.items() if n > 65536)  # a third in vain at most
    assert len({b for n, b in buckets.items() if n <= 65536}) == 2  # 4096 and 65536


@pytest.mark.parametrize("num", [1, 2, 3, 5, 8, 9])
def test_split_is_jax_random_split(num):
    key = jax.random.key(11)
    got = [jax.random.key_data(k) for k in initializers.split(key, num)]
    want = jax.random.key_data(jax.random.split(key, num))
    np.testing.assert_array_equal(np.stack([np.asarray(g) for g in got]), np.asarray(want))


def test_under_a_trace_the_draw_is_direct():
    """Inside jit or eval_shape nothing is compiled per shape: the draw is jax's own."""
    init = initializers.torch_uniform_init(9)
    key = jax.random.key(3)
    jitted = jax.jit(lambda k: init(k, (9, 4)))(key)
    np.testing.assert_array_equal(np.asarray(jitted), np.asarray(init(key, (9, 4))))
    assert jax.eval_shape(lambda k: init(k, (9, 4)), key).shape == (9, 4)


@pytest.mark.parametrize("case", sorted(_cases()))
def test_every_family_builds_the_parameters_it_built_before(case):
    want = json.loads(DIGESTS.read_text())[case]
    assert _digest(_build(_cases()[case])) == want


def _write() -> None:
    digests = {case: _digest(_build(kwargs)) for case, kwargs in sorted(_cases().items())}
    DIGESTS.write_text(json.dumps(digests, indent=1, sort_keys=True) + "\n")
    print(f"wrote {DIGESTS} ({len(digests)} cases)")


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        sys.exit("usage: python -m tests.models.test_initializers --write")
    _write()


def test_next_key_draws_as_the_stream_does_and_its_trace_asks_no_tracer_its_sharding(
    monkeypatch,
):
    ours, flax_own = nnx.Rngs(params=3), nnx.Rngs(params=3)
    for _ in range(3):
        key = initializers.next_key(ours.params)
        assert (jax.random.key_data(key) == jax.random.key_data(flax_own.params())).all()
    assert int(ours.params.count[...]) == int(flax_own.params.count[...]) == 3

    # Under a trace (main.py's sharded state init) nothing asks a tracer for its sharding:
    # JAX's answer, an error message, walks the whole jaxpr traced so far.
    from jax._src.interpreters import partial_eval

    walks = []
    original = partial_eval.DynamicJaxprTracer._origin_msg
    monkeypatch.setattr(
        partial_eval.DynamicJaxprTracer,
        "_origin_msg",
        lambda self: walks.append(1) or original(self),
    )

    @jax.jit
    def build(key):
        model = smlp_jax.create_model(
            "smlpnet_t", rngs=nnx.Rngs(key), depths=(1, 1, 1, 1), dim=8, image_size=32
        )
        return nnx.state(model, nnx.Param)

    jax.eval_shape(build, jax.random.key(0))
    assert walks == []


@pytest.mark.parametrize("case", sorted(c for c in _cases() if c.endswith("_tiny")))
def test_with_draws_skipped_every_parameter_is_nan_and_the_rng_state_is_the_drawn_ones(
    case, monkeypatch
):
    """`draws_skipped()` (a model whose weights are restored next) draws no number, leaves
    every drawn parameter NaN and every other variable, the rng streams included, as the
    drawing build leaves it."""
    drawn = _build(_cases()[case])
    samplers = []
    for name in ("uniform", "truncated_normal"):
        original = getattr(jax.random, name)
        monkeypatch.setattr(
            jax.random, name, lambda *a, _o=original, **k: samplers.append(1) or _o(*a, **k)
        )
    with initializers.draws_skipped():
        skipped = _build(_cases()[case])
    assert samplers == []
    drawn_flat = dict(nnx.to_flat_state(nnx.state(drawn)))
    skipped_flat = dict(nnx.to_flat_state(nnx.state(skipped)))
    assert drawn_flat.keys() == skipped_flat.keys()
    nan_params = 0
    for path, var in skipped_flat.items():
        value, want = var[...], drawn_flat[path][...]
        if jnp.issubdtype(value.dtype, jax.dtypes.prng_key):
            value, want = jax.random.key_data(value), jax.random.key_data(want)
        value, want = np.asarray(value), np.asarray(want)
        assert value.shape == want.shape and value.dtype == want.dtype, path
        if np.isnan(value).all() and not np.isnan(want).all():
            nan_params += 1  # a drawn parameter, skipped
        else:
            np.testing.assert_array_equal(value, want, err_msg=str(path))
    assert nan_params >= 2  # at least the stem's or a block's kernels were skipped
    # Outside the block, draws are made again.
    np.testing.assert_array_equal(
        np.asarray(initializers.torch_uniform_init(4)(jax.random.key(1), (4, 4))),
        np.asarray(jax.random.uniform(jax.random.key(1), (4, 4), minval=-0.5, maxval=0.5)),
    )
