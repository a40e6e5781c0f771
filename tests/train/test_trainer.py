"""The loop on one CPU device: it learns, it logs, and bad input is one clear line."""

import shutil
import subprocess
import threading
import time

import jax
import numpy as np
import pytest

from smlp_jax.train import checkpoint, cli, init_from, trainer
from smlp_jax.train.checkpoint.encoding import keys_to_data
from smlp_jax.train.metrics import InputWaitWarning, MetricsDamagedWarning, read_records
from smlp_jax.train.step import NO_BAD_STEP
from tests.train.tiny import (
    REPO,
    grey_class_folder,
    main_command,
    read_metrics,
    subprocess_env,
    tiny_config,
)


@pytest.fixture(scope="module")
def demo_run(demo_data_dir, tmp_path_factory):
    """40 steps of the tiny sMLPNet, evaluated at 20 and 40: (workdir, returned metrics)."""
    workdir = tmp_path_factory.mktemp("demo_run")
    config = tiny_config(
        demo_data_dir, total_steps=40, log_every=5, eval_every=20, checkpoint_every=20
    )
    return workdir, trainer.train_and_evaluate(config, str(workdir))


def test_short_demo_run_learns_and_logs(demo_run):
    workdir, final = demo_run
    entries = read_metrics(workdir)
    train = [e for e in entries if "train/loss" in e]
    evals = [e for e in entries if "eval/top1" in e]
    assert [e["step"] for e in train] == list(range(5, 41, 5))
    assert [e["step"] for e in evals] == [20, 40]
    for e in train:
        assert set(e) >= {"train/loss", "train/top1", "train/lr", "train/grad_norm"}
        assert e["train/img_per_sec"] > 0
        # Per device (one CPU device here) and MFU against the host's measured GEMM peak.
        assert e["train/img_per_sec_per_device"] == e["train/img_per_sec"]
        assert 0.0 < e["train/mfu"] < 1.0, e
        assert 0.0 <= e["train/input_wait"] <= 1.0, e
    assert train[-1]["train/loss"] < 0.7 * train[0]["train/loss"]
    # 10 classes: chance is 10%; 40 steps of a tiny sMLPNet reach far beyond it.
    assert evals[-1]["eval/top1"] > 0.5
    assert evals[-1]["eval/top5"] >= evals[-1]["eval/top1"]
    assert final["step"] == 40 and final["eval/top1"] == evals[-1]["eval/top1"]
    assert list((workdir / "tensorboard").glob("events.out.tfevents.*"))
    assert sorted(p.name for p in (workdir / "checkpoints").iterdir()) == ["20", "40"]
    # The input pipeline is closed at the end: no decoded-image cache still filling.
    assert not [t for t in threading.enumerate() if t.name == "decoded-cache"]


class _SlowBatches:
    """A train iterator that takes `delay` seconds a batch (its state methods pass through)."""

    def __init__(self, batches, delay: float):
        self.batches, self.delay = batches, delay

    def __iter__(self):
        return self

    def __next__(self):
        time.sleep(self.delay)
        return next(self.batches)

    def __getattr__(self, name):
        return getattr(self.batches, name)


def test_a_slow_input_shows_as_input_wait_and_one_warning(demo_data_dir, tmp_path, monkeypatch):
    """A pipeline slower than the step: the log's input wait is high, and one warning names
    the knobs, and on a CPU-only host that the input and the step share its cores."""
    create = trainer.data.create_train_iterator
    monkeypatch.setattr(
        trainer.data, "create_train_iterator", lambda config: _SlowBatches(create(config), 0.25)
    )
    # Whole windows of 4 steps: a last window of one step is one fetch, which the
    # read-ahead may have had ready while the loop logged (0.23 once, on a loaded machine).
    config = tiny_config(demo_data_dir, total_steps=12, log_every=4, checkpoint_every=0)
    with pytest.warns(InputWaitWarning, match="num_workers=0.*prefetch=2.*on_device") as caught:
        trainer.train_and_evaluate(config, str(tmp_path / "slow"))
    (warning,) = [w for w in caught if w.category is InputWaitWarning]  # once a run
    # On a CPU the step and the input share the cores: the warning says so.
    assert "On this CPU-only host the input and the step share its " in str(warning.message)
    waits = [e["train/input_wait"] for e in read_metrics(tmp_path / "slow") if "train/loss" in e]
    assert min(waits[1:]) > 0.5, waits  # (the first line follows the compile: nothing timed)


def _one_line_error(capsys, config, workdir) -> str:
    assert cli.run(config, str(workdir)) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    return err


# The step does not guard the state: the loop reads its bad-step number before each log
# line, evaluation and save. Caught by the log line (every step), or by an evaluation when
# no log line falls on the bad step.
@pytest.mark.parametrize("checks", [{"log_every": 1}, {"log_every": 100, "eval_every": 1}])
def test_nan_loss_stops_and_keeps_last_good_checkpoint(
    checks, demo_run, demo_data_dir, tmp_path, capsys
):
    workdir = tmp_path / "run"
    shutil.copytree(demo_run[0], workdir)
    exploding = tiny_config(
        demo_data_dir,
        total_steps=60,
        checkpoint_every=1,
        allow_changes="optimizer,total_steps",  # the resume changes the recipe on purpose
        **{"optimizer.lr": 1e30, "optimizer.warmup_steps": 0},
        **checks,
    )
    err = _one_line_error(capsys, exploding, workdir)
    # Step 41's update (lr 1e30) is finite but huge; step 42's loss is not.
    assert "NaN/inf at step 42" in err
    assert "the checkpoint of step 41 is kept" in err and "float32" not in err  # a float32 run
    # checkpoint_every=1, yet nothing from the bad step on was saved or evaluated.
    saved = sorted(int(p.name) for p in (workdir / "checkpoints").iterdir())
    assert saved == [20, 40, 41]
    # (Step 41's state is finite, though its huge weights may give an infinite eval loss.)
    evals = [e["step"] for e in read_metrics(workdir) if "eval/loss" in e]
    assert max(evals) == (41 if "eval_every" in checks else 40)


def test_a_non_finite_step_reports_itself_and_keeps_the_weights(demo_data_dir):
    """The trainer's jitted step on a batch whose loss is NaN: its number in `bad_step`, and
    the parameters as they were (the update is zeroed); a finite step reports nothing."""
    config = tiny_config(demo_data_dir)
    setup = trainer.build(config)
    train_step = trainer.jit_train_step(config, setup)
    state = trainer.create_state(setup.make_state, setup.shardings)
    labels = np.arange(config.batch_size, dtype=np.int32) % 10
    images = np.random.default_rng(0).normal(size=(config.batch_size, 16, 16, 3))
    state, _, bad = train_step(state, {"image": images.astype(np.float32), "label": labels})
    assert int(bad) == int(NO_BAD_STEP)
    before = [np.asarray(p) for p in jax.tree.leaves(state["params"])]  # the step donates
    images[0, 0, 0, 0] = np.nan
    state, metrics, bad = train_step(state, {"image": images.astype(np.float32), "label": labels})
    assert int(bad) == 2 and not np.isfinite(float(metrics.compute()["loss"]))
    after = jax.tree.leaves(state["params"])
    assert all(np.array_equal(a, b) for a, b in zip(after, before, strict=True))


@pytest.mark.parametrize("mode", ["eval", "probe"])
def test_evaluating_a_workdir_with_another_model_names_the_settings(
    mode, demo_run, demo_data_dir, capsys
):
    """`--mode=eval`/`probe` on a run's workdir with a config that builds another model:
    one line with the settings that differ (from the run record) and an array's shapes."""
    config = tiny_config(demo_data_dir, **{"model_kwargs.dim": 48})
    assert cli.run(config, str(demo_run[0]), mode=mode) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    assert f"--mode={mode}: this config builds another model than the run in" in err
    assert "(model_kwargs.dim 32 -> 48; " in err and "'params/" in err
    assert "in the checkpoint, (96," in err and "give --mode=" in err


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"model": "smlpnet_x"}, "unknown model 'smlpnet_x'"),
        ({"image_size": 20}, "image_size divisible by 8"),
        ({"dataset": "no_such_dataset"}, "no_such_dataset"),
        ({"grad_accum_steps": 3}, "batch_size=64 is not divisible"),
        ({"mesh.fsdp": 3}, "config.mesh"),
        ({"optimizer.schedule": "poly"}, "config.optimizer.schedule='poly' is not a schedule"),
        ({"loss": "focal"}, "config.loss='focal' is not a loss; use one of"),
        (
            {"optimizer.schedule": "onecycle", "optimizer.onecycle_pct": 1.2},
            "onecycle_pct=1.2",
        ),
        (
            {"input.repeated_aug": 3, "input.repeated_aug_replicas": 3},
            "repeated_aug_replicas=3 does not divide config.batch_size=64",
        ),
        ({"optimizer.decay_rule": "none"}, "config.optimizer.decay_rule='none'"),
        ({"mixup.mode": "bv"}, "config.mixup.mode='bv'; use one of timm, big_vision"),
        (
            {"mixup.mode": "big_vision", "mixup.cutmix_alpha": 1.0},
            "has no CutMix: set config.mixup.cutmix_alpha=0",
        ),
        ({"input.interpolation": "area"}, "config.input.interpolation='area'; use one of"),
        ({"init_from": "/nonexistent.pth"}, "config.init_from='/nonexistent.pth' does not exist"),
        ({"total_steps": 0}, "config.total_steps=0: give a positive number of steps"),
        ({"input.on_device": "gpu"}, "config.input.on_device='gpu'; use one of '', 'augment'"),
        ({"input.num_workers": 4096}, "config.input.num_workers=4096, but this process may use"),
        ({"input.prefetch": 0}, "config.input.prefetch=0: batches buffered per worker must be"),
        ({"input.num_threads": 0}, "config.input.num_threads=0: threads must be at least 1"),
        (
            {
                "input.on_device": "augment",
                "input.interpolation": "random",
                "input.randaugment": "rand-m9",
            },
            "config.input.on_device='augment' runs RandAugment's warps with bicubic or bilinear",
        ),
    ],
)
def test_bad_input_is_one_line(demo_data_dir, tmp_path, capsys, changes, expected):
    err = _one_line_error(capsys, tiny_config(demo_data_dir, **changes), tmp_path)
    assert expected in err
    # Refused before anything is written (the input plan is checked with the rest).
    assert not (tmp_path / "checkpoints").exists(), changes


def test_config_typo_fails_in_main(demo_data_dir, tmp_path):
    command = main_command(tmp_path, demo_data_dir, "--config.batchsize=8")
    result = subprocess.run(
        command, env=subprocess_env(), capture_output=True, text=True, timeout=120, cwd=REPO
    )
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(
        "error: unknown config key 'batchsize' (did you mean 'batch_size'?); known keys at the "
        "top level: allow_changes, async_checkpoint, "
    ), line


def _snapshot(directory) -> dict[str, tuple[int, int]]:
    """Every path under `directory` -> (size, mtime in ns)."""
    return {
        str(p.relative_to(directory)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(directory.rglob("*"))
    }


def test_eval_mode_on_a_training_workdir_changes_nothing(demo_run, demo_data_dir, tmp_path):
    """Watching a run that is training: `main.py --mode=eval` on its workdir reads the latest
    step and leaves everything else alone, a save in flight (a temporary step directory)
    included."""
    workdir = tmp_path / "run"
    shutil.copytree(demo_run[0], workdir)
    in_flight = workdir / "checkpoints" / "60.orbax-checkpoint-tmp-1733212800123456"
    (in_flight / "state").mkdir(parents=True)
    (in_flight / "state" / "_METADATA").write_text("{}")
    before = _snapshot(workdir)
    result = subprocess.run(
        main_command(workdir, demo_data_dir, "--mode=eval"),
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"{workdir} step 40" in result.stdout + result.stderr
    assert _snapshot(workdir) == before


def test_eval_mode_evaluates_init_from(demo_run, demo_data_dir, tmp_path):
    workdir, final = demo_run
    config = tiny_config(demo_data_dir, init_from=str(workdir))
    scalars = trainer.evaluate_only(config, str(tmp_path))
    for key in ("eval/top1", "eval/top5", "eval/loss"):
        assert scalars[key] == pytest.approx(final[key], abs=1e-6), key


def test_init_from_checkpoint_with_another_class_count(demo_run, demo_data_dir, tmp_path, capsys):
    """Fine-tuning on another dataset: the 10-class demo checkpoint into a 3-class image
    folder. Every layer but the classifier is the checkpoint's; the head starts fresh (and
    says so); the result evaluates on the new classes."""
    workdir, _ = demo_run
    root = grey_class_folder(tmp_path / "images")
    config = tiny_config(
        demo_data_dir,
        dataset=f"folder:{root}",
        init_from=str(workdir),
        eval_batch_size=6,
        **{"input.eval_split": "val"},
    )
    setup = trainer.build(config)
    info, make_state, abstract, shardings = (
        setup.info, setup.make_state, setup.abstract, setup.shardings
    )  # fmt: skip
    assert info.num_classes == 3
    fresh = trainer.create_state(make_state, shardings)
    state = init_from.load_model_weights(config, fresh, abstract, info.num_classes)
    assert "class count differs; the 'head' layer starts fresh" in capsys.readouterr().out

    headless = {k: v for k, v in abstract["params"].items() if k != "head"}
    saved = init_from.load_for_init(
        workdir, {"params": headless, "model_state": abstract["model_state"]}, partial=True
    )
    same = jax.tree.map(np.array_equal, saved["params"], {k: state["params"][k] for k in headless})
    assert all(jax.tree.leaves(same)) and len(jax.tree.leaves(same)) > 4
    assert all(
        jax.tree.leaves(jax.tree.map(np.array_equal, saved["model_state"], state["model_state"]))
    )
    head = jax.tree.map(np.array_equal, state["params"]["head"], fresh["params"]["head"])
    assert all(jax.tree.leaves(head))
    assert state["params"]["head"]["kernel"].shape[-1] == 3
    # The EMA copy starts from the same weights as the model.
    if "ema" in state:
        ema_same = jax.tree.map(np.array_equal, state["ema"]["params"], state["params"])
        assert all(jax.tree.leaves(ema_same))

    scalars = trainer.evaluate_only(config, str(tmp_path / "eval"))
    assert 0.0 <= scalars["eval/top1"] <= 1.0 and np.isfinite(scalars["eval/loss"])
    assert "eval/top5" not in scalars or scalars["eval/top5"] == 1.0  # 3 classes: top-5 is all


def test_init_from_checkpoint_at_another_image_size(demo_run, demo_data_dir, tmp_path):
    """Fine-tuning our 16px checkpoint at 32px: refused with the flag to set, then with
    `init_resample_to_grid` the axial mixing weights are resampled by their own paths (the
    same functions as official weights use) and every other array is the checkpoint's."""
    from smlp_jax.convert.resample import axial_bias, axial_kernel

    workdir, _ = demo_run
    config = tiny_config(demo_data_dir, init_from=str(workdir), image_size=32)
    setup = trainer.build(config)
    fresh = trainer.create_state(setup.make_state, setup.shardings)
    with pytest.raises(
        checkpoint.CheckpointError, match=r"differ in shape: .*init_resample_to_grid=True"
    ):
        init_from.load_model_weights(config, fresh, setup.abstract, setup.info.num_classes)

    config = tiny_config(
        demo_data_dir, init_from=str(workdir), image_size=32, init_resample_to_grid=True
    )
    state = init_from.load_model_weights(config, fresh, setup.abstract, setup.info.num_classes)
    saved = init_from.load_for_init(workdir, init_from._saved_weights_target, partial=True)
    flat = lambda tree: {
        "/".join(str(getattr(k, "key", k)) for k in path): np.asarray(leaf)
        for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]
    }
    old, new = flat(saved["params"]), flat(state["params"])
    assert old.keys() == new.keys()
    resampled = 0
    for name, array in new.items():
        if array.shape == old[name].shape:
            assert np.array_equal(array, old[name]), name
        else:  # the axial mixing along the 2x longer rows and columns
            assert "mix" in name and array.shape == tuple(2 * n for n in old[name].shape), name
            fn = axial_kernel if name.endswith("kernel") else axial_bias
            np.testing.assert_allclose(array, fn(old[name], array.shape), rtol=1e-6, err_msg=name)
            resampled += 1
    assert resampled >= 4
    old, new = flat(saved["model_state"]), flat(state["model_state"])
    assert old.keys() == new.keys() and all(np.array_equal(old[k], new[k]) for k in old)


def test_probe_mode_on_the_trained_checkpoint(demo_run, demo_data_dir, tmp_path, capsys):
    """`--mode=probe` (cli.run, as main.py calls it): few-shot and full linear-probe top-1
    of the trained checkpoint's pooled features, one console line; the frozen features of
    40 steps already separate the digits far above chance."""
    workdir, _ = demo_run
    config = tiny_config(demo_data_dir, init_from=str(workdir))
    with config.unlocked():
        config.probe.shots = (1, 10)
        config.probe.train_split = "train[:1000]"
    assert cli.run(config, str(tmp_path), mode="probe") == 0
    (line,) = [x for x in capsys.readouterr().out.splitlines() if "probe |" in x]
    assert "1-shot" in line and "10-shot" in line and "full" in line
    full = float(line.split("full ")[1].split("%")[0])
    assert full > 50.0, line


def test_device_augmentation_refuses_batches_that_are_not_the_hosts_crops(demo_data_dir):
    """With `on_device='augment'` the step takes the pipeline's uint8 crops of
    config.image_size; a user's own float batch, or crops of another size, get one line
    naming what was expected (raised while tracing, before any compile)."""
    from smlp_jax import data
    from smlp_jax.train.step import make_train_step

    config = tiny_config(demo_data_dir, **{"input.on_device": "augment"})
    size = int(config.image_size)
    setup = trainer.build(config)
    step = make_train_step(config, setup.graphs, setup.tx, setup.schedule, setup.info.num_classes)
    state = jax.eval_shape(setup.make_state)
    labels = jax.ShapeDtypeStruct((8,), np.int32)

    def batch(shape, dtype):
        return {"image": jax.ShapeDtypeStruct(shape, dtype), "label": labels}

    jax.eval_shape(step, state, batch((8, size, size, 3), np.uint8))  # the pipeline's crops
    for shape, dtype in (((8, size, size, 3), np.float32), ((8, size + 4, size + 4, 3), np.uint8)):
        with pytest.raises(data.DataError) as err:
            jax.eval_shape(step, state, batch(shape, dtype))
        message = str(err.value)
        assert message.startswith(
            f"config.input.on_device='augment' (config.image_size={size}) takes batches of "
            f"image uint8 (B, {size}, {size}, 3); got image {np.dtype(dtype).name} {shape}"
        ), message
        assert "\n" not in message


DAMAGE = b'\xff\xfe\x00binary\n[1, 2, 3]\n{"step": "abc", "train/loss": 1.0}\n'


def test_damaged_metrics_lines_are_moved_aside_and_the_resume_trains_on(
    demo_run, demo_data_dir, tmp_path
):
    """Binary bytes, a JSON list and a non-integer step in metrics.jsonl: one warning, the
    lines kept in metrics.jsonl.damaged, the file rewritten from its records, training on."""
    workdir = tmp_path / "run"
    shutil.copytree(demo_run[0], workdir)
    metrics = workdir / "metrics.jsonl"
    metrics.write_bytes(metrics.read_bytes() + DAMAGE + b'{"step": 4')  # + a line cut short
    config = tiny_config(
        demo_data_dir, total_steps=45, log_every=5, checkpoint_every=0, allow_changes="total_steps"
    )
    with pytest.warns(MetricsDamagedWarning, match="3 damaged line"):
        assert trainer.train_and_evaluate(config, str(workdir))["step"] == 45
    assert len((workdir / "metrics.jsonl.damaged").read_text().splitlines()) == 3
    steps = [e["step"] for e in read_metrics(workdir)]
    assert steps == sorted(steps) and steps[-1] == 45 and steps.count(45) == 2  # train, eval
    records, damaged = read_records(metrics)
    assert damaged == [] and len(records) == len(steps)


def test_a_fresh_state_on_one_cpu_device_is_made_op_by_op_with_buffers_of_its_own(
    demo_data_dir,
):
    """On one CPU device `create_state` runs the init op by op, not as one program (slow for
    XLA CPU to compile): the values are the compiled program's to float rounding, already
    on the state's shardings, and every leaf has a buffer of its own (the train step
    donates them all; the EMA starts as the parameters themselves)."""
    assert jax.device_count() == 1 and jax.default_backend() == "cpu"
    setup = trainer.build(tiny_config(demo_data_dir, **{"ema.decay": 0.9}))
    state = trainer.create_state(setup.make_state, setup.shardings)
    compiled = jax.jit(setup.make_state, out_shardings=setup.shardings)()

    ours, theirs = (jax.tree.leaves(keys_to_data(s)) for s in (state, compiled))
    assert len(ours) == len(theirs) and "ema" in state
    for a, b in zip(ours, theirs, strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-7)
    placed = jax.tree.map(
        lambda a, s: a.sharding.is_equivalent_to(s, a.ndim), state, setup.shardings
    )
    assert all(jax.tree.leaves(placed))
    buffers = [leaf.unsafe_buffer_pointer() for leaf in ours]
    assert len(set(buffers)) == len(buffers)
