"""The optimiser, read from the config: AdamW or SGD with momentum, a weight-decay mask,
optional clipping.

`config.optimizer.name`:

- "adamw": PyTorch's AdamW (`torch.optim.AdamW`, which timm's `create_optimizer` builds):
  decoupled decay `p <- p - lr * wd * p` and the bias-corrected Adam step, which optax's
  `adamw` computes identically.
- "sgd": SGD with (heavy-ball) momentum, `torch.optim.SGD(momentum=m, dampening=0,
  nesterov=n, weight_decay=wd)` and `optax.sgd(lr, momentum, nesterov)` alike:
  `b <- m * b + (g + wd * p)`, `p <- p - lr * b` (Nesterov: `p <- p - lr * (g' + m * b)`).
  Its weight decay is the L2 term added to the gradient, as torch's, on the parameters
  the mask below picks; `weight_decay=0` turns it off (vit_jax's fine-tuning).
  `optimizer.momentum` (0.9; 0 = plain SGD, no buffer), `optimizer.nesterov`,
  `optimizer.momentum_dtype` (the momentum buffer's dtype: "float32", or "bfloat16" as
  vit_jax keeps it). `b1`, `b2`, `eps` are AdamW's only.

Which parameters decay is `config.optimizer.decay_rule`:

- "timm": timm's `add_weight_decay` as DeiT/SPACH/Swin use it: no decay for 1-D
  parameters (biases, norm scales and shifts) and for names ending in `bias`; 0-D
  parameters do decay (timm tests `len(shape) == 1`).
- "kernels": only parameters named `kernel` decay (big_vision's `wd_mults`
  `('.*/kernel$', 1.0)`).
- "all": every parameter decays (`torch.optim.AdamW(model.parameters(), ...)`, as
  RaftMLP trains).

plus `config.optimizer.no_decay`: regular expressions over our '/'-joined parameter paths
(e.g. "token_mixing/.*") for a family's `no_weight_decay()` names. Schedules live in
`schedules.py`. Gradient clipping by global norm when `grad_clip > 0`.

Fine-tuning controls, each off by default (and then the optimiser and its state are
exactly the plain optimiser above):

- `optimizer.layer_decay` (BEiT / timm's `param_groups_layer_decay`): a parameter at depth
  d of D (`smlp_jax.models.layer_depth`: stem 0, blocks 1.., head D) updates at
  lr x layer_decay ** (D - d); in (0, 1], None or 1.0 = off.
- `optimizer.lr_mults` (big_vision's `lr_mults`): ((regex, multiplier), ...) over the
  '/'-joined parameter paths, the first pattern that matches a path wins; it multiplies
  the layer-decay scale. Both scale the whole update, weight decay included, as a torch
  param group's lr does.
- `optimizer.freeze` (big_vision's `schedule=[(regex, None)]`): regexes; the parameters
  they match get a zero update and no optimiser state (`optax.multi_transform` with
  `set_to_zero`), take no gradient (the train step stops it) and stay bit-identical;
  clipping and the gradient norm see only the trained ones. BatchNorm statistics of frozen
  layers still update in train mode, as with PyTorch's `requires_grad=False`.

Every pattern is a full match (`re.fullmatch`) and must match at least one parameter.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import jax
import optax
from flax import nnx

from smlp_jax.models import layer_depth
from smlp_jax.train.errors import ConfigError
from smlp_jax.train.schedules import learning_rate_schedule, peak_learning_rate
from smlp_jax.train.sharding import path_name
from smlp_jax.train.state import build_model

__all__ = [
    "DECAY_RULES",
    "OPTIMIZERS",
    "decay_mask",
    "frozen_mask",
    "keep_frozen",
    "lr_scales",
    "stop_frozen_gradients",
    "learning_rate_schedule",
    "make_optimizer",
    "peak_learning_rate",
]

DECAY_RULES = ("timm", "kernels", "all")
OPTIMIZERS = ("adamw", "sgd")
MOMENTUM_DTYPES = ("float32", "bfloat16")


def decay_mask(params: Any, rule: str = "timm", no_decay: tuple[str, ...] = ()) -> Any:
    """A tree like `params`: True where weight decay applies (see the module docstring)."""
    if rule not in DECAY_RULES:
        raise ConfigError(
            f"config.optimizer.decay_rule={rule!r}; use one of {', '.join(DECAY_RULES)}."
        )
    try:
        patterns = [re.compile(p) for p in no_decay]
    except re.error as err:
        raise ConfigError(f"config.optimizer.no_decay: bad regular expression ({err}).") from None

    def decays(path, p) -> bool:
        name = path_name(path)
        leaf = name.rsplit("/", 1)[-1]
        if any(pattern.fullmatch(name) for pattern in patterns):
            return False
        if rule == "kernels":
            return leaf == "kernel"
        if rule == "all":
            return True
        return len(p.shape) != 1 and not leaf.endswith("bias")

    return jax.tree_util.tree_map_with_path(decays, params)


def _patterns(key: str, values: Any) -> list[re.Pattern]:
    try:
        return [re.compile(str(v)) for v in values]
    except re.error as err:
        raise ConfigError(f"config.optimizer.{key}: bad regular expression ({err}).") from None


def _lr_mults(values: Any) -> list[tuple[re.Pattern, float]]:
    pairs = []
    for item in values or ():
        if (
            not isinstance(item, tuple | list)
            or len(item) != 2
            or not isinstance(item[1], int | float)
            or isinstance(item[1], bool)
            or item[1] < 0
        ):
            raise ConfigError(
                f"config.optimizer.lr_mults holds {item!r}; give (regex, multiplier >= 0) "
                "pairs, e.g. (('head/.*', 10.0),)."
            )
        pairs.append((_patterns("lr_mults", [item[0]])[0], float(item[1])))
    return pairs


def _layer_decay(opt: Any) -> float | None:
    """`optimizer.layer_decay` checked: None when off (None or 1.0)."""
    value = opt.get("layer_decay")
    if value is None:
        return None
    if isinstance(value, bool) or not 0.0 < float(value) <= 1.0:
        raise ConfigError(
            f"config.optimizer.layer_decay={value!r}; use a value in (0, 1] (0.65-0.9 is usual "
            "for fine-tuning), or None / 1.0 for no layer-wise decay."
        )
    return None if float(value) == 1.0 else float(value)


def frozen_mask(params: Any, freeze: tuple[str, ...]) -> Any:
    """A tree like `params`: True where a `freeze` pattern fully matches the path."""
    patterns = _patterns("freeze", freeze)
    return jax.tree_util.tree_map_with_path(
        lambda path, _: any(p.fullmatch(path_name(path)) for p in patterns), params
    )


def stop_frozen_gradients(params: Any, freeze: tuple[str, ...]) -> Any:
    """`params` with the frozen ones behind `stop_gradient` (their gradient is zero, so its
    computation is dropped by XLA)."""
    mask = frozen_mask(params, freeze)
    return jax.tree.map(lambda m, p: jax.lax.stop_gradient(p) if m else p, mask, params)


def keep_frozen(new: Any, old: Any, freeze: tuple[str, ...]) -> Any:
    """`new` with the frozen parameters taken from `old`, bit for bit."""
    mask = frozen_mask(old, freeze)
    return jax.tree.map(lambda m, n, o: o if m else n, mask, new, old)


def _parameter_names(config: Any, num_classes: int) -> list[str]:
    model = nnx.eval_shape(lambda: build_model(config, num_classes, 0))
    params = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    return [path_name(path) for path, _ in jax.tree_util.tree_flatten_with_path(params)[0]]


def lr_scales(config: Any, num_classes: int = 10) -> dict[str, float]:
    """{parameter name: lr multiplier} of `config`'s model (layer decay x `lr_mults`; 1.0
    where neither applies), every pattern checked to match a parameter. `num_classes` only
    decides whether the model has a head (any positive count gives the same names)."""
    opt = config.optimizer
    decay = _layer_decay(opt)
    mults = _lr_mults(opt.get("lr_mults", ()))
    names = _parameter_names(config, num_classes)
    scales = dict.fromkeys(names, 1.0)
    if decay is not None:
        model = nnx.eval_shape(lambda: build_model(config, num_classes, 0))
        model.eval()
        depths, depth_max = layer_depth.param_depths(model, int(config.image_size))
        scales.update(layer_depth.layer_scales(depths, depth_max, decay))
    for name in names:
        for pattern, mult in mults:
            if pattern.fullmatch(name):
                scales[name] *= mult
                break
    _check_matches(config, names, [p for p, _ in mults], "lr_mults")
    return scales


def _check_matches(config: Any, names: list[str], patterns: list[re.Pattern], key: str) -> None:
    for pattern in patterns:
        if not any(pattern.fullmatch(name) for name in names):
            examples = ", ".join(repr(n) for n in names[:3])
            raise ConfigError(
                f"config.optimizer.{key}: {pattern.pattern!r} matches no parameter of "
                f"{config.model} (full match over '/'-joined paths such as {examples}; "
                "WORKDIR/parameters.txt lists them all)."
            )


def _scale_by_name(scales: dict[str, float]) -> optax.GradientTransformation:
    """Multiplies each update by its parameter's scale (looked up by path)."""

    def update(updates, state, params=None):
        del params
        scaled = jax.tree_util.tree_map_with_path(
            lambda path, u: u * scales.get(path_name(path), 1.0), updates
        )
        return scaled, state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


def _labels(freeze: tuple[str, ...]) -> Callable[[Any], Any]:
    def labels(params):
        return jax.tree.map(lambda m: "frozen" if m else "train", frozen_mask(params, freeze))

    return labels


def _sgd(opt: Any, schedule: optax.Schedule, mask: Callable[[Any], Any]):
    """torch's SGD with momentum (module doc): L2 weight decay on the masked parameters
    added to the gradient (none at weight_decay 0), then `optax.sgd`."""
    momentum = opt.get("momentum", 0.9)
    if isinstance(momentum, bool) or not 0.0 <= float(momentum) < 1.0:
        raise ConfigError(
            f"config.optimizer.momentum={momentum!r}; use a value in [0, 1) (0.9 is usual; "
            "0 = plain SGD)."
        )
    dtype = opt.get("momentum_dtype", "float32")
    if dtype not in MOMENTUM_DTYPES:
        raise ConfigError(
            f"config.optimizer.momentum_dtype={dtype!r}; use one of {', '.join(MOMENTUM_DTYPES)}."
        )
    parts = []
    if opt.weight_decay:
        parts.append(optax.add_decayed_weights(opt.weight_decay, mask=mask))
    parts.append(
        optax.sgd(
            schedule,
            momentum=float(momentum) or None,
            nesterov=bool(opt.get("nesterov", False)),
            accumulator_dtype=None if dtype == "float32" else dtype,
        )
    )
    return parts


def make_optimizer(
    config: Any, schedule: optax.Schedule, num_classes: int = 10
) -> optax.GradientTransformation:
    """Clipping (optional) then AdamW or SGD with the decay mask, from `config.optimizer`;
    with the fine-tuning controls (module doc) the per-parameter scales and frozen
    parameters. `num_classes`: the run's (it only decides whether the model has a head)."""
    opt = config.optimizer
    if opt.name not in OPTIMIZERS:
        raise ConfigError(
            f"config.optimizer.name={opt.name!r}; use one of {', '.join(OPTIMIZERS)}."
        )
    rule, no_decay = opt.decay_rule, tuple(opt.no_decay)
    decay_mask(jax.numpy.zeros((2, 2)), rule, no_decay)  # bad rule / pattern: fail now
    freeze = tuple(opt.get("freeze", ()) or ())
    parts = []
    if config.grad_clip and config.grad_clip > 0:
        parts.append(optax.clip_by_global_norm(config.grad_clip))

    def mask(params):
        return decay_mask(params, rule, no_decay)

    if opt.name == "sgd":
        parts.extend(_sgd(opt, schedule, mask))
    else:
        parts.append(
            optax.adamw(
                schedule,
                b1=opt.b1,
                b2=opt.b2,
                eps=opt.eps,
                weight_decay=opt.weight_decay,
                mask=mask,
            )
        )
    if _layer_decay(opt) is not None or opt.get("lr_mults", ()):
        scales = lr_scales(config, num_classes)
        if any(s != 1.0 for s in scales.values()):
            parts.append(_scale_by_name(scales))
    tx = optax.chain(*parts)
    if not freeze:
        return tx
    names = _parameter_names(config, num_classes)
    patterns = _patterns("freeze", freeze)
    _check_matches(config, names, patterns, "freeze")
    if all(any(p.fullmatch(n) for p in patterns) for n in names):
        raise ConfigError(
            "config.optimizer.freeze matches every parameter: nothing would train. Freeze "
            "fewer (e.g. everything but the head: ('(?!head/).*',))."
        )
    return optax.multi_transform({"train": tx, "frozen": optax.set_to_zero()}, _labels(freeze))
