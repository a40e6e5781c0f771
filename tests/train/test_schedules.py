"""Learning-rate schedules with the official arithmetic, and bad schedule settings.

`sched/*` in tests/fixtures/recipe_smlpnet.npz comes from the official code
(reference/make_recipe_fixture.py): SPACH's 300 epochs from timm 0.3.2's
create_scheduler stepped as SPACH's main.py steps it.
"""

import math

import numpy as np
import pytest

from smlp_jax.train import schedules
from smlp_jax.train.errors import ConfigError
from tests.train.tiny import apply_overrides, demo_config, official_config

FIXTURE = "tests/fixtures/recipe_smlpnet.npz"


def lrs_at(schedule, steps):
    return np.array([float(schedule(s)) for s in steps], np.float32)


def test_spach_schedule_every_epoch_is_the_official_one():
    with np.load(FIXTURE) as f:
        official = f["sched/spach"].astype(np.float32)
    config = official_config("smlpnet", "t")
    spe = 1251  # ImageNet-1k through the 8-replica sampler at batch 1024
    schedule = schedules.learning_rate_schedule(config, 300 * spe, spe)
    first = lrs_at(schedule, [e * spe for e in range(300)])
    last = lrs_at(schedule, [e * spe + spe - 1 for e in range(300)])
    np.testing.assert_array_equal(first, official)
    np.testing.assert_array_equal(last, official)  # constant within an epoch
    # What the reading of SPACH says: epochs 0 and 1 at warmup_lr, peak never hit.
    assert official[0] == official[1] == np.float32(1e-6)
    assert official.max() < np.float32(1e-3)


def _timm_config(**changes):
    config = demo_config("smlpnet", {"optimizer.warmup_steps": None})
    return apply_overrides(
        config,
        {
            "optimizer.schedule": "timm_cosine",
            "optimizer.lr": 1.0,
            "optimizer.lr_base_batch": 0,
            "optimizer.warmup_init_lr": 0.1,
            "optimizer.min_lr": 0.01,
            "optimizer.warmup_epochs": 2.0,
            **changes,
        },
    )


def test_timm_cosine_lag_prefix_and_cooldown():
    def timm(t, t_initial=10, prefix=False):
        if t < 2:
            return 0.1 + t * 0.9 / 2
        t = t - 2 if prefix else t
        if t >= t_initial:
            return 0.01
        return 0.01 + 0.5 * 0.99 * (1 + math.cos(math.pi * t / t_initial))

    spe = 3
    # timm's train.py: epoch e runs at the value for e (lag 0), 12 epochs, a 10-epoch cycle.
    config = _timm_config(**{"optimizer.schedule_lag": 0, "optimizer.cycle_epochs": 10.0})
    sched = schedules.learning_rate_schedule(config, 12 * spe, spe)
    np.testing.assert_allclose(
        lrs_at(sched, range(0, 36, 3)), [timm(e) for e in range(12)], rtol=1e-6
    )
    # warmup_prefix: the cosine starts after the warm-up and reaches the peak.
    config = _timm_config(**{"optimizer.warmup_prefix": True, "optimizer.schedule_lag": 0})
    sched = schedules.learning_rate_schedule(config, 12 * spe, spe)
    assert float(sched(2 * spe)) == pytest.approx(1.0)
    # Per update (Swin): update k runs at timm's value for k - 1, cycle in updates.
    config = _timm_config(**{"optimizer.schedule_unit": "step", "optimizer.warmup_epochs": 1.0})
    sched = schedules.learning_rate_schedule(config, 4 * spe, spe)
    want = [0.1] + [
        schedules.timm_cosine_lr(
            k - 1, base=1.0, t_initial=12, lr_min=0.01, warmup_t=3, warmup_lr_init=0.1
        )
        for k in range(1, 12)
    ]
    np.testing.assert_allclose(lrs_at(sched, range(12)), want, rtol=1e-6)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"optimizer.schedule": "cosine_restarts"}, "is not a schedule; use one of"),
        ({"optimizer.schedule_unit": "iteration"}, "use 'epoch' or 'step'"),
        ({"optimizer.schedule_lag": 2}, "schedule_lag=2"),
        (
            {"optimizer.schedule": "onecycle", "optimizer.onecycle_pct": 1.5},
            r"must lie in \(0, 1\)",
        ),
        (
            {"optimizer.schedule": "onecycle", "optimizer.onecycle_pct": 0.0},
            r"must lie in \(0, 1\)",
        ),
        ({"optimizer.warmup_steps": 5}, "warmup_steps is set but schedule_unit='epoch'"),
    ],
)
def test_bad_schedule_settings_say_what_to_do(changes, message):
    config = _timm_config(**changes)
    with pytest.raises(ConfigError, match=message):
        schedules.learning_rate_schedule(config, 30, 3)
