"""The recipe pieces the official configs switch on: big_vision's sigmoid loss and head
bias, each family's weight-decay rule, and every family config's recipe keys."""

import importlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from smlp_jax.train import optim, state, step
from smlp_jax.train.errors import ConfigError
from tests.train.tiny import demo_config, official_config


def test_sigmoid_xent_is_big_visions_formula():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(4, 7)).astype(np.float32) * 3
    targets = rng.dirichlet(np.ones(7), size=4).astype(np.float32)  # mixed soft targets
    # big_vision.utils.sigmoid_xent: -sum(labels * log_sigmoid + (1 - labels) *
    # log_sigmoid(-logits), axis=-1), then the mean over the batch.
    log_p = -np.log1p(np.exp(-logits.astype(np.float64)))
    log_not_p = -np.log1p(np.exp(logits.astype(np.float64)))
    want = -np.sum(targets * log_p + (1 - targets) * log_not_p, axis=-1).mean()
    got = step.loss_function("sigmoid_xent")(jnp.asarray(logits), jnp.asarray(targets))
    np.testing.assert_allclose(float(got), want, rtol=1e-6)
    with pytest.raises(ConfigError, match="config.loss='bce' is not a loss; use one of"):
        step.loss_function("bce")


def test_head_bias_init_sets_only_the_classifier_bias():
    config = demo_config("mixer", {"head_bias_init": -6.9})
    fresh = state.init_state(config, 10, optim.make_optimizer(config, lambda s: 1e-3))
    np.testing.assert_array_equal(fresh["params"]["head"]["bias"], np.full(10, -6.9, np.float32))
    plain = demo_config("mixer", {})
    base = state.init_state(plain, 10, optim.make_optimizer(plain, lambda s: 1e-3))
    head, base_head = fresh["params"]["head"], base["params"]["head"]
    np.testing.assert_array_equal(head["kernel"], base_head["kernel"])
    with pytest.raises(ConfigError, match="classifier has no bias"):
        state.with_head_bias({"head": {"kernel": jnp.zeros((2, 2))}}, -6.9)


def _names(mask) -> dict[str, bool]:
    flat = jax.tree_util.tree_flatten_with_path(mask)[0]
    return {"/".join(str(getattr(k, "key", k)) for k in path): bool(v) for path, v in flat}


def test_decay_rules_pick_the_official_parameters():
    params = {
        "stem": {"kernel": jnp.zeros((3, 3, 3, 8)), "bias": jnp.zeros(8)},
        "norm": {"scale": jnp.zeros(8), "bias": jnp.zeros(8)},
        "pos_embed": jnp.zeros((1, 4, 8)),
        "layer_scale": jnp.zeros(8),
        "head": {"kernel": jnp.zeros((8, 10)), "bias": jnp.zeros(10)},
    }
    timm = _names(optim.decay_mask(params, "timm"))
    assert {k for k, v in timm.items() if v} == {"stem/kernel", "pos_embed", "head/kernel"}
    kernels = _names(optim.decay_mask(params, "kernels"))  # big_vision '.*/kernel$'
    assert {k for k, v in kernels.items() if v} == {"stem/kernel", "head/kernel"}
    assert all(_names(optim.decay_mask(params, "all")).values())  # RaftMLP: AdamW on all
    skipped = _names(optim.decay_mask(params, "timm", ("pos_embed",)))
    assert not skipped["pos_embed"] and skipped["stem/kernel"]


# Each family config's recipe keys, as its docstring maps them from the official code.
RECIPES = {
    ("smlpnet", "t"): dict(schedule="timm_cosine", schedule_unit="epoch", schedule_lag=1,
                           cycle_epochs=None, total_epochs=300.0, decay_rule="timm",
                           loss="softmax_xent", ema=0.99996, repeated_aug=3),
    ("mixer", "b16"): dict(schedule="linear", warmup_steps=10_000, min_lr=1e-8, lr=1e-3,
                           weight_decay=0.1, decay_rule="kernels", loss="sigmoid_xent",
                           head_bias_init=-6.9, mixup_mode="big_vision", mixup_alpha=0.5,
                           cutmix_alpha=0.0, train_split="train[:99%]"),
    ("convmixer", "1536_20"): dict(schedule="onecycle", lr=0.01, eps=1e-3, grad_clip=1.0,
                                   total_epochs=150.0, interpolation="random", crop_pct=0.96),
    ("convmixer", "768_32"): dict(schedule="onecycle", total_epochs=300.0),
    ("permutator", "s7"): dict(schedule="timm_cosine", schedule_unit="epoch", schedule_lag=0,
                               cycle_epochs=300.0, total_epochs=310.0, warmup_epochs=20.0,
                               ema=0.0, crop_pct=0.9, interpolation="random"),
    ("permutator", "l7"): dict(crop_pct=0.875),
    ("dynamixer", "s"): dict(schedule="timm_cosine", schedule_unit="epoch", schedule_lag=0,
                             cycle_epochs=300.0, total_epochs=310.0, ema=0.99996,
                             interpolation="random"),
    ("as_mlp", "t"): dict(schedule="timm_cosine", schedule_unit="step", schedule_lag=1,
                          warmup_init_lr=1e-6, min_lr=1e-5, grad_clip=5.0, ema=0.0),
    ("hire_mlp", "t"): dict(schedule="timm_cosine", schedule_unit="epoch", schedule_lag=1,
                            cycle_epochs=300.0, total_epochs=310.0, crop_pct=0.875,
                            repeated_aug=3, ema=0.0),
    ("raft_mlp", "s"): dict(schedule="cosine", warmup_init_lr=0.0, decay_rule="all",
                            cutmix_alpha=0.8, interpolation="bilinear", seed=42),
}  # fmt: skip

_KEYS = {
    "lr": "optimizer.lr", "eps": "optimizer.eps", "weight_decay": "optimizer.weight_decay",
    "schedule": "optimizer.schedule", "schedule_unit": "optimizer.schedule_unit",
    "schedule_lag": "optimizer.schedule_lag", "cycle_epochs": "optimizer.cycle_epochs",
    "warmup_epochs": "optimizer.warmup_epochs", "warmup_steps": "optimizer.warmup_steps",
    "warmup_init_lr": "optimizer.warmup_init_lr", "min_lr": "optimizer.min_lr",
    "decay_rule": "optimizer.decay_rule", "ema": "ema.decay", "mixup_mode": "mixup.mode",
    "mixup_alpha": "mixup.mixup_alpha", "cutmix_alpha": "mixup.cutmix_alpha",
    "repeated_aug": "input.repeated_aug", "interpolation": "input.interpolation",
    "crop_pct": "input.crop_pct", "train_split": "input.train_split",
}  # fmt: skip


@pytest.mark.parametrize(("family", "variant"), sorted(RECIPES))
def test_family_configs_hold_their_official_recipe(family, variant):
    config = official_config(family, variant)
    for key, want in RECIPES[(family, variant)].items():
        node = config
        for part in _KEYS.get(key, key).split("."):
            node = node[part]
        assert node == pytest.approx(want) if isinstance(want, float) else node == want, key
    # The docstring maps the official settings and names what still differs.
    doc = " ".join(importlib.import_module(f"configs.{family}").__doc__.split())
    assert "the key that holds it" in doc and "Remaining differences" in doc
