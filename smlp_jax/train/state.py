"""The model as pure data, and the train state the loop carries and checkpoints.

The nnx model is split once into a static graph (`nnx.GraphDef`, one for train mode and
one for eval mode) and plain nested dicts of arrays; the steps are pure functions over
those dicts (`nnx.merge` inside), which is what `jax.jit` shards best.

The train state is a dict pytree of jax.Arrays:
    step         int32 ()      optimiser updates done
    params       nnx.Param values            (float32 always)
    model_state  everything else mutable but the rngs (BatchNorm running statistics)
    rngs         the model's rng streams as created; never advanced: each step uses
                 `fold_in(key, step)`, so a resumed run draws the same masks
    opt_state    optax state over `params`
    ema          {"params", "model_state"} exponential moving average (only with EMA on)
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from smlp_jax.factory import create_model
from smlp_jax.models import registry
from smlp_jax.train.errors import ConfigError

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}


@dataclasses.dataclass(frozen=True)
class ModelGraphs:
    """The static halves of the model: train-mode and eval-mode graphs."""

    train: Any
    eval: Any


def compute_dtype(name: str):
    if name not in DTYPES:
        raise ConfigError(f"config.dtype={name!r}; use one of {sorted(DTYPES)}.")
    return DTYPES[name]


def build_model(config: Any, num_classes: int, seed: int) -> nnx.Module:
    """The configured model, freshly initialised from `seed`."""
    return create_model(
        config.model,
        num_classes=num_classes,
        image_size=config.image_size,
        rngs=seed,
        dtype=compute_dtype(config.dtype),
        **model_kwargs(config),
    )


def model_kwargs(config: Any) -> dict[str, Any]:
    """The hyperparameters `config.model` is built with.

    The config files fill `model_kwargs` with every hyperparameter of the model they name
    (`model_kwargs_of`; configs/common.with_model_defaults). When `--config.model` names
    another model, only the keys that differ from those filled-in values go on (the new
    model's own values stand for the rest), and for another family only the ones it takes.
    """
    kwargs = dict(config.model_kwargs)
    origin = config.get("model_kwargs_of", "")
    if not origin or origin == config.model:
        return kwargs
    registry.get_entry(config.model)  # an unknown name: its own clear error first
    filled = registry.hyperparameters(origin)
    changed = {k: v for k, v in kwargs.items() if k not in filled or filled[k] != v}
    if registry.get_entry(origin).family == registry.get_entry(config.model).family:
        return changed
    takes = registry.hyperparameters(config.model)
    return {k: v for k, v in changed.items() if k in takes}


def split(model: nnx.Module) -> tuple[Any, dict, dict, dict]:
    """model -> (graphdef, params, rngs, model_state) with plain nested dicts."""
    graphdef, params, rngs, rest = nnx.split(model, nnx.Param, nnx.RngState, ...)
    pure = nnx.to_pure_dict
    return graphdef, pure(params), pure(rngs), pure(rest)


def abstract_model(config: Any, num_classes: int) -> nnx.Module:
    """The config's model with shapes and dtypes but no values (nothing is allocated). Bad
    hyperparameters fail here as one clear ConfigError; an unknown model name as the
    registry's UnknownModelError."""
    try:
        return nnx.eval_shape(lambda: build_model(config, num_classes, 0))
    except TypeError as err:  # unknown hyperparameter names in config.model_kwargs
        raise ConfigError(f"config.model_kwargs: {err}") from None
    except ValueError as err:
        if isinstance(err, registry.UnknownModelError):
            raise
        raise ConfigError(f"config.model={config.model!r}: {err}") from None


def model_graphs(model: nnx.Module) -> ModelGraphs:
    """Both graphs of `model` (an `abstract_model`; its mode is changed)."""
    model.train()
    train = nnx.graphdef(model)
    model.eval()
    return ModelGraphs(train=train, eval=nnx.graphdef(model))


def head_name(model_name: str) -> str:
    """The classifier's attribute (and params key) of `model_name`, from its pretrained
    configuration (`PretrainedCfg.classifier`)."""
    return registry.pretrained_cfg(model_name).classifier


def with_head_bias(params: dict, value: float | None, head: str = "head") -> dict:
    """`params` with the classifier's bias (`params[head]`) set to `value` (big_vision's
    `head_bias_init`, -6.9 ~ log(1/1000) for a sigmoid loss on 1000 classes); None leaves
    it as built."""
    if value is None:
        return params
    layer = params.get(head)
    if not isinstance(layer, dict) or "bias" not in layer:
        raise ConfigError(
            "config.head_bias_init is set but this model's classifier has no bias "
            f"(params['{head}'] holds {sorted(layer) if isinstance(layer, dict) else layer!r})."
        )
    bias = layer["bias"]
    return {**params, head: {**layer, "bias": jnp.full(bias.shape, value, bias.dtype)}}


def init_state(config: Any, num_classes: int, tx: optax.GradientTransformation) -> dict:
    """A fresh train state (call under `jax.jit(out_shardings=...)` to create it sharded)."""
    _, params, rngs, model_state = split(build_model(config, num_classes, config.seed))
    params = with_head_bias(params, config.head_bias_init, head_name(config.model))
    state = {
        "step": jnp.zeros((), jnp.int32),
        "params": params,
        "model_state": model_state,
        "rngs": rngs,
        "opt_state": tx.init(params),
    }
    if config.ema.decay:
        state["ema"] = {"params": params, "model_state": model_state}
    return state


def rngs_for_step(rngs: dict, step: jax.Array) -> dict:
    """The model's rng streams for `step`: every key folded with the step number."""

    def advance(leaf):
        if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            return jax.random.fold_in(leaf, step)
        return leaf

    return jax.tree.map(advance, rngs)


def ema_update(ema: dict, params: dict, model_state: dict, decay: float) -> dict:
    """ema <- decay * ema + (1 - decay) * current (parameters and BatchNorm statistics,
    as timm's ModelEma does over the whole state dict)."""

    def mix(old, new):
        if not jnp.issubdtype(old.dtype, jnp.floating):
            return new
        return decay * old + (1.0 - decay) * new

    return {
        "params": jax.tree.map(mix, ema["params"], params),
        "model_state": jax.tree.map(mix, ema["model_state"], model_state),
    }
