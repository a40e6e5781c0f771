"""The fine-tuning configs against the official components they name: Mixer's
`finetune_b16` is vit_jax's fine-tuning optimiser and schedule (google-research/
vision_transformer, `vit_jax/train.py` and `utils.create_learning_rate_schedule`), and the
head-only / linear-probe configs train the classifier alone. Abstract: nothing trains."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from smlp_jax.train import optim, schedules, state
from tests.train.tiny import official_config


def vit_jax_learning_rate(total_steps, base, decay_type, warmup_steps, linear_end=1e-5):
    """vit_jax/utils.py `create_learning_rate_schedule`, as written there."""

    def step_fn(step):
        lr = base
        progress = (step - warmup_steps) / float(total_steps - warmup_steps)
        progress = jnp.clip(progress, 0.0, 1.0)
        if decay_type == "linear":
            lr = linear_end + (lr - linear_end) * (1.0 - progress)
        elif decay_type == "cosine":
            lr = lr * 0.5 * (1.0 + jnp.cos(jnp.pi * progress))
        if warmup_steps:
            lr = lr * jnp.minimum(1.0, step / warmup_steps)
        return jnp.asarray(lr, dtype=jnp.float32)

    return step_fn


def test_mixer_finetune_is_vit_jaxs_optimiser_and_schedule():
    """vit_jax's `tx = chain(clip_by_global_norm(1.0), sgd(lr_fn, momentum=0.9,
    accumulator_dtype='bfloat16'))` with base_lr 0.03, cosine, 500 warm-up steps of
    10,000: the same lr at every step and the same updates (momentum state included), to
    float32 rounding (optax's warm-up and vit_jax's round differently, < 1e-5)."""
    config = official_config("mixer", "finetune_b16")
    ours = schedules.learning_rate_schedule(config, config.total_steps, 1)
    official = vit_jax_learning_rate(config.total_steps, 0.03, "cosine", 500)
    steps = jnp.arange(config.total_steps)
    np.testing.assert_allclose(
        jax.vmap(ours)(steps), jax.vmap(official)(steps), rtol=1e-5, atol=1e-9
    )

    tx_official = optax.chain(
        optax.clip_by_global_norm(1.0),
        optax.sgd(learning_rate=official, momentum=0.9, accumulator_dtype="bfloat16"),
    )
    tx = optim.make_optimizer(config, ours)
    rng = np.random.default_rng(0)
    params = {
        "a": {"kernel": rng.normal(size=(5, 3)).astype(np.float32)},
        "b": np.ones(3, np.float32),
    }
    s_ours, s_official = tx.init(params), tx_official.init(params)
    for _ in range(600):  # into the cosine, past the warm-up
        grads = jax.tree.map(lambda p: rng.normal(size=p.shape).astype(np.float32) * 3, params)
        u_ours, s_ours = tx.update(grads, s_ours, params)
        u_official, s_official = tx_official.update(grads, s_official, params)
    for a, b in zip(jax.tree.leaves(u_ours), jax.tree.leaves(u_official), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5)


def test_mixer_finetune_names_only_released_weights():
    from configs import mixer  # the repo's configs package (tests run from the root)

    assert official_config("mixer", "finetune_l16").init_from == "Mixer-L_16.npz"
    released = "use finetune_s32, finetune_s16, finetune_b32, finetune_b16, finetune_l16."
    with pytest.raises(ValueError, match=f"no released weights for finetune_l32; {released}"):
        mixer.get_config("finetune_l32")


@pytest.mark.parametrize("name", ["head_only_demo", "linear_probe_demo"])
def test_head_only_configs_train_the_classifier_alone(name):
    config = official_config("smlpnet", name)
    model = nnx.eval_shape(lambda: state.build_model(config, 10, 0))
    params = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    frozen = jax.tree_util.tree_flatten_with_path(
        optim.frozen_mask(params, config.optimizer.freeze)
    )[0]
    trained = sorted("/".join(str(k.key) for k in path) for path, f in frozen if not f)
    assert trained == ["head/bias", "head/kernel"]
    assert config.init_resample_to_grid and config.image_size == 64
    if name == "linear_probe_demo":
        assert config.optimizer.name == "sgd" and config.optimizer.weight_decay == 0.0


@pytest.mark.parametrize(
    ("family", "variant", "backbone", "frozen"),
    [
        ("permutator", "finetune_s7", ("stages/", "downsamples/"), ("patch_embed/", "norm/")),
        ("dynamixer", "finetune_s", ("stem/", "network/"), ("norm/",)),
    ],
)
def test_cifar_transfer_groups_and_schedule(family, variant, backbone, frozen):
    """The repositories' transfer_learning.py: the backbone at 0.01 x lr, the head at lr,
    the parameters in no param group frozen; torch's CosineAnnealingLR(T_max=60,
    eta_min=2e-4) stepped after each epoch: epoch e at its closed form for e."""
    config = official_config(family, variant)
    scales = optim.lr_scales(config)
    names = list(scales)
    assert {n for n in names if scales[n] == 1.0} == {"head/kernel", "head/bias"} | {
        n for n in names if n.startswith(frozen)
    }
    assert all(scales[n] == 0.01 for n in names if n.startswith(backbone))
    model = nnx.eval_shape(lambda: state.build_model(config, 10, 0))
    params = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    mask = jax.tree_util.tree_flatten_with_path(optim.frozen_mask(params, config.optimizer.freeze))
    frozen_names = {"/".join(str(k.key) for k in p) for p, f in mask[0] if f}
    assert frozen_names == {n for n in names if n.startswith(frozen)} and frozen_names
    optim.make_optimizer(config, 0.01)  # every pattern matches, something trains
    steps_per_epoch = 50_000 // 128
    lr = schedules.learning_rate_schedule(config, 60 * steps_per_epoch, steps_per_epoch)
    for epoch in range(60):
        want = 2e-4 + (0.01 - 2e-4) * (1 + np.cos(np.pi * epoch / 60)) / 2
        for k in (0, steps_per_epoch - 1):
            assert float(lr(epoch * steps_per_epoch + k)) == pytest.approx(want, rel=1e-6)


@pytest.mark.parametrize(
    ("family", "variant"), [("mixer", "finetune_b16"), ("raft_mlp", "finetune_s")]
)
def test_transfer_configs_restart_the_head(family, variant):
    """vit_jax puts a new (zero) head in; RaftMLP's `initialize` pops the classifier."""
    assert official_config(family, variant).init_head == "fresh"


def test_raft_mlp_finetune_is_its_ignite_schedule():
    """okojoalg/raft-mlp `libs/train.py` for the finetune yamls: LinearCyclicalScheduler
    0 -> 1e-4 over the first half of a 2 x 10-epoch cycle, then CosineAnnealingScheduler
    1e-4 -> 1e-5 over 40 epochs, per iteration (195 an epoch: 50,000 // 256, drop_last),
    as ignite computes them; AdamW over every parameter at weight decay 1e-4."""
    config = official_config("raft_mlp", "finetune_s")
    spe = 50_000 // 256
    lr = schedules.learning_rate_schedule(config, 50 * spe, spe)
    warm, cos = 10 * spe, 40 * spe
    for it in [0, 1, 7, warm // 2, warm - 1, warm, warm + 1, warm + cos // 3, 50 * spe - 1]:
        if it < warm:  # ignite: start + (end - start) * (1 - |2 t / cycle - 1|), cycle 2 warm
            want = 1e-4 * (1 - abs(2 * it / (2 * warm) - 1))
        else:  # ignite: start + (end - start) / 2 * (1 - cos(pi * t / cycle))
            t = it - warm
            want = 1e-4 + (1e-5 - 1e-4) / 2 * (1 - np.cos(np.pi * t / cos))
        assert float(lr(it)) == pytest.approx(want, rel=1e-4, abs=1e-12), it  # float32
    assert config.optimizer.name == "adamw" and config.optimizer.decay_rule == "all"
    assert config.optimizer.weight_decay == 1e-4 and config.optimizer.lr_base_batch == 0
