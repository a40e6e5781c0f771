"""Seeing what a run does: `config.profile` (a jax.profiler trace in the workdir), the
step-time breakdown and goodput in metrics.jsonl (`time/*`), and the optional W&B writer
(a fake `wandb` module: the tests stay offline and need no wandb install)."""

import contextlib
import gzip
import io
import json
import shutil
import sys
import types

import pytest

from smlp_jax.train import cli, run_record, trainer
from tests.train.tiny import read_metrics, tiny_config

PARTS = ("setup", "compile", "input", "eval", "checkpoint", "profile")


@pytest.fixture(scope="module")
def profiled_run(demo_data_dir, tmp_path_factory):
    """6 steps, traced from step 2 to 4, evaluated and saved every 2: (workdir, console)."""
    workdir = tmp_path_factory.mktemp("profiled")
    config = tiny_config(
        demo_data_dir, total_steps=6, eval_every=2, checkpoint_every=2, profile="2:4"
    )
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        trainer.train_and_evaluate(config, str(workdir))
    return workdir, out.getvalue()


def test_profile_writes_a_trace_of_the_steps_and_says_where(profiled_run):
    workdir, console = profiled_run
    runs = list((workdir / "profile" / "plugins" / "profile").iterdir())
    assert len(runs) == 1
    assert list(runs[0].glob("*.xplane.pb"))  # TensorBoard's profile plugin
    with gzip.open(runs[0] / "perfetto_trace.json.gz", "rt") as f:  # Perfetto / chrome://tracing
        assert json.load(f)["traceEvents"]
    lines = [line for line in console.splitlines() if line.startswith("profile of")]
    assert lines == [lines[0]] and f"train steps 3-4 written to {runs[0]}" in lines[0]


def test_metrics_break_the_wall_time_down_and_give_goodput(profiled_run):
    workdir, _ = profiled_run
    logs = [e for e in read_metrics(workdir) if "train/loss" in e]
    assert [e["step"] for e in logs] == [1, 2, 3, 4, 5, 6]
    for entry in logs:
        assert 0.0 <= entry["time/goodput"] <= 1.0
        parts = sum(entry[f"time/{p}"] for p in PARTS)
        assert entry["time/step"] + parts == pytest.approx(entry["time/wall"], rel=1e-6)
        assert entry["time/goodput"] == pytest.approx(entry["time/step"] / entry["time/wall"])
    first, at3, last = logs[0], logs[2], logs[-1]
    assert first["time/setup"] > 0 and first["time/compile"] > 0
    assert first["time/eval"] == first["time/checkpoint"] == 0  # none yet at step 1
    assert at3["time/eval"] > 0 and at3["time/checkpoint"] > 0  # step 2's, shown at step 3
    assert last["time/profile"] > 0 and last["time/step"] > first["time/step"]
    for key in ("time/wall", "time/step", *(f"time/{p}" for p in PARTS)):  # running totals
        assert [e[key] for e in logs] == sorted(e[key] for e in logs), key


@pytest.mark.parametrize(
    ("profile", "expected"),
    [
        ("3:20", "config.profile='3:20': give 'start:stop'"),
        ("5:5", "0 <= start < stop <= total_steps (12)"),
        ("steps 3 to 5", "config.profile='steps 3 to 5'"),
    ],
)
def test_a_bad_profile_range_is_one_line_before_training(
    demo_data_dir, tmp_path, capsys, profile, expected
):
    assert cli.run(tiny_config(demo_data_dir, profile=profile), str(tmp_path)) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and expected in err, err
    assert not (tmp_path / "checkpoints").exists()


class FakeWandb(types.ModuleType):
    """What the writer uses of `wandb`: init(id=, resume=, ...) -> a run with `step` (where
    W&B resumes: one past the last step it holds), log(data, step=) and finish(). The
    'server' keeps each run's logged steps across inits."""

    def __init__(self):
        super().__init__("wandb")
        self.server: dict[str, list[int]] = {}
        self.inits: list[dict] = []
        self.finished = 0

    def init(self, **kwargs):
        self.inits.append(kwargs)
        return FakeRun(self, kwargs["id"], kwargs.get("resume"))


class FakeRun:
    def __init__(self, api, run_id, resume):
        self.api, self.id = api, run_id
        history = api.server.setdefault(run_id, [])
        self.step = history[-1] + 1 if history and resume in ("allow", "must") else 0

    def log(self, data, step):
        history = self.api.server[self.id]
        assert not history or step >= history[-1], "W&B drops steps that go back"
        history.append(step)
        self.api.logs = getattr(self.api, "logs", []) + [(step, dict(data))]

    def finish(self):
        self.api.finished += 1


def test_wandb_continues_the_same_run_after_a_resume_without_repeating_steps(
    demo_data_dir, tmp_path, monkeypatch
):
    """Run 1 logs steps 1-6 (checkpoints at 4 and 6); the checkpoint of step 6 is lost (a
    preemption before it landed), so run 2 resumes at 4 with the id from the run record,
    redoes 5 and 6 without logging them again, and logs 7 and 8."""
    fake = FakeWandb()
    monkeypatch.setitem(sys.modules, "wandb", fake)
    workdir = tmp_path / "run"
    first = tiny_config(demo_data_dir, total_steps=6, checkpoint_every=4, **{"wandb.enabled": True})
    trainer.train_and_evaluate(first, str(workdir))
    run_id = run_record.read(workdir)[0]["wandb"]["id"]
    shutil.rmtree(workdir / "checkpoints" / "6")
    assert run_record.read(workdir)[0]["wandb"]["id"] == run_id  # step 4's record has it
    second = tiny_config(
        demo_data_dir,
        total_steps=8,
        checkpoint_every=4,
        allow_changes="total_steps",
        **{"wandb.enabled": True},
    )
    trainer.train_and_evaluate(second, str(workdir))
    assert [(i["id"], i["resume"]) for i in fake.inits] == [(run_id, "allow")] * 2
    assert fake.inits[0]["dir"] == str(workdir) and fake.finished == 2
    train_steps = [step for step, data in fake.logs if "train/loss" in data]
    assert train_steps == [1, 2, 3, 4, 5, 6, 7, 8]  # each once, in order
    assert [step for step, data in fake.logs if "eval/top1" in data] == [6, 8]
    assert all("time/goodput" in data for step, data in fake.logs if "train/loss" in data)
    assert run_record.read(workdir)[0]["wandb"]["id"] == run_id


def test_wandb_not_installed_is_one_line_saying_how(demo_data_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # import wandb -> ImportError
    config = tiny_config(demo_data_dir, **{"wandb.enabled": True})
    assert cli.run(config, str(tmp_path)) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "pip install wandb" in err, err
    assert not (tmp_path / "checkpoints").exists()


def test_wandb_failing_to_start_is_one_line(demo_data_dir, tmp_path, capsys, monkeypatch):
    class Offline(FakeWandb):
        def init(self, **kwargs):
            raise RuntimeError("api_key not configured (no-tty)\nmore detail")

    monkeypatch.setitem(sys.modules, "wandb", Offline())
    assert cli.run(tiny_config(demo_data_dir, **{"wandb.enabled": True}), str(tmp_path)) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: W&B could not start the run (RuntimeError: api_key"), err
    assert "\n" not in err and "wandb.mode=offline" in err
