"""Exact resume: SIGKILL mid-run, SIGTERM (preemption), and a damaged latest checkpoint.

All runs are `main.py` children with the same environment (so the same XLA programs):
a reference that runs uninterrupted, one killed with SIGKILL, one stopped with SIGTERM
whose latest checkpoint is then damaged. Restarting the same command must end with the
reference's metrics.jsonl losses and final parameters, bit for bit.
"""

import json
import signal
import subprocess
import time
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from tests.train.tiny import REPO, main_command, subprocess_env

# Interrupted at steps 25 and 33; the steps after that only have to outlast the signal.
RUN = {"total_steps": 60, "checkpoint_every": 10, "log_every": 1}


def _start(workdir: Path, data_dir: str, cache: str, tag: str):
    log = open(workdir.parent / f"{workdir.name}_{tag}.log", "w")  # noqa: SIM115
    proc = subprocess.Popen(
        main_command(workdir, data_dir, **RUN),
        env=subprocess_env(1, cache_dir=cache),
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=REPO,
    )
    return proc, log


def _wait(run, timeout=300) -> int:
    proc, log = run
    try:
        return proc.wait(timeout=timeout)
    finally:
        proc.kill()
        log.close()


def _logged_step(workdir: Path) -> int:
    path = workdir / "metrics.jsonl"
    if not path.exists():
        return 0
    steps = [json.loads(line)["step"] for line in path.read_text().splitlines()[:-1]]
    return max(steps, default=0)


def _interrupt_after(run, workdir: Path, step: int, signum: int) -> None:
    deadline = time.monotonic() + 300
    while _logged_step(workdir) < step:
        assert run[0].poll() is None, "the run ended before it could be interrupted"
        assert time.monotonic() < deadline
        time.sleep(0.02)
    run[0].send_signal(signum)


def _losses(workdir: Path) -> list[tuple[int, float]]:
    entries = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    return [(e["step"], e["train/loss"]) for e in entries if "train/loss" in e]


def _final_state(workdir: Path) -> dict:
    step_dir = workdir / "checkpoints" / str(RUN["total_steps"]) / "state"
    with ocp.PyTreeCheckpointer() as checkpointer:
        return checkpointer.restore(step_dir.absolute())


def _assert_same_run(workdir: Path, reference: Path) -> None:
    assert _losses(workdir) == _losses(reference)
    got, want = _final_state(workdir), _final_state(reference)
    assert jax.tree.structure(got) == jax.tree.structure(want)
    for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(got), jax.tree.leaves(want)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=str(path))


# Reading the final states back without a target (plain numpy) is what we want here.
@pytest.mark.filterwarnings("ignore:Sharding info not provided:UserWarning")
def test_sigkill_sigterm_and_damaged_checkpoint_resume_exactly(demo_data_dir, tmp_path):
    cache = str(tmp_path / "jax_cache")
    reference, killed, preempted = (tmp_path / n for n in ("reference", "killed", "preempted"))
    runs = {
        "reference": _start(reference, demo_data_dir, cache, "1"),
        "killed": _start(killed, demo_data_dir, cache, "1"),
        "preempted": _start(preempted, demo_data_dir, cache, "1"),
    }
    _interrupt_after(runs["killed"], killed, 25, signal.SIGKILL)
    _interrupt_after(runs["preempted"], preempted, 33, signal.SIGTERM)
    assert _wait(runs["killed"]) == -signal.SIGKILL
    assert _wait(runs["preempted"]) == 0  # a clean exit after saving
    assert _wait(runs["reference"]) == 0

    # SIGTERM left a checkpoint at the step it stopped at (not a multiple of 10).
    steps = sorted(int(p.name) for p in (preempted / "checkpoints").iterdir() if p.name.isdigit())
    stopped = steps[-1]
    assert (
        stopped >= 33
        and "preempted: saved a checkpoint" in (tmp_path / "preempted_1.log").read_text()
    )
    # Damage that latest checkpoint: every file of its state truncated to garbage.
    for file in (preempted / "checkpoints" / str(stopped) / "state").rglob("*"):
        if file.is_file():
            file.write_bytes(b"damaged")

    resumed = {
        "killed": _start(killed, demo_data_dir, cache, "2"),
        "preempted": _start(preempted, demo_data_dir, cache, "2"),
    }
    assert _wait(resumed["killed"]) == 0
    assert _wait(resumed["preempted"]) == 0
    log = (tmp_path / "preempted_2.log").read_text()
    assert f"Checkpoint step {stopped}" in log and "could not be restored" in log
    assert (preempted / "checkpoints" / f"{stopped}.corrupt").is_dir()
    _assert_same_run(killed, reference)
    _assert_same_run(preempted, reference)
