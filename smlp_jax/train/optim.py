"""The optimiser, read from the config: AdamW with a weight-decay mask, optional clipping.

AdamW here is PyTorch's (`torch.optim.AdamW`, which timm's `create_optimizer` builds):
decoupled decay `p <- p - lr * wd * p` and the bias-corrected Adam step, which optax's
`adamw` computes identically. Which parameters decay is `config.optimizer.decay_rule`:

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
"""

from __future__ import annotations

import re
from typing import Any

import jax
import optax

from smlp_jax.train.errors import ConfigError
from smlp_jax.train.schedules import learning_rate_schedule, peak_learning_rate
from smlp_jax.train.sharding import path_name

__all__ = [
    "DECAY_RULES",
    "decay_mask",
    "learning_rate_schedule",
    "make_optimizer",
    "peak_learning_rate",
]

DECAY_RULES = ("timm", "kernels", "all")


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


def make_optimizer(config: Any, schedule: optax.Schedule) -> optax.GradientTransformation:
    """Clipping (optional) then AdamW with the decay mask, from `config.optimizer`."""
    opt = config.optimizer
    if opt.name != "adamw":
        raise ConfigError(f"config.optimizer.name={opt.name!r}; only 'adamw' is implemented.")
    rule, no_decay = opt.decay_rule, tuple(opt.no_decay)
    decay_mask(jax.numpy.zeros((2, 2)), rule, no_decay)  # bad rule / pattern: fail now
    parts = []
    if config.grad_clip and config.grad_clip > 0:
        parts.append(optax.clip_by_global_norm(config.grad_clip))
    parts.append(
        optax.adamw(
            schedule,
            b1=opt.b1,
            b2=opt.b2,
            eps=opt.eps,
            weight_decay=opt.weight_decay,
            mask=lambda params: decay_mask(params, rule, no_decay),
        )
    )
    return optax.chain(*parts)
