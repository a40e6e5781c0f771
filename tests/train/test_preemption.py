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


def test_preemption_guard_turns_sigterm_into_a_flag():
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


def test_ctrl_c_is_a_stop_request_too(capsys):
    with preemption.PreemptionGuard() as guard:
        os.kill(os.getpid(), signal.SIGINT)
        for _ in range(100):
            if guard.should_stop:
                break
        assert guard.should_stop and guard.signal_received == "SIGINT"
    assert "SIGINT: saving a checkpoint after this step" in capsys.readouterr().err
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


def test_ctrl_c_in_main_saves_exits_130_and_a_finished_rerun_says_so(demo_data_dir, tmp_path):
    """Ctrl-C through main.py: one line, a checkpoint at the step it stopped, status 130, no
    KeyboardInterrupt traceback. Rerun with that step as the length: "already finished"."""
    workdir = tmp_path / "run"
    command = main_command(workdir, demo_data_dir, total_steps=400, checkpoint_every=0)
    proc = subprocess.Popen(
        command, env=subprocess_env(1), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 240
        while not (workdir / "metrics.jsonl").exists() or len(read_metrics(workdir)) < 3:
            assert proc.poll() is None and time.monotonic() < deadline, proc.poll()
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        out, err = (s.decode() for s in proc.communicate(timeout=120))
    finally:
        proc.kill()
    assert proc.returncode == 130, (out, err)
    assert "KeyboardInterrupt" not in err and "Traceback" not in err, err
    stopped = max(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())
    assert f"stopped by SIGINT: saved a checkpoint at step {stopped}" in out, out
    assert stopped < 400

    again = run_main(workdir, demo_data_dir, total_steps=stopped, checkpoint_every=0)
    assert again.returncode == 0, again.stderr
    assert f"already finished: {workdir / 'checkpoints'} holds step {stopped} of {stopped}" in (
        again.stdout
    ), again.stdout
