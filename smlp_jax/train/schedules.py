"""Learning-rate schedules, each with the exact arithmetic of the official code it follows.

A schedule is `step -> lr` (optax.Schedule), where `step` counts optimiser updates done
before the one being taken (0 for the first update). `config.optimizer.schedule` picks:

- "cosine": linear warm-up from `warmup_init_lr` to the peak, then cosine to `min_lr`,
  per update (optax's `warmup_cosine_decay_schedule`); the small configs' default.
- "constant": the same warm-up, then the peak.
- "timm_cosine": timm's `CosineLRScheduler` (one cycle), stepped per epoch
  (`schedule_unit="epoch"`: the lr is constant within an epoch, as DeiT/SPACH and timm's
  train.py) or per update (`"step"`, as Swin/AS-MLP). `schedule_lag` says which value the
  training loop hands the scheduler: DeiT's main.py calls `lr_scheduler.step(epoch)` at
  the end of epoch `epoch`, so epoch e runs at timm's value for e - 1 (lag 1; epoch 0 at the
  warm-up start); timm's train.py calls `step(epoch + 1)` (lag 0); Swin calls
  `step_update(epoch * steps + idx)` after update idx (lag 1 per update). The cycle is
  `cycle_epochs` long (None: the whole run); past it the lr stays at `min_lr` (timm's
  cool-down epochs). `warmup_prefix=False` (timm <= 0.4's default) lets the cosine start
  at t = 0, so its first post-warm-up value is already below the peak.
- "onecycle": ConvMixer's piecewise-linear one-cycle, 0 -> peak at `onecycle_pct` of the
  run, -> peak / `onecycle_div` at `onecycle_pct2`, -> 0 at the end, evaluated at the
  fraction of epochs done after each update (see `onecycle_lr`).
- "linear": big_vision's warm-up (lr x min(1, step / warmup)) and linear decay from the
  peak to `min_lr` over the steps after the warm-up.

The tabulated schedules ("timm_cosine", "onecycle", "linear") are computed once in float64
on the host, as the official Python code computes them, and looked up by step: the
float32 lr a step uses equals the official one rounded to float32.
"""

from __future__ import annotations

import math
from typing import Any

import jax.numpy as jnp
import numpy as np
import optax

from smlp_jax.train.errors import ConfigError

SCHEDULES = ("cosine", "constant", "timm_cosine", "onecycle", "linear")
UNITS = ("epoch", "step")


def peak_learning_rate(config: Any) -> float:
    """`lr * batch_size / lr_base_batch` (the linear scaling rule; 0 turns it off)."""
    opt = config.optimizer
    if opt.lr_base_batch:
        return opt.lr * config.batch_size / opt.lr_base_batch
    return opt.lr


def warmup_steps(config: Any, steps_per_epoch: int) -> int:
    opt = config.optimizer
    if opt.warmup_steps is not None:
        return int(opt.warmup_steps)
    return int(round(opt.warmup_epochs * steps_per_epoch))


def timm_cosine_lr(
    t: int,
    *,
    base: float,
    t_initial: int,
    lr_min: float,
    warmup_t: int,
    warmup_lr_init: float,
    warmup_prefix: bool = False,
) -> float:
    """timm's `CosineLRScheduler._get_lr(t)` for one cycle (t_mul 1, cycle_limit 1), as in
    timm 0.3.2-0.5.x: linear warm-up for t < warmup_t, then the cosine over t_initial
    (counted from 0 unless warmup_prefix), then lr_min."""
    if t < warmup_t:
        return warmup_lr_init + t * (base - warmup_lr_init) / warmup_t
    if warmup_prefix:
        t = t - warmup_t
    if t // t_initial >= 1:  # past the one cycle
        return lr_min
    return lr_min + 0.5 * (base - lr_min) * (1 + math.cos(math.pi * t / t_initial))


def onecycle_lr(
    progress: float, *, peak: float, pct: float, pct2: float, div: float, epochs: float
) -> float:
    """ConvMixer's `np.interp(progress, [0, E*pct, E*pct2, E], [0, peak, peak/div, 0])`,
    `progress` in epochs; the official train.py uses 2/5 and 4/5 of the epochs (integer
    division by 5 of 2E and 4E, as `onecycle_anchors` does)."""
    anchors = onecycle_anchors(epochs, pct, pct2)
    return float(np.interp(progress, anchors, [0.0, peak, peak / div, 0.0]))


def onecycle_anchors(epochs: float, pct: float, pct2: float) -> list[float]:
    """[0, E * pct, E * pct2, E]; with an integer epoch count and the official fifths,
    the official `epochs * 2 // 5` and `epochs * 4 // 5` (floor division)."""
    if float(epochs).is_integer() and (pct, pct2) == (0.4, 0.8):
        e = int(epochs)
        return [0.0, float(e * 2 // 5), float(e * 4 // 5), float(e)]
    return [0.0, epochs * pct, epochs * pct2, float(epochs)]


def _check(config: Any) -> None:
    opt = config.optimizer
    if opt.schedule not in SCHEDULES:
        raise ConfigError(
            f"config.optimizer.schedule={opt.schedule!r} is not a schedule; use one of "
            f"{', '.join(SCHEDULES)}."
        )
    if opt.schedule_unit not in UNITS:
        raise ConfigError(
            f"config.optimizer.schedule_unit={opt.schedule_unit!r}; use 'epoch' or 'step'."
        )
    if opt.schedule_lag not in (0, 1):
        raise ConfigError(
            f"config.optimizer.schedule_lag={opt.schedule_lag!r}; use 0 (timm's train.py) or "
            "1 (DeiT/Swin: the scheduler is stepped with the finished epoch/update)."
        )
    if opt.schedule == "onecycle":
        if not (0.0 < opt.onecycle_pct < 1.0 and 0.0 < opt.onecycle_pct2 < 1.0):
            raise ConfigError(
                f"config.optimizer.onecycle_pct={opt.onecycle_pct} and onecycle_pct2="
                f"{opt.onecycle_pct2} must lie in (0, 1) (fractions of the run)."
            )
        if opt.onecycle_pct >= opt.onecycle_pct2:
            raise ConfigError(
                f"config.optimizer.onecycle_pct={opt.onecycle_pct} must be below "
                f"onecycle_pct2={opt.onecycle_pct2} (the peak comes before the second anchor)."
            )
        if opt.onecycle_div <= 0:
            raise ConfigError(f"config.optimizer.onecycle_div={opt.onecycle_div}; use > 0.")


def _table(values: np.ndarray, steps_per_unit: int) -> optax.Schedule:
    table = jnp.asarray(np.asarray(values, np.float64).astype(np.float32))
    last = len(values) - 1

    def schedule(step):
        return table[jnp.clip(jnp.asarray(step) // steps_per_unit, 0, last)]

    return schedule


def timm_cosine_table(config: Any, total_steps: int, steps_per_epoch: int) -> np.ndarray:
    """The lr of every epoch (unit "epoch") or update (unit "step"), float64."""
    opt = config.optimizer
    per_epoch = opt.schedule_unit == "epoch"
    total_epochs = math.ceil(total_steps / steps_per_epoch)
    cycle_epochs = (
        opt.cycle_epochs if opt.cycle_epochs is not None else total_steps / steps_per_epoch
    )
    if per_epoch:
        units = total_epochs
        t_initial = int(round(cycle_epochs))
        warmup_t = int(round(opt.warmup_epochs)) if opt.warmup_steps is None else 0
        if opt.warmup_steps is not None:
            raise ConfigError(
                "config.optimizer.warmup_steps is set but schedule_unit='epoch' counts the "
                "warm-up in epochs: set warmup_epochs (and warmup_steps=None)."
            )
    else:  # Swin: num_steps = int(EPOCHS * n_iter_per_epoch), the warm-up likewise
        units = total_steps
        t_initial = int(cycle_epochs * steps_per_epoch)
        warmup_t = (
            int(opt.warmup_steps)
            if opt.warmup_steps is not None
            else int(opt.warmup_epochs * steps_per_epoch)
        )
    if t_initial <= 0 and opt.cycle_epochs is not None:
        raise ConfigError(
            f"config.optimizer.cycle_epochs={opt.cycle_epochs}: the cycle is empty; give at "
            "least 1 (or None: the run's length)."
        )
    if t_initial <= 0:  # a run shorter than the unit the cosine steps in
        raise ConfigError(
            f"config.total_steps={total_steps} is {total_steps / steps_per_epoch:.2g} of an "
            f"epoch ({steps_per_epoch} steps an epoch), and this cosine schedule sets its lr "
            f"once an epoch: give config.total_steps={steps_per_epoch} or more, or "
            "config.optimizer.schedule_unit=step (a cosine over the updates)."
        )
    kwargs = dict(
        base=peak_learning_rate(config),
        t_initial=t_initial,
        lr_min=opt.min_lr,
        warmup_t=warmup_t,
        warmup_lr_init=opt.warmup_init_lr,
        warmup_prefix=bool(opt.warmup_prefix),
    )
    lag = int(opt.schedule_lag)
    return np.array([timm_cosine_lr(max(u - lag, 0), **kwargs) for u in range(units)])


def onecycle_table(config: Any, total_steps: int, steps_per_epoch: int) -> np.ndarray:
    """Per update k: the one-cycle lr at epoch + (batch + 1) / steps, as ConvMixer's
    train.py sets it before each update."""
    opt = config.optimizer
    epochs = total_steps / steps_per_epoch
    if float(epochs).is_integer():
        epochs = int(epochs)
    peak = peak_learning_rate(config)
    k = np.arange(total_steps)
    progress = k // steps_per_epoch + (k % steps_per_epoch + 1) / steps_per_epoch
    anchors = onecycle_anchors(epochs, opt.onecycle_pct, opt.onecycle_pct2)
    return np.interp(progress, anchors, [0.0, peak, peak / opt.onecycle_div, 0.0])


def linear_table(config: Any, total_steps: int, steps_per_epoch: int) -> np.ndarray:
    """big_vision: lr(step) = (end + (peak - end) * (1 - progress)) * min(1, step / warmup),
    progress = clip((step - warmup) / (total - warmup), 0, 1)."""
    opt = config.optimizer
    warmup = min(warmup_steps(config, steps_per_epoch), total_steps)
    peak, end = peak_learning_rate(config), opt.min_lr
    step = np.arange(total_steps, dtype=np.float64)
    progress = np.clip((step - warmup) / max(total_steps - warmup, 1), 0.0, 1.0)
    lr = end + (peak - end) * (1.0 - progress)
    if warmup:
        lr = lr * np.minimum(1.0, step / warmup)
    return lr


def learning_rate_schedule(config: Any, total_steps: int, steps_per_epoch: int) -> optax.Schedule:
    """step -> learning rate for a run of `total_steps` updates (see the module docstring)."""
    _check(config)
    opt = config.optimizer
    peak = peak_learning_rate(config)
    if opt.schedule == "timm_cosine":
        values = timm_cosine_table(config, total_steps, steps_per_epoch)
        return _table(values, steps_per_epoch if opt.schedule_unit == "epoch" else 1)
    if opt.schedule == "onecycle":
        return _table(onecycle_table(config, total_steps, steps_per_epoch), 1)
    if opt.schedule == "linear":
        return _table(linear_table(config, total_steps, steps_per_epoch), 1)
    warmup = min(warmup_steps(config, steps_per_epoch), total_steps)
    if opt.schedule == "constant":
        return optax.join_schedules(
            [
                optax.linear_schedule(opt.warmup_init_lr, peak, max(warmup, 1)),
                optax.constant_schedule(peak),
            ],
            [warmup],
        )
    return optax.warmup_cosine_decay_schedule(
        init_value=opt.warmup_init_lr,
        peak_value=peak,
        warmup_steps=warmup,
        decay_steps=max(total_steps, warmup + 1),
        end_value=opt.min_lr,
    )
