"""The optimiser and learning-rate schedule, read from the config.

AdamW (decoupled weight decay) as in the sMLPNet/DeiT recipe: no weight decay for
1-D parameters (biases, norm scales and shifts; timm's `param.ndim <= 1` rule),
linear warm-up from `warmup_init_lr` to the peak, then cosine to `min_lr`. The peak is
`lr * batch_size / lr_base_batch` (the linear scaling rule; `lr_base_batch=0` turns the
scaling off). Gradient clipping by global norm when `grad_clip > 0`.
"""

from __future__ import annotations

from typing import Any

import jax
import optax

from smlp_jax.train.errors import ConfigError


def peak_learning_rate(config: Any) -> float:
    opt = config.optimizer
    if opt.lr_base_batch:
        return opt.lr * config.batch_size / opt.lr_base_batch
    return opt.lr


def learning_rate_schedule(config: Any, total_steps: int, steps_per_epoch: int) -> optax.Schedule:
    """step -> learning rate: warm-up then cosine over `total_steps`."""
    opt = config.optimizer
    peak = peak_learning_rate(config)
    if opt.warmup_steps is not None:
        warmup = int(opt.warmup_steps)
    else:
        warmup = int(round(opt.warmup_epochs * steps_per_epoch))
    warmup = min(warmup, total_steps)
    if opt.schedule == "constant":
        return optax.join_schedules(
            [
                optax.linear_schedule(opt.warmup_init_lr, peak, max(warmup, 1)),
                optax.constant_schedule(peak),
            ],
            [warmup],
        )
    if opt.schedule != "cosine":
        raise ConfigError(
            f"config.optimizer.schedule={opt.schedule!r}; use 'cosine' or 'constant'."
        )
    return optax.warmup_cosine_decay_schedule(
        init_value=opt.warmup_init_lr,
        peak_value=peak,
        warmup_steps=warmup,
        decay_steps=max(total_steps, warmup + 1),
        end_value=opt.min_lr,
    )


def decay_mask(params: Any) -> Any:
    """True where weight decay applies: matrices and kernels, not biases or norm params."""
    return jax.tree.map(lambda p: p.ndim > 1, params)


def make_optimizer(config: Any, schedule: optax.Schedule) -> optax.GradientTransformation:
    """Clipping (optional) then AdamW with the decay mask, from `config.optimizer`."""
    opt = config.optimizer
    if opt.name != "adamw":
        raise ConfigError(f"config.optimizer.name={opt.name!r}; only 'adamw' is implemented.")
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
            mask=decay_mask,
        )
    )
    return optax.chain(*parts)
