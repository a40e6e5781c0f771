"""PreemptionGuard on one process: SIGTERM and Ctrl-C become a flag and the old handler
comes back; a second signal exits at once, or, while a checkpoint is being written, once it
is committed (bounded; a third signal ends the wait); through main.py, Ctrl-C saves and
exits 130, and SIGTERM twice keeps the checkpoint that was being written.
(Two processes stopping at the same step: tests/train/test_checkpoint.py.)"""

import json
import os
import signal
import subprocess
import sys
import time

import jax.numpy as jnp
import pytest

from smlp_jax.train import checkpoint, preemption
from tests.train.checkpoint_trees import abstract_of
from tests.train.tiny import REPO, main_command, read_metrics, run_main, subprocess_env


def test_preemption_guard_turns_sigterm_into_a_flag(capsys):
    before = signal.getsignal(signal.SIGTERM)
    with preemption.PreemptionGuard() as guard:
        assert not guard.should_stop and not guard.should_stop_at(0)
        os.kill(os.getpid(), signal.SIGTERM)
        for _ in range(100):  # the handler runs between bytecodes of the main thread
            if guard.should_stop:
                break
        assert guard.should_stop and guard.should_stop_at(1)
        assert guard.signal_received == "SIGTERM"
    assert signal.getsignal(signal.SIGTERM) == before
    err = capsys.readouterr().err  # no keyboard behind a scheduler's SIGTERM
    assert "(a second SIGTERM or Ctrl-C to exit at once)" in err and "press" not in err


def test_ctrl_c_is_a_stop_request_too(capsys):
    with preemption.PreemptionGuard() as guard:
        os.kill(os.getpid(), signal.SIGINT)
        for _ in range(100):
            if guard.should_stop:
                break
        assert guard.should_stop and guard.signal_received == "SIGINT"
    err = capsys.readouterr().err
    assert "SIGINT: saving a checkpoint after this step" in err and "press Ctrl-C again" in err
    assert preemption.exit_status("SIGINT") == 130
    assert preemption.exit_status("SIGTERM") == 143


SECOND_SIGNAL = """
import os, signal, time
from smlp_jax.train import preemption
from tests.train.tiny import REPO, main_command, read_metrics, run_main, subprocess_env
# Nothing in flight (what `Checkpointer.in_flight_step` says between saves).
with preemption.PreemptionGuard(in_flight=lambda: None, committed=lambda step: False) as guard:
    os.kill(os.getpid(), signal.SIGINT)
    while not guard.should_stop:
        time.sleep(0.01)
    os.kill(os.getpid(), signal.SIGINT)  # the second Ctrl-C: out at once
    time.sleep(30)
print("not reached")
"""


def test_a_second_ctrl_c_exits_at_once():
    out = subprocess.run(
        [sys.executable, "-c", SECOND_SIGNAL],
        env=subprocess_env(1),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 130, out
    assert "SIGINT again: exiting now" in out.stdout and "not reached" not in out.stdout
    assert "Traceback" not in out.stderr


# Step 20 committed; step 40's commit held until the file argv[2] exists (created argv[3]
# seconds after the first signal; never if negative). SIGTERM, and 0.1 s later, from another
# thread, a second one while the main thread waits for step 40, as the trainer's stop save
# does (its `wait()` for the save in flight).
HELD_SAVE = """
import os, signal, sys, threading, time
from pathlib import Path
import jax.numpy as jnp
from smlp_jax.train import checkpoint, preemption
from tests.train.checkpoint_trees import hold_commit

workdir, gate, commit_after, wait_s = sys.argv[1], Path(sys.argv[2]), *map(float, sys.argv[3:])
ckpt = checkpoint.Checkpointer(workdir)
ckpt.save(20, {"w": jnp.arange(4.0)}, data_state={"pos": 20})
ckpt.wait()
hold_commit(40, gate)
ckpt.save(40, {"w": jnp.arange(4.0) + 1}, data_state={"pos": 40})
with preemption.PreemptionGuard(
    in_flight=ckpt.in_flight_step, committed=ckpt.is_committed, save_wait_s=wait_s
) as guard:
    os.kill(os.getpid(), signal.SIGTERM)
    while not guard.should_stop:
        time.sleep(0.01)
    if commit_after >= 0:
        threading.Timer(commit_after, gate.touch).start()
    threading.Timer(0.1, os.kill, (os.getpid(), signal.SIGTERM)).start()
    ckpt.wait()
print("not reached", flush=True)
"""


@pytest.mark.parametrize("commits", [True, False], ids=["commits", "never_commits"])
def test_a_second_sigterm_waits_for_the_checkpoint_being_written(tmp_path, commits):
    """SIGTERM twice 0.1 s apart while checkpoint 40 is still being written (a real
    Checkpointer, its commit held back): the second one waits for it and exits 143 once it
    is committed (1 s later), saying so; a save that is not committed within the bound
    (0.5 s here) is given up, and the line says that too. Either way the resumed run finds
    a whole checkpoint: 40, or else 20."""
    workdir, gate = tmp_path / "run", tmp_path / "gate"
    commit_after, wait_s = ("1", "30") if commits else ("-1", "0.5")
    out = subprocess.run(
        [sys.executable, "-c", HELD_SAVE, str(workdir), str(gate), commit_after, wait_s],
        env=subprocess_env(1),
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert out.returncode == 143, out
    given_up = "was not committed within 0.5 s; exiting without it"
    outcome = "is committed; exiting" if commits else given_up
    assert out.stdout.splitlines() == [
        f"SIGTERM again: waiting up to {wait_s} s for the checkpoint of step 40 being written, "
        "then exiting",
        f"the checkpoint of step 40 {outcome}",
    ], out
    assert "Traceback" not in out.stderr, out.stderr[-3000:]
    on_disk = sorted(p.name for p in (workdir / "checkpoints").iterdir())
    if commits:
        assert on_disk == ["20", "40"], on_disk
    else:
        assert on_disk[0] == "20" and on_disk[1].startswith("40.orbax-checkpoint-tmp"), on_disk
    with checkpoint.Checkpointer(workdir, read_only=True) as reader:
        step, _, data_state = reader.restore(abstract_of({"w": jnp.arange(4.0)}))
    assert (step, data_state) == ((40, {"pos": 40}) if commits else (20, {"pos": 20}))


THIRD_SIGNAL = """
import os, signal, threading, time
from smlp_jax.train import preemption
# A save of step 40 that never commits: the second Ctrl-C would wait the whole 30 s.
with preemption.PreemptionGuard(in_flight=lambda: 40, committed=lambda step: False) as guard:
    os.kill(os.getpid(), signal.SIGINT)
    while not guard.should_stop:
        time.sleep(0.01)
    threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT)).start()  # the third
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(60)
print("not reached")
"""


def test_a_third_ctrl_c_ends_the_wait():
    start = time.monotonic()
    out = subprocess.run(
        [sys.executable, "-c", THIRD_SIGNAL],
        env=subprocess_env(1),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 130, out
    assert out.stdout.splitlines() == [
        "SIGINT again: waiting up to 30 s for the checkpoint of step 40 being written, then "
        "exiting",
        "SIGINT again: exiting now, without the checkpoint of step 40",
    ], out
    assert time.monotonic() - start < 25  # well before the 30 s bound


# main.py, with the commit of checkpoint 8 held until the file argv[1] exists.
HELD_MAIN = """
import runpy, sys
from tests.train.checkpoint_trees import hold_commit
hold_commit(8, sys.argv[1])
sys.argv = sys.argv[2:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def _logged_steps(workdir) -> list[int]:
    """The steps in metrics.jsonl so far (a line being written is left out)."""
    path = workdir / "metrics.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    return [json.loads(line)["step"] for line in lines if line.endswith("}")]


def _wait_for(condition, proc, what: str, timeout: float = 240) -> None:
    """Polls `condition()` until it holds; fails if `proc` exits first or time runs out."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, f"main.py exited ({proc.returncode}) before {what}"
        assert time.monotonic() < deadline, f"no {what} within {timeout:g} s"
        time.sleep(0.01)


def test_sigterm_twice_in_main_keeps_the_checkpoint_being_written(demo_data_dir, tmp_path):
    """The fault injector's case through main.py: SIGTERM twice while the periodic
    checkpoint of step 8 is still being written (its commit held back until the second
    signal has been answered). The run waits for it, exits 143, and step 8 is committed:
    the rerun would resume from 8, not from 4. (The stop checkpoint is given up.)

    Each signal is sent once the run has answered the one before, and the commit is let go
    only then: Python runs a handler between bytecodes of the main thread, so a signal
    that arrives during a long call into XLA (compiling the eval step, say) is handled
    when it returns, and with fixed delays the commit could land before the handler ran."""
    workdir, gate = tmp_path / "run", tmp_path / "gate"
    out_path, err_path = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
    command = main_command(workdir, demo_data_dir, total_steps=40, checkpoint_every=4)
    # Files, not pipes: Orbax's log on stderr would fill a pipe nobody reads while waiting.
    with out_path.open("w") as out_file, err_path.open("w") as err_file:
        proc = subprocess.Popen(
            [sys.executable, "-c", HELD_MAIN, str(gate), *command[1:]],
            env=subprocess_env(1),
            cwd=REPO,
            stdout=out_file,
            stderr=err_file,
        )
    try:
        # Past step 8's save (its arrays copied, the write in the background), not inside it.
        _wait_for(lambda: max(_logged_steps(workdir), default=0) >= 9, proc, "step 9")
        proc.send_signal(signal.SIGTERM)
        _wait_for(lambda: "SIGTERM: saving a checkpoint" in err_path.read_text(), proc, "answer")
        proc.send_signal(signal.SIGTERM)
        _wait_for(lambda: "SIGTERM again:" in out_path.read_text(), proc, "second answer")
        gate.touch()
        proc.wait(timeout=120)
    finally:
        proc.kill()
    out, err = out_path.read_text(), err_path.read_text()
    assert proc.returncode == 143, (out[-3000:], err[-3000:])
    lines = out.splitlines()
    waiting = "waiting up to 30 s for the checkpoint of step 8 being written, then exiting"
    # stderr too: the first signal's line and Orbax's log say where the run was.
    assert f"SIGTERM again: {waiting}" in lines, (out[-3000:], err[-3000:])
    assert lines[-1] == "the checkpoint of step 8 is committed; exiting", (out[-3000:], err[-3000:])
    assert "Traceback" not in err, err[-3000:]
    committed = sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())
    assert committed == [4, 8], committed


def test_ctrl_c_in_main_saves_resumes_exactly_and_a_finished_rerun_says_so(demo_data_dir, tmp_path):
    """Ctrl-C through main.py: one line, a checkpoint at the step it stopped, status 130, no
    KeyboardInterrupt traceback; the same command then finishes with the uninterrupted
    run's every logged loss; once more, it says the run is finished."""
    cache = str(tmp_path / "cache")
    run = {"total_steps": 30, "checkpoint_every": 0, "log_every": 1}
    workdir, reference = tmp_path / "run", tmp_path / "reference"

    def start(where):
        return subprocess.Popen(
            main_command(where, demo_data_dir, **run),
            env=subprocess_env(1, cache_dir=cache),
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )

    uninterrupted, proc = start(reference), start(workdir)
    try:
        deadline = time.monotonic() + 240
        while not (workdir / "metrics.jsonl").exists() or len(read_metrics(workdir)) < 3:
            assert proc.poll() is None and time.monotonic() < deadline, proc.poll()
            time.sleep(0.02)
        proc.send_signal(signal.SIGINT)
        out, err = (s.decode() for s in proc.communicate(timeout=120))
        assert uninterrupted.wait(timeout=240) == 0
    finally:
        proc.kill()
        uninterrupted.kill()
    assert proc.returncode == 130, (out, err)
    assert "KeyboardInterrupt" not in err and "Traceback" not in err, err
    stopped = max(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())
    assert f"stopped by SIGINT: saved a checkpoint at step {stopped}" in out, out
    assert stopped < run["total_steps"]
    # The console a person reads: the variant, what differs from it and its size; the
    # parameter table in the workdir (one line here); compile announced and timed.
    lines = out.splitlines()
    assert lines[0].startswith("smlpnet_t (depths=(1, 1), dim=32; "), lines[0]
    assert " parameters) on demo " in lines[0]
    assert any(x.endswith(f"(table: {workdir / 'parameters.txt'})") for x in lines), out
    assert "Total:" not in out and (workdir / "parameters.txt").read_text().count("\n") > 10
    assert "compiling the train step..." in lines
    # (the reference, compiling alongside from the same empty cache, may have written it)
    compiled = ("train step compiled in ", "train step loaded from the compilation cache in ")
    assert any(x.startswith(compiled) for x in lines), out

    def losses(where):
        return [(e["step"], e["train/loss"]) for e in read_metrics(where) if "train/loss" in e]

    resumed = run_main(workdir, demo_data_dir, **run)
    assert resumed.returncode == 0, resumed.stderr
    assert losses(workdir) == losses(reference)

    again = run_main(workdir, demo_data_dir, **run)
    assert again.returncode == 0, again.stderr
    total = run["total_steps"]
    assert f"already finished: {workdir / 'checkpoints'} holds step {total} of {total}" in (
        again.stdout
    ), again.stdout
