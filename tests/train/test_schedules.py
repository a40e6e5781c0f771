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


def test_a_run_shorter_than_the_epoch_the_cosine_steps_in_says_what_to_do():
    """A few steps of an epoch-unit recipe (e.g. a quick try of configs/smlpnet.py:t)."""
    with pytest.raises(ConfigError) as err:
        schedules.learning_rate_schedule(_timm_config(), 2, 500)
    assert str(err.value) == (
        "config.total_steps=2 is 0.004 of an epoch (500 steps an epoch), and this cosine "
        "schedule sets its lr once an epoch: give config.total_steps=500 or more, or "
        "config.optimizer.schedule_unit=step (a cosine over the updates)."
    )
    with pytest.raises(ConfigError, match="cycle_epochs=0.2: the cycle is empty; give at least"):
        schedules.learning_rate_schedule(_timm_config(**{"optimizer.cycle_epochs": 0.2}), 30, 3)
    step_unit = _timm_config(**{"optimizer.schedule_unit": "step", "optimizer.warmup_epochs": 0})
    assert float(schedules.learning_rate_schedule(step_unit, 2, 500)(0)) > 0


# Every family's full official schedule. `schedules_official.npz` comes from the official
# scheduler classes stepped as each official loop steps them
# (reference/make_schedule_fixture.py); ConvMixer's and big_vision's schedules are
# functions in their training scripts, transcribed below.
OFFICIAL = "tests/fixtures/schedules_official.npz"


@pytest.mark.parametrize(
    ("family", "variant", "key"),
    [("permutator", "s7", "vip"), ("dynamixer", "s", "dynamixer"), ("hire_mlp", "t", "hire_mlp")],
)
def test_every_epoch_of_the_timm_train_py_schedules(family, variant, key):
    with np.load(OFFICIAL) as f:
        official = f[f"{key}/lr"].astype(np.float32)
    config = official_config(family, variant)
    spe = 4  # constant within an epoch: any epoch length shows it
    assert len(official) == config.total_epochs == 310  # 300 + timm's 10 cool-down epochs
    schedule = schedules.learning_rate_schedule(config, 310 * spe, spe)
    np.testing.assert_array_equal(lrs_at(schedule, [e * spe for e in range(310)]), official)
    np.testing.assert_array_equal(lrs_at(schedule, [e * spe + 3 for e in range(310)]), official)


def test_every_update_of_as_mlps_swin_schedule():
    with np.load(OFFICIAL) as f:
        official, spe = f["as_mlp/lr"].astype(np.float32), int(f["as_mlp/steps_per_epoch"])
    schedule = schedules.learning_rate_schedule(official_config("as_mlp", "t"), 300 * spe, spe)
    np.testing.assert_array_equal(lrs_at(schedule, range(300 * spe)), official)
    assert official[0] == official[1] == np.float32(1e-6)  # step_update after the update


def test_every_update_of_raft_mlps_ignite_schedule():
    with np.load(OFFICIAL) as f:
        official, spe = f["raft_mlp/lr"], int(f["raft_mlp/steps_per_epoch"])
    schedule = schedules.learning_rate_schedule(official_config("raft_mlp", "s"), 305 * spe, spe)
    ours = lrs_at(schedule, range(305 * spe))
    assert ours[0] == official[0] == 0.0
    # optax's warm-up cosine computes in float32: equal to a few float32 ulps of the peak.
    np.testing.assert_allclose(ours, official, rtol=0, atol=3e-7 * 2e-3)


def test_every_update_of_convmixers_onecycle():
    config = official_config("convmixer", "1536_20")
    epochs, spe, lr = 150, 7, 0.01
    schedule = schedules.learning_rate_schedule(config, epochs * spe, spe)
    # ConvMixer's train.py, before update i of epoch e:
    #   lr_schedule = lambda t: np.interp([t], [0, E*2//5, E*4//5, E], [0, lr, lr/20.0, 0])[0]
    #   lr = lr_schedule(epoch + (i + 1) / len(loader))
    want = [
        np.interp([e + (i + 1) / spe], [0, epochs * 2 // 5, epochs * 4 // 5, epochs],
                  [0, lr, lr / 20.0, 0])[0]
        for e in range(epochs) for i in range(spe)
    ]  # fmt: skip
    np.testing.assert_array_equal(lrs_at(schedule, range(epochs * spe)), np.float32(want))


def test_every_update_of_big_visions_linear_schedule():
    config = official_config("mixer", "b16")
    spe, epochs = 40, 300  # 12,000 updates, 10,000 of them warm-up
    total = spe * epochs
    schedule = schedules.learning_rate_schedule(config, total, spe)

    # big_vision utils.create_learning_rate_schedule(decay_type="linear", warmup_steps=10k,
    # linear_end=1e-5) times config.lr = 1e-3 (bv_optax scales by lr):
    def big_vision(dtype):
        step = np.arange(total, dtype=dtype)
        progress = np.clip((step - 10_000) / dtype(total - 10_000), 0.0, 1.0)
        mult = dtype(1e-5) + (dtype(1) - dtype(1e-5)) * (dtype(1) - progress)
        return dtype(1e-3) * mult * np.minimum(dtype(1), step / dtype(10_000))

    ours = lrs_at(schedule, range(total))
    np.testing.assert_array_equal(ours, big_vision(np.float64).astype(np.float32))
    # big_vision runs it in float32 (jnp): the same to a few float32 ulps of the peak.
    np.testing.assert_allclose(ours, big_vision(np.float32), rtol=0, atol=3e-7 * 1e-3)
    assert float(schedule(0)) == 0.0  # the first update: count 0 -> lr 0
