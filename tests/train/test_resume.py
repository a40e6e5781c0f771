"""Exact resume: SIGKILL during asynchronous saves, SIGTERM (preemption), and damaged latest
checkpoints; a checkpoint the OS will not let the run read stops it instead.

All runs are `main.py` children with the same environment (so the same XLA programs):
a reference that runs uninterrupted; one killed with SIGKILL twice, each time while a save is
in flight (its `<step>.orbax-checkpoint-tmp` directory exists): in the background of training
after step 20's save (or 30's, 40's should a save finish before the kill lands), and in the
final save at the end of the run; one stopped with SIGTERM whose latest checkpoint is then
unreadable (permission denied: the run stops, nothing moved), then damaged (arrays cut short),
and the one before it holds an invalid input-iterator state. Restarting the same command must
end with the reference's metrics.jsonl (every loss and eval value) and final parameters, bit
for bit. The runs augment on device
(`input.on_device="augment"`), whose draws must replay as well.
"""

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from tests.train.tiny import REPO, main_command, read_metrics, subprocess_env

# Interrupted at steps 21, 33 and 60; the steps after that only have to outlast the signal.
# The augmentation after the crop runs on device (flip, RandAugment, random erasing): its
# draws come from (seed, step, row), so the resumed runs must repeat them too.
RUN = {
    "total_steps": 60,
    "checkpoint_every": 10,
    "log_every": 1,
    "input.on_device": "augment",
    "input.hflip": 0.5,
    "input.randaugment": "rand-m9-mstd0.5-inc1",
    "input.re_prob": 0.25,
}
TMP_SUFFIX = ".orbax-checkpoint-tmp"  # where Orbax writes a step before its commit rename


def _start(workdir: Path, data_dir: str, cache: str, tag: str, **changes):
    log = open(workdir.parent / f"{workdir.name}_{tag}.log", "w")  # noqa: SIM115
    proc = subprocess.Popen(
        main_command(workdir, data_dir, **{**RUN, **changes}),
        env=subprocess_env(1, cache_dir=cache),
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=REPO,
    )
    return proc, log


def _refused_read_run(workdir: Path, data_dir: str, cache: str, unreadable: Path):
    """Reruns the command with `unreadable` chmod 000 and root's override of file permissions
    dropped (the tests may run as root), then makes it readable again. -> the finished run;
    None where root cannot drop it (no setpriv)."""
    prefix = []
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            return None
        prefix = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--"]
    mode = unreadable.stat().st_mode
    unreadable.chmod(0)
    try:
        return subprocess.run(
            prefix + main_command(workdir, data_dir, **RUN),
            env=subprocess_env(1, cache_dir=cache),
            capture_output=True,
            text=True,
            timeout=300,
            cwd=REPO,
        )
    finally:
        unreadable.chmod(mode)


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


def _step_dirs(workdir: Path) -> tuple[set[int], set[int]]:
    """-> (committed steps, steps with a temporary directory, i.e. a save in flight)."""
    names = [p.name for p in (workdir / "checkpoints").iterdir()]
    committed = {int(n) for n in names if n.isdigit()}
    in_flight = {int(n.split(".")[0]) for n in names if TMP_SUFFIX in n}
    return committed, in_flight


def _kill_during_save(run, workdir: Path, step: int, logged: int) -> bool:
    """SIGKILLs `run` once the save of `step` is in flight and step `logged` is in
    metrics.jsonl (`logged > step`: the save runs in the background of training).

    -> whether the kill landed while that save was in flight, as the directory left behind
    shows: its temporary directory and no committed step. False: it had finished first.
    """
    deadline = time.monotonic() + 300
    while True:
        assert run[0].poll() is None, f"the run ended before the save of step {step}"
        assert time.monotonic() < deadline
        if (workdir / "checkpoints").is_dir():
            committed, in_flight = _step_dirs(workdir)
            if step in in_flight and _logged_step(workdir) >= logged:
                break
            if step in committed and step not in in_flight:  # it finished first: no test
                run[0].kill()
                _wait(run)
                return False
        time.sleep(0.002)  # the save takes about 0.3-1 s here
    run[0].kill()
    assert _wait(run) == -signal.SIGKILL
    committed, in_flight = _step_dirs(workdir)
    return step in in_flight and step not in committed


def _logged(workdir: Path) -> list[dict]:
    """metrics.jsonl without the wall-clock timings (throughput, `time/*`): what must repeat
    bit for bit."""
    timing = {"train/img_per_sec", "train/img_per_sec_per_device", "train/mfu"}
    timing |= {"train/input_wait"}
    return [
        {k: v for k, v in e.items() if k not in timing and not k.startswith("time/")}
        for e in read_metrics(workdir)
    ]


def _final_state(workdir: Path) -> dict:
    step_dir = workdir / "checkpoints" / str(RUN["total_steps"]) / "state"
    with ocp.PyTreeCheckpointer() as checkpointer:
        return checkpointer.restore(step_dir.absolute())


def _assert_same_run(workdir: Path, reference: Path) -> None:
    logged = _logged(workdir)
    train_steps = [e["step"] for e in logged if "train/loss" in e]
    assert train_steps == list(range(1, RUN["total_steps"] + 1))
    assert logged == _logged(reference)
    got, want = _final_state(workdir), _final_state(reference)
    assert jax.tree.structure(got) == jax.tree.structure(want)
    for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(got), jax.tree.leaves(want)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=str(path))


# Reading the final states back without a target (plain numpy) is what we want here.
@pytest.mark.filterwarnings("ignore:Sharding info not provided:UserWarning")
def test_sigkill_in_saves_sigterm_and_damaged_checkpoint_resume_exactly(demo_data_dir, tmp_path):
    cache = str(tmp_path / "jax_cache")
    reference, killed, preempted = (tmp_path / n for n in ("reference", "killed", "preempted"))
    runs = {
        "reference": _start(reference, demo_data_dir, cache, "1"),
        "killed": _start(killed, demo_data_dir, cache, "1"),
        "preempted": _start(preempted, demo_data_dir, cache, "1"),
    }
    # SIGKILL while step 20's save is written in the background (training is at step 21 or later).
    killed_in = 20 if _kill_during_save(runs["killed"], killed, 20, logged=21) else None
    _interrupt_after(runs["preempted"], preempted, 33, signal.SIGTERM)
    # Should that save have finished just before the kill (on a loaded machine a step can
    # outlast a save), the next ones are tried, killed as soon as their save is in flight.
    for step in (30, 40):
        if killed_in is None:
            runs["killed"] = _start(killed, demo_data_dir, cache, f"retry{step}")
            if _kill_during_save(runs["killed"], killed, step, logged=step - 1):
                killed_in = step
    if killed_in is None:
        pytest.fail("every save finished before its SIGKILL landed: nothing was tested")
    assert killed_in - 10 in _step_dirs(killed)[0]  # the step to resume from
    assert _wait(runs["preempted"]) == 128 + signal.SIGTERM  # after saving
    # SIGTERM left a checkpoint at the step it stopped at (not a multiple of 10).
    stopped = max(_step_dirs(preempted)[0])
    assert stopped >= 33
    data = preempted / "checkpoints" / str(stopped) / "state" / "ocdbt.process_0" / "d"
    largest = max((f for f in data.iterdir() if f.is_file()), key=lambda f: f.stat().st_size)
    # That checkpoint's array data unreadable (permission denied, as an NFS or object-store
    # hiccup would be): no proof of damage, so one error line naming the file, and nothing
    # moved aside or skipped.
    before = sorted(p.name for p in (preempted / "checkpoints").iterdir())
    refused = _refused_read_run(preempted, demo_data_dir, cache, largest)
    if refused is not None:
        assert refused.returncode == 1, refused.stderr[-3000:]
        errors = [line for line in refused.stderr.splitlines() if line.strip()]
        assert errors == [
            f"error: could not read checkpoint step {stopped}: {largest}: Permission denied; "
            "it may well be intact, so it was not moved aside and no older step was used: "
            "make it readable (permissions, the mount, the storage) and run again."
        ], refused.stderr[-3000:]
        assert "resumed from" not in refused.stdout
        assert sorted(p.name for p in (preempted / "checkpoints").iterdir()) == before
    # Now damage it as a full disk or a cut copy does: its array data file truncated, so most
    # of its arrays' reads fail (the metadata still reads)...
    with largest.open("r+b") as f:
        f.truncate(1000)
    # ...and the checkpoint before it holds valid JSON that no input iterator saved.
    *_, resume_at, previous, _ = sorted(_step_dirs(preempted)[0])
    data_state = preempted / "checkpoints" / str(previous) / "data" / "process_0.json"
    data_state.write_text(json.dumps({"kind": "dict", "value": {"step": previous}}))

    resumed = {
        "killed": _start(killed, demo_data_dir, cache, "2"),
        # ...resumed with a worker process decoding (the data position does not depend on
        # the workers, and the run record lets their number change).
        "preempted": _start(preempted, demo_data_dir, cache, "2", **{"input.num_workers": 1}),
    }
    # SIGKILL again, in the final save: the last step is trained, evaluated and logged.
    last = RUN["total_steps"]
    assert _kill_during_save(resumed["killed"], killed, last, logged=last), (
        "the final save finished before its SIGKILL landed: nothing was tested"
    )
    assert [e["step"] for e in read_metrics(killed) if "eval/top1" in e] == [last]
    resumed["killed"] = _start(killed, demo_data_dir, cache, "3")
    assert _wait(resumed["killed"]) == 0
    assert _wait(resumed["preempted"]) == 0
    assert _wait(runs["reference"]) == 0
    # The damaged steps were moved aside (not deleted) and the run resumed before them,
    # saying so in one warning line each: none of the failed reads' tracebacks reach the
    # console.
    assert (preempted / "checkpoints" / f"{stopped}.corrupt").is_dir()
    assert (preempted / "checkpoints" / f"{previous}.corrupt").is_dir()
    log = (preempted.parent / "preempted_2.log").read_text()
    assert log.count("could not be restored") == 2, log
    assert "data/process_0.json: input-iterator state: keys step" in log, log
    assert f"resumed from {preempted / 'checkpoints'}/{resume_at}" in log, log
    assert "resuming with changed settings: input.num_workers 0 -> 1" in log, log
    for noise in ("Traceback", "Exception ignored", "never retrieved", "Event loop is closed"):
        assert noise not in log, log[-3000:]
    other = [line for line in log.splitlines() if not line.startswith(("step ", "eval @"))]
    assert len(other) < 20, other  # header, the warning, resumed, compile: no floods
    _assert_same_run(killed, reference)
    _assert_same_run(preempted, reference)
