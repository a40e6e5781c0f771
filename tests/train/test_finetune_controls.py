"""Fine-tuning controls (smlp_jax.train.optim): layer-wise lr decay by the BEiT/timm rule,
per-parameter lr multipliers and freezing by regex, and their one-line errors."""

import jax
import numpy as np
import optax
import pytest
from flax import nnx

from smlp_jax.models import layer_depth
from smlp_jax.train import checkpoint, cli, optim, state, trainer
from smlp_jax.train.sharding import path_name
from tests.train.test_config_keys import FAMILY_CONFIGS
from tests.train.tiny import apply_overrides, demo_config, official_config, tiny_config


def _leaves(tree) -> dict[str, np.ndarray]:
    return {path_name(p): np.asarray(v) for p, v in jax.tree_util.tree_flatten_with_path(tree)[0]}


def _depths(expected, scales, decay, depth_max):
    """The depth each scale stands for, checked to be the rule's `decay ** (max - depth)`."""
    for name, scale in scales.items():
        want = decay ** (depth_max - expected(name))
        assert scale == pytest.approx(want, rel=1e-12), (name, scale, want)


def test_smlpnet_layer_decay_follows_timms_rule():
    """sMLPNet, stages of 2 and 1 blocks. timm's rule written out by hand as a matcher
    would give it (ConvNeXt's shape: `stem` 0; `stages.i.downsample` joins block 0 of its
    stage; then each block in order; the final norm joins the last block, `(99999,)`; the
    head, unmatched, last): stem 0, stages.0.0 1, stages.0.1 2, (stems.1, stages.1.0,
    norm) 3, head 4; scale 0.5 ** (4 - depth)."""
    config = tiny_config("/unused", **{"model_kwargs.depths": (2, 1), "optimizer.layer_decay": 0.5})

    def expected(name: str) -> int:
        for prefixes, depth in (
            (("stems/0/",), 0),
            (("stages/0/0/",), 1),
            (("stages/0/1/",), 2),
            (("stems/1/", "stages/1/0/", "norm/"), 3),
            (("head/",), 4),
        ):
            if name.startswith(prefixes):
                return depth
        raise AssertionError(f"{name} is in no group of the rule")

    scales = optim.lr_scales(config)
    assert {expected(n) for n in scales} == {0, 1, 2, 3, 4}  # every group is there
    _depths(expected, scales, 0.5, 4)
    assert scales["head/kernel"] == 1.0 and scales["stems/0/kernel"] == 0.5**4


def test_mixer_layer_decay_follows_timms_group_matcher():
    """timm's MlpMixer.group_matcher: stem=r'^stem', blocks=[(r'^blocks\\.(\\d+)', None),
    (r'^norm', (99999,))], the head unmatched. group_with_matcher numbers the groups stem 0,
    blocks.i i + 1, norm with the last block (MATCH_PREV_GROUP), head last; with 3 blocks:
    num_layers 5, layer_max 4, scale decay ** (4 - id)."""
    config = demo_config("mixer", {"model_kwargs.num_blocks": 3, "optimizer.layer_decay": 0.75})

    def expected(name: str) -> int:
        if name.startswith("stem/"):
            return 0
        if name.startswith("blocks/"):
            return int(name.split("/")[1]) + 1
        if name.startswith("norm/"):
            return 3
        assert name.startswith("head/"), name
        return 4

    _depths(expected, optim.lr_scales(config), 0.75, 4)


@pytest.mark.parametrize(("family", "variants"), FAMILY_CONFIGS, ids=[f for f, _ in FAMILY_CONFIGS])
def test_every_family_has_depths_from_stem_to_head(family, variants):
    """Every family's demo model: the stem at depth 0, every depth 0..max used, the head
    alone at the top (scale 1), blocks in the order they run."""
    del variants
    config = demo_config(family, {})
    net = nnx.eval_shape(lambda: state.build_model(config, 10, 0))
    net.eval()
    depths, depth_max = layer_depth.param_depths(net, config.image_size)
    assert set(depths.values()) == set(range(depth_max + 1)), family
    assert {n for n, d in depths.items() if d == depth_max} == {
        n for n in depths if n.startswith(state.head_name(config.model) + "/")
    }
    blocks = [n for n in depths if n.split("/")[0] in ("blocks", "stages", "network", "levels")]
    assert all(0 < depths[n] < depth_max for n in blocks), family


def _updates(config, params):
    tx = optim.make_optimizer(config, optax.constant_schedule(1e-2))
    grads = jax.tree.map(lambda p: np.ones_like(p) * 0.1, params)
    updates, _ = jax.jit(tx.update)(grads, tx.init(params), params)
    return _leaves(updates)


def test_layer_decay_and_lr_mults_scale_each_update():
    """The update of each parameter is the plain AdamW update times its scale: layer decay
    times the first matching lr_mults pattern (weight decay included, as a torch group's lr)."""
    base = tiny_config("/unused")
    params = state.split(state.build_model(base, 10, 0))[1]
    plain = _updates(base, params)
    mults = (("head/.*", 10.0), (".*/bias", 0.0), ("head/kernel", 3.0))  # first match wins
    tuned = tiny_config("/unused", **{"optimizer.layer_decay": 0.5, "optimizer.lr_mults": mults})
    scaled = _updates(tuned, params)
    scales = optim.lr_scales(tuned)
    assert scales["head/kernel"] == 10.0 and scales["head/bias"] == 10.0
    assert scales["stems/0/kernel"] == 0.5**3 and scales["norm/bias"] == 0.0
    for name, update in plain.items():
        np.testing.assert_allclose(scaled[name], update * scales[name], rtol=1e-6, err_msg=name)
    # Off (None or 1.0): the plain optimiser, state and all (resumes keep working).
    off = tiny_config("/unused", **{"optimizer.layer_decay": 1.0})
    tx_off, tx_plain = (optim.make_optimizer(c, 1e-3) for c in (off, base))
    assert jax.tree.structure(tx_off.init(params)) == jax.tree.structure(tx_plain.init(params))


def test_sgd_with_momentum_is_torchs_sgd():
    """optimizer.name "sgd": three updates equal torch.optim.SGD's rule written out by hand
    (global-norm clipping first, L2 decay on the masked parameters added to the gradient,
    b <- m b + g, p <- p - lr b); weight decay 0 and momentum 0 keep no state at all, and
    momentum_dtype sets the buffer's dtype."""
    changes = {"optimizer.name": "sgd", "optimizer.weight_decay": 0.01, "grad_clip": 0.5}
    config = tiny_config("/unused", **changes)
    params = state.split(state.build_model(config, 10, 0))[1]
    tx = optim.make_optimizer(config, optax.constant_schedule(0.1))
    mask = _leaves(optim.decay_mask(params, "timm"))
    want, buf = _leaves(params), {}
    opt_state, got = tx.init(params), params
    rng = np.random.default_rng(0)
    for _ in range(3):
        grads = jax.tree.map(lambda p: rng.normal(size=p.shape).astype(np.float32), got)
        flat = _leaves(grads)
        norm = np.sqrt(sum(float(np.sum(g.astype(np.float64) ** 2)) for g in flat.values()))
        scale = min(1.0, 0.5 / norm)
        for name, g in flat.items():
            g = g * scale + (0.01 * want[name] if mask[name] else 0.0)
            buf[name] = 0.9 * buf.get(name, 0.0) + g
            want[name] = want[name] - 0.1 * buf[name]
        updates, opt_state = jax.jit(tx.update)(grads, opt_state, got)
        got = optax.apply_updates(got, updates)
    for name, value in _leaves(got).items():
        np.testing.assert_allclose(value, want[name], rtol=1e-5, atol=1e-6, err_msg=name)
    plain = tiny_config(
        "/unused", **{**changes, "optimizer.momentum": 0.0, "optimizer.weight_decay": 0.0}
    )
    assert not [x for x in jax.tree.leaves(optim.make_optimizer(plain, 0.1).init(params)) if x.ndim]
    bf16 = tiny_config("/unused", **{**changes, "optimizer.momentum_dtype": "bfloat16"})
    buffers = [x for x in jax.tree.leaves(optim.make_optimizer(bf16, 0.1).init(params)) if x.ndim]
    assert buffers and {x.dtype for x in buffers} == {np.dtype("bfloat16")}


def test_sgd_trains_checkpoints_and_resumes(demo_data_dir, tmp_path):
    """vit_jax's optimiser settings in a run (SGD, bfloat16 momentum, clipping, 2
    micro-batches): it trains, its checkpoint holds the bfloat16 buffers, and a resume
    continues from them."""
    changes = {
        "optimizer.name": "sgd",
        "optimizer.lr": 0.05,
        "optimizer.weight_decay": 0.0,
        "optimizer.momentum_dtype": "bfloat16",
        "grad_clip": 1.0,
        "grad_accum_steps": 2,
        "checkpoint_every": 2,
    }
    trainer.train_and_evaluate(tiny_config(demo_data_dir, total_steps=2, **changes), str(tmp_path))
    config = tiny_config(demo_data_dir, total_steps=3, allow_changes="total_steps", **changes)
    final = trainer.train_and_evaluate(config, str(tmp_path))
    assert final["step"] == 3 and np.isfinite(final["train/loss"])
    setup = trainer.build(config)
    with checkpoint.Checkpointer(str(tmp_path), async_save=False, read_only=True) as ckpt:
        step, restored, _ = ckpt.restore(setup.abstract)
    buffers = [v for v in jax.tree.leaves(restored["opt_state"]) if np.ndim(v)]
    assert (
        step == 3 and buffers and {np.asarray(v).dtype for v in buffers} == {np.dtype("bfloat16")}
    )


FROZEN = ("stems/.*", "stages/0/.*")


def test_frozen_parameters_stay_bit_identical_and_have_no_optimiser_state(demo_data_dir, tmp_path):
    """4 steps with the stem and stage 0 frozen (and layer decay on the rest): the frozen
    parameters of the saved checkpoint equal the initial ones bit for bit, the others
    moved; the optimiser state holds moments for the trained parameters only."""
    config = tiny_config(
        demo_data_dir,
        total_steps=4,
        checkpoint_every=0,
        **{"optimizer.freeze": FROZEN, "optimizer.layer_decay": 0.8},
    )
    trainer.train_and_evaluate(config, str(tmp_path))
    setup = trainer.build(config)
    initial = _leaves(trainer.create_state(setup.make_state, setup.shardings)["params"])
    with checkpoint.Checkpointer(str(tmp_path), async_save=False, read_only=True) as ckpt:
        step, restored, _ = ckpt.restore(setup.abstract)  # the resume path, MaskedNodes too
    assert step == 4
    trained = _leaves(restored["params"])
    frozen = {n for n in trained if n.startswith(("stems/", "stages/0/"))}
    assert frozen and len(frozen) < len(trained)
    for name in trained:
        same = np.array_equal(trained[name].view(np.uint32), initial[name].view(np.uint32))
        assert same == (name in frozen), name
    moments = [n for n in _leaves(restored["opt_state"]) if n.endswith(("kernel", "bias"))]
    assert moments and not [n for n in moments if "stems/" in n or "stages/0/" in n]
    param_floats = sum(v.size for n, v in trained.items() if n not in frozen)
    state_floats = sum(v.size for v in _leaves(restored["opt_state"]).values() if v.ndim)
    assert state_floats == 2 * param_floats  # mu and nu of the trained parameters, nothing else


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"optimizer.layer_decay": 0.0}, "config.optimizer.layer_decay=0.0; use a value in (0, 1]"),
        ({"optimizer.layer_decay": 1.5}, "config.optimizer.layer_decay=1.5; use a value in (0, 1]"),
        ({"optimizer.freeze": ("blocks/.*",)}, "freeze: 'blocks/.*' matches no parameter"),
        ({"optimizer.lr_mults": (("head", 2.0),)}, "lr_mults: 'head' matches no parameter"),
        ({"optimizer.lr_mults": (("head/.*",),)}, "give (regex, multiplier >= 0) pairs"),
        ({"optimizer.freeze": (".*",)}, "freeze matches every parameter: nothing would train"),
        ({"optimizer.freeze": ("(",)}, "config.optimizer.freeze: bad regular expression"),
        ({"optimizer.name": "adam"}, "config.optimizer.name='adam'; use one of adamw, sgd."),
        (
            {"optimizer.name": "sgd", "optimizer.momentum": 1.0},
            "config.optimizer.momentum=1.0; use a value in [0, 1)",
        ),
        (
            {"optimizer.name": "sgd", "optimizer.momentum_dtype": "float16"},
            "config.optimizer.momentum_dtype='float16'; use one of float32, bfloat16.",
        ),
    ],
)
def test_bad_fine_tuning_input_is_one_line_before_training(
    demo_data_dir, tmp_path, capsys, changes, expected
):
    assert cli.run(tiny_config(demo_data_dir, **changes), str(tmp_path)) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err, err
    assert expected in err, err
    assert not (tmp_path / "checkpoints").exists()


def test_the_finetune_demo_config_starts_from_a_demo_checkpoint(trained_demo_run, tmp_path):
    """configs/smlpnet.py:finetune_demo on the tiny trained run (the `make demo` checkpoint's
    stand-in, 16 px): loaded through init_from, resampled to 32 px, trained with layer decay."""
    source, tiny = trained_demo_run
    keep = ("data_dir", "model_kwargs.dim", "model_kwargs.depths", "input.num_workers")
    changes = {k: tiny[k] for k in keep}
    changes.update(
        {
            "init_from": str(source),
            "image_size": 32,
            "input.eval_split": "test[:200]",
            "total_steps": 2,
            "log_every": 1,
            "eval_every": 0,
            "checkpoint_every": 0,
        }
    )
    config = apply_overrides(official_config("smlpnet", "finetune_demo"), changes)
    assert config.optimizer.layer_decay == 0.75 and config.init_resample_to_grid
    final = trainer.train_and_evaluate(config, str(tmp_path))
    assert final["step"] == 2 and "eval/top1" in final
    stems = []
    for cfg, where in ((demo_config("smlpnet", tiny), source), (config, tmp_path)):
        setup = trainer.build(cfg)
        with checkpoint.Checkpointer(str(where), async_save=False, read_only=True) as ckpt:
            stems.append(_leaves(ckpt.restore(setup.abstract)[1]["params"])["stems/0/kernel"])
    fresh = _leaves(trainer.create_state(setup.make_state, setup.shardings)["params"])
    # The stem (not grid-tied) came from the checkpoint and moved little (2 steps at the
    # smallest layer-decay rate); a fresh one is far from it.
    moved, other = (float(np.abs(x - stems[0]).max()) for x in (stems[1], fresh["stems/0/kernel"]))
    assert moved < 0.1 * other, (moved, other)


def test_frozen_batch_stats_stay_bit_identical_in_a_run(demo_data_dir, trained_demo_run, tmp_path):
    """3 steps of a head-only run with freeze_batch_stats: the saved BatchNorm statistics
    equal the initial ones bit for bit (a run without it moves them: the tiny run's)."""
    changes = {"optimizer.freeze": ("(?!head/).*",), "freeze_batch_stats": True}
    config = tiny_config(demo_data_dir, total_steps=3, checkpoint_every=0, **changes)
    trainer.train_and_evaluate(config, str(tmp_path))
    setup = trainer.build(config)
    initial = _leaves(trainer.create_state(setup.make_state, setup.shardings)["model_state"])
    with checkpoint.Checkpointer(str(tmp_path), async_save=False, read_only=True) as ckpt:
        step, restored, _ = ckpt.restore(setup.abstract)
    stats = _leaves(restored["model_state"])
    assert step == 3 and stats.keys() == initial.keys() and len(stats) > 4
    for name, value in stats.items():
        assert np.array_equal(value.view(np.uint32), initial[name].view(np.uint32)), name
    source, tiny = trained_demo_run
    with checkpoint.Checkpointer(str(source), async_save=False, read_only=True) as ckpt:
        restored = ckpt.restore(trainer.build(tiny_config(demo_data_dir)).abstract)[1]
    moved = _leaves(restored["model_state"])
    assert any(not np.array_equal(moved[n], v) for n, v in initial.items())


@pytest.mark.parametrize("freeze_batch_stats", [True, False])
def test_frozen_batch_stats_train_on_the_eval_mode_loss(demo_data_dir, freeze_batch_stats):
    """One jitted train step on a random batch: with freeze_batch_stats its loss is the
    eval-mode model's cross-entropy and the statistics come back unchanged, the EMA's
    too; without it, the loss is the train-mode (batch statistics) one and the statistics
    (and their EMA) move."""
    config = tiny_config(demo_data_dir, freeze_batch_stats=freeze_batch_stats, **{"ema.decay": 0.9})
    setup = trainer.build(config)
    state0 = trainer.create_state(setup.make_state, setup.shardings)
    images = jax.random.normal(jax.random.key(0), (8, 16, 16, 3)) * 2.0 + 0.5
    batch = {"image": images, "label": np.arange(8, dtype=np.int32) % 10}

    def xent(graph):
        model = nnx.merge(graph, state0["params"], state0["rngs"], state0["model_state"])
        logits = model(images)
        return float(optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"]).mean())

    eval_loss, train_mode_loss = xent(setup.graphs.eval), xent(setup.graphs.train)
    assert abs(eval_loss - train_mode_loss) > 1e-3  # the two modes differ on this batch
    before = _leaves(state0["model_state"])  # copied out: the step donates the state
    ema_before = _leaves(state0["ema"]["model_state"])
    assert ema_before.keys() == before.keys()
    step = trainer.make_train_step(
        config, setup.graphs, setup.tx, setup.schedule, setup.info.num_classes, setup.plan
    )
    state1, metrics, _ = jax.jit(step, donate_argnums=(0,))(state0, batch)
    loss = float(metrics.compute()["loss"])
    after = _leaves(state1["model_state"])
    same = [np.array_equal(after[n].view(np.uint32), before[n].view(np.uint32)) for n in before]
    ema_after = _leaves(state1["ema"]["model_state"])
    ema_same = [np.array_equal(ema_after[n].view(np.uint32), v.view(np.uint32))
                for n, v in ema_before.items()]  # fmt: skip
    if freeze_batch_stats:
        assert loss == pytest.approx(eval_loss, rel=1e-6, abs=1e-6) and all(same)
        assert all(ema_same)
    else:
        assert loss == pytest.approx(train_mode_loss, rel=1e-6, abs=1e-6) and not any(same)
        assert not any(ema_same)


def test_frozen_batch_stats_without_batchnorm_is_one_line(demo_data_dir, tmp_path, capsys):
    config = demo_config("mixer", {"data_dir": demo_data_dir, "freeze_batch_stats": True})
    assert cli.run(config, str(tmp_path)) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err, err
    assert "config.freeze_batch_stats=True but mixer_s16 has no BatchNorm statistics" in err
    assert not (tmp_path / "checkpoints").exists()
