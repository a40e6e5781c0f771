"""`trained_model`: a config's model filled from a checkpoint, built without drawing."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from smlp_jax.tools.trained import trained_model
from smlp_jax.train import init_from
from smlp_jax.train.state import build_model
from tests.train.tiny import demo_config


def _drawn_then_restored(config, workdir) -> nnx.Module:
    """What `trained_model` built before it skipped the draws: a seed-0 model, drawn, then
    every parameter and statistic overwritten from the checkpoint."""
    model = build_model(config, 10, seed=0)
    _, params, _, rest = nnx.split(model, nnx.Param, nnx.RngState, ...)
    target = {"params": nnx.to_pure_dict(params), "model_state": nnx.to_pure_dict(rest)}
    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), target)
    loaded = init_from.load_for_init(workdir, abstract, partial=True)
    nnx.replace_by_pure_dict(params, loaded["params"])
    nnx.replace_by_pure_dict(rest, loaded["model_state"])
    nnx.update(model, params, rest)
    return model


def _arrays(model: nnx.Module) -> dict:
    out = {}
    for path, var in nnx.to_flat_state(nnx.state(model)):
        value = var[...]
        if jnp.issubdtype(value.dtype, jax.dtypes.prng_key):
            value = jax.random.key_data(value)
        out[path] = np.asarray(value)
    return out


def test_trained_model_is_the_checkpoint_with_the_seed_0_rng_state_and_draws_nothing(
    trained_demo_run, monkeypatch
):
    workdir, overrides = trained_demo_run
    config = demo_config("smlpnet", overrides)
    want = _arrays(_drawn_then_restored(config, workdir))

    samplers = []
    for name in ("uniform", "truncated_normal"):
        original = getattr(jax.random, name)
        monkeypatch.setattr(
            jax.random, name, lambda *a, _o=original, **k: samplers.append(1) or _o(*a, **k)
        )
    got = _arrays(trained_model(config, str(workdir), num_classes=10))
    assert samplers == []  # nothing drawn: every parameter came from the checkpoint
    assert got.keys() == want.keys()
    for path, value in got.items():
        assert not (np.issubdtype(value.dtype, np.floating) and np.isnan(value).any()), path
        np.testing.assert_array_equal(value, want[path], err_msg=str(path))
