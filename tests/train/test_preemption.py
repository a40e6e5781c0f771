"""PreemptionGuard on one process: SIGTERM and Ctrl-C become a flag and the old handler
comes back; a second Ctrl-C exits at once; through main.py, Ctrl-C saves and exits 130.
(Two processes stopping at the same step: tests/train/test_checkpoint.py.)"""

import os
import signal
import subprocess
import sys
import time

from smlp_jax.train import preemption
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
with preemption.PreemptionGuard() as guard:
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
    compiled = ("train step compiled and run once in ", "train step loaded from the compilation")
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
