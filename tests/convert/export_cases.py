"""The tiny models whose exported weights the official PyTorch code loads (one a family
with official code), shared by `reference/write_export_weights.py` (which writes them to
tests/fixtures/export/) and tests/convert/test_export_official.py (which checks them).

Each has the architecture of its family's parity fixture (so `reference/make_*_fixture.py`
builds the same PyTorch model) and weights of our own, with
every array drawn at random, BatchNorm statistics included.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

import smlp_jax

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
EXPORTS = FIXTURES / "export"
LOGITS = FIXTURES / "export_logits.npz"


def _config(fixture: str, key: str = "config") -> dict[str, Any]:
    with np.load(FIXTURES / fixture, allow_pickle=False) as f:
        return json.loads(str(f[key]))


def cases() -> dict[str, tuple[str, dict[str, Any]]]:
    """family -> (registered name, create_model keyword arguments)."""
    conv = _config("convmixer_logits.npz", "config_gelu")
    return {
        "smlpnet": ("smlpnet_t", _config("smlpnet_tiny.npz")),
        "mixer": ("mixer_b16", {**_config("mixer_logits.npz"), "gelu_approximate": False}),
        "convmixer": ("convmixer_768_32", {**conv, "num_classes": 10, "image_size": 32}),
        "dynamixer": ("dynamixer_s", _config("dynamixer_logits.npz")),
        "permutator": ("vip_s7", _config("permutator_tiny.npz")),
        "as_mlp": ("asmlp_t", _config("as_mlp_tiny.npz")),
        "hire_mlp": ("hiremlp_t", _config("hire_mlp_tiny.npz")),
        "raft_mlp": ("raftmlp_s", _config("raft_mlp_tiny.npz")),
    }


def build(family: str, seed: int = 7) -> nnx.Module:
    """The family's case, in eval mode, with our random weights."""
    name, kwargs = cases()[family]
    model = random_model(name, seed, **kwargs)
    model.eval()
    return model


def random_model(name: str, seed: int, **kwargs: Any) -> nnx.Module:
    """`create_model(name, **kwargs)` with every weight and BatchNorm statistic drawn by
    numpy from `seed`. Built abstract (no initialisation is computed: for tiny models it
    costs more than the test), then filled; the rng state is seeded, outputs zeroed."""
    model = nnx.eval_shape(lambda: smlp_jax.create_model(name, rngs=seed, **kwargs))
    rng = np.random.default_rng(seed)
    for path, variable in nnx.iter_graph(model):
        if not isinstance(variable, nnx.Variable):
            continue
        if not isinstance(variable, (nnx.Param, nnx.BatchStat)):  # rng state, outputs
            abstract = variable.get_value()
            if jax.dtypes.issubdtype(abstract.dtype, jax.dtypes.prng_key):
                variable.set_value(jax.random.key(seed))
            else:
                variable.set_value(jnp.zeros(abstract.shape, abstract.dtype))
            continue
        # Drawn by numpy alone: JAX's initialisers round differently under other XLA
        # flags (the test suite's), and the file must be the same wherever it is made.
        shape, leaf = variable.shape, str(path[-1])
        if leaf == "var":  # a BatchNorm variance stays positive
            new = rng.uniform(0.5, 1.5, shape)
        elif len(shape) >= 2:
            new = rng.standard_normal(shape) / np.sqrt(np.prod(shape[:-1]))
        else:
            new = (1.0 if leaf == "scale" else 0.0) + 0.2 * rng.standard_normal(shape)
        variable.set_value(jnp.asarray(new, dtype=variable.dtype))
    return model


def images(family: str) -> np.ndarray:
    """`(2, S, S, 3)` float32 inputs for the case."""
    size = cases()[family][1]["image_size"]
    return np.random.default_rng(11).standard_normal((2, size, size, 3)).astype(np.float32)
