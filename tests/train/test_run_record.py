"""The run record (`smlp_jax.train.run_record`): every config comes back from it, a resume
that changes what a run means is refused in one line (harmless changes go on, noted), and
the tools work from `--checkpoint WORKDIR` alone, writing the run's own preprocessing."""

import json
import shutil
import subprocess

import numpy as np
import pytest

import smlp_jax
from smlp_jax import data, serving
from smlp_jax.tools import export as export_tool
from smlp_jax.tools import export_serving, predict
from smlp_jax.train import run_record, state, trainer
from tests.conftest import TRAINED_RUN_CHANGES
from tests.train.test_config_keys import FAMILY_CONFIGS
from tests.train.tiny import (
    REPO,
    apply_overrides,
    main_command,
    official_config,
    read_metrics,
    subprocess_env,
    tiny_config,
)


@pytest.mark.parametrize(("family", "variants"), FAMILY_CONFIGS)
def test_every_config_comes_back_from_its_record(family, variants):
    """Through JSON and back: the same keys, values and types (tuples stay tuples), so a
    tool rebuilds exactly the model the run trained."""
    for variant in variants:
        config = official_config(family, variant)
        rebuilt = run_record.config_of({"config": run_record.plain(config)})
        assert rebuilt.to_dict() == config.to_dict(), (family, variant)
        assert state.model_kwargs(rebuilt) == state.model_kwargs(config)


def test_resume_check_refuses_what_changes_the_run_and_lets_the_rest_go(demo_data_dir):
    stored = {"config": run_record.plain(tiny_config(demo_data_dir))}
    changed = tiny_config(demo_data_dir, batch_size=32, log_every=7)
    with pytest.raises(run_record.RunRecordError) as refused:
        run_record.check_resume(stored, changed, 8)
    message = str(refused.value)
    assert "\n" not in message and "(at step 8)" in message
    assert "batch_size 64 -> 32" in message and "log_every" not in message
    assert message.endswith("--config.allow_changes=batch_size.")

    # Harmless keys (log frequency, workers, device layout, recomputation in the backward)
    # never need permission.
    harmless = tiny_config(
        demo_data_dir, log_every=7, remat="nothing_saveable", **{"input.num_workers": 2}
    )
    assert run_record.check_resume(stored, harmless, 8) == {
        "log_every": (1, 7),
        "input.num_workers": (0, 2),
        "remat": ("", "nothing_saveable"),
    }
    # Named keys, a whole section by its name, or "all".
    apply_overrides(changed, {"allow_changes": "batch_size"})
    assert run_record.check_resume(stored, changed, 8)["batch_size"] == (64, 32)
    section = tiny_config(demo_data_dir, **{"optimizer.lr": 1e-3, "allow_changes": "optimizer"})
    assert run_record.check_resume(stored, section, 8) == {"optimizer.lr": (5e-3, 1e-3)}
    everything = tiny_config(demo_data_dir, seed=3, total_steps=99, allow_changes="all")
    assert set(run_record.check_resume(stored, everything, 8)) == {"seed", "total_steps"}
    # A key the record does not have (written by an older version) is not a change.
    older = json.loads(json.dumps(stored))
    del older["config"]["grad_accum_steps"]
    assert run_record.check_resume(older, tiny_config(demo_data_dir), 8) == {}


def test_each_checkpoint_holds_the_record_of_the_run(trained_demo_run):
    workdir, overrides = trained_demo_run
    for step in (2, 4):
        record, step_dir = run_record.read(workdir / "checkpoints" / str(step))
        assert step_dir.name == str(step)
        assert record["config"]["batch_size"] == overrides["batch_size"] == 64
        assert record["model"] == {
            "name": "smlpnet_t",
            "hyperparameters": {
                "dim": 32,
                "alpha": 3,
                "depths": [1, 1],
                "patch_size": 4,
                "drop_path_rate": 0.0,
            },
            "image_size": 16,
            "num_classes": 10,
            "class_names": [str(i) for i in range(10)],
        }
        pre = record["preprocessing"]
        assert (pre["mean"], pre["std"], pre["crop_pct"]) == ([0.5] * 3, [0.5] * 3, 1.0)
        assert record["data"]["num_eval"] == 400 and record["resumes"] == []
        assert record["input_plan"] == {
            "on_device": "",
            "example": {"image": [[16, 16, 3], "float32"]},
        }
        assert record["versions"]["jax"] and record["versions"]["smlp_jax"]
    assert run_record.read(workdir)[1].name == "4"  # a workdir: its newest step's record


def test_resume_with_another_batch_size_is_refused_in_one_line(trained_demo_run, tmp_path):
    workdir = tmp_path / "run"
    shutil.copytree(trained_demo_run[0], workdir)
    before = sorted(p.name for p in (workdir / "checkpoints").iterdir())
    metrics_before = (workdir / "metrics.jsonl").read_text()
    data_dir = trained_demo_run[1]["data_dir"]
    result = subprocess.run(
        main_command(workdir, data_dir, **{**TRAINED_RUN_CHANGES, "batch_size": 32}),
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    assert result.returncode == 1, result.stderr[-2000:]
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: this workdir holds a run (at step 4) with other settings: ")
    assert "batch_size 64 -> 32" in line and "--config.allow_changes=batch_size" in line
    assert sorted(p.name for p in (workdir / "checkpoints").iterdir()) == before
    assert (workdir / "metrics.jsonl").read_text() == metrics_before


def test_resume_with_another_log_frequency_trains_on_and_is_recorded(
    trained_demo_run, tmp_path, capsys
):
    workdir = tmp_path / "run"
    shutil.copytree(trained_demo_run[0], workdir)
    shutil.rmtree(workdir / "checkpoints" / "4")  # resume from step 2
    data_dir = trained_demo_run[1]["data_dir"]
    trainer.train_and_evaluate(
        tiny_config(data_dir, **{**TRAINED_RUN_CHANGES, "log_every": 1}), str(workdir)
    )
    out = capsys.readouterr().out
    assert "resuming with changed settings: log_every 2 -> 1" in out
    assert f"resumed from {workdir / 'checkpoints'}/2" in out
    assert [m["step"] for m in read_metrics(workdir) if "train/loss" in m] == [2, 3, 4]
    record, _ = run_record.read(workdir)
    assert record["config"]["log_every"] == 1
    assert record["resumes"] == [{"step": 2, "changes": {"log_every": [2, 1]}}]
    assert record["created"] == run_record.read(trained_demo_run[0])[0]["created"]


def _top1(classify, config) -> float:
    """Top-1 of `classify(images) -> logits` over `config`'s eval split (padding masked)."""
    correct = total = 0
    for batch in data.create_eval_iterator(config):
        predicted = np.argmax(np.asarray(classify(batch["image"])), -1)
        mask = np.asarray(batch["mask"])
        correct += int(np.sum((predicted == np.asarray(batch["label"])) & mask))
        total += int(np.sum(mask))
    return correct / total


def test_tools_work_from_the_checkpoint_alone(trained_demo_run, tmp_path, capsys):
    """Hub and serving exports from `--checkpoint` alone carry the run's preprocessing (the
    demo's mean 0.5, std 0.5, crop 1.0); each, fed with its own preprocessing, scores the
    run's own eval top-1 on the held-out digits."""
    workdir, overrides = trained_demo_run
    run_top1 = [m for m in read_metrics(workdir) if "eval/top1" in m][-1]["eval/top1"]

    hub = tmp_path / "hub"
    assert export_tool.main(["--checkpoint", str(workdir), "--to", "hub", "--out", str(hub)]) == 0
    pre = json.loads((hub / "config.json").read_text())["pretrained_cfg"]
    assert (pre["mean"], pre["std"], pre["crop_pct"]) == ([0.5] * 3, [0.5] * 3, 1.0)
    card = (hub / "README.md").read_text()
    assert "mean [0.5, 0.5, 0.5] and std [0.5, 0.5, 0.5]" in card and "1.0 centre crop" in card
    assert f"Last eval: top-1 {100 * run_top1:.2f}% (demo)" in card

    served = tmp_path / "served"
    assert export_serving.main(["--checkpoint", str(workdir), "--out", str(served)]) == 0
    sidecar = json.loads((served / serving.SIDECAR_FILE).read_text())
    assert (sidecar["mean"], sidecar["std"], sidecar["crop_pct"]) == ([0.5] * 3, [0.5] * 3, 1.0)

    # Each exported form with the preprocessing it carries, on the run's eval split.
    eval_config = tiny_config(overrides["data_dir"])
    for cfg in (pre, sidecar):
        apply_overrides(
            eval_config,
            {
                "input.mean": tuple(cfg["mean"]),
                "input.std": tuple(cfg["std"]),
                "input.crop_pct": cfg["crop_pct"],
                "input.eval_interpolation": cfg["interpolation"],
            },
        )
        if cfg is pre:
            model = smlp_jax.create_model(f"hf-hub:{hub}")
            model.eval()
            assert _top1(model, eval_config) == pytest.approx(run_top1, abs=1e-6)
        else:
            assert _top1(serving.load(served), eval_config) == pytest.approx(run_top1, abs=1e-6)

    image = tmp_path / "digit.png"
    from PIL import Image

    Image.fromarray(np.full((28, 28), 200, np.uint8), mode="L").save(image)
    capsys.readouterr()
    assert predict.main([str(image), "--checkpoint", str(workdir)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 6 and all(line.split(". ", 1)[1][0].isdigit() for line in lines[1:])


def test_a_run_without_a_record_needs_its_config(trained_demo_run, tmp_path, capsys):
    old_run = tmp_path / "old_run"
    shutil.copytree(trained_demo_run[0], old_run)
    for record in old_run.glob("checkpoints/*/record"):
        shutil.rmtree(record)
    assert export_tool.main(["--checkpoint", str(old_run), "--out", str(tmp_path / "w.npz")]) == 1
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: ") and "has no run record" in line and "--config" in line


def test_a_damaged_record_is_passed_over_and_an_unreadable_one_stops(
    trained_demo_run, tmp_path, monkeypatch
):
    workdir = tmp_path / "run"
    shutil.copytree(trained_demo_run[0], workdir)
    newest = workdir / "checkpoints" / "4" / "record" / "run.json"
    for damage in (b"\x00\xff binary", b"[1, 2]", b'{"format": 1, "config": {}, "model": []}'):
        newest.write_bytes(damage)
        with pytest.warns(run_record.RunRecordWarning, match="using the record of an older step"):
            record, step_dir = run_record.read(workdir)
        assert step_dir.name == "2" and record["model"]["num_classes"] == 10

    def refused(self, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(type(newest), "read_text", refused)
    with pytest.raises(run_record.RunRecordError, match="could not read the run record .*"
                       "run.json: Permission denied"):  # fmt: skip
        run_record.read(workdir)
