"""One trainer per workdir (smlp_jax/train/workdir_lock.py): a second one is refused in one
line naming the holder, before it writes anything; the OS frees the lock of a killed run;
the processes of one run do not exclude each other; a filesystem without locks is one line."""

import errno
import subprocess
import sys

import pytest

from smlp_jax.train import cli, trainer, workdir_lock
from smlp_jax.train.workdir_lock import WorkdirLockedError
from tests.train.tiny import subprocess_env, tiny_config

HOLD = """
import sys, time
from smlp_jax.train import workdir_lock
with workdir_lock.exclusive(sys.argv[1]):
    print("held", flush=True)
    time.sleep(600)
"""


def test_a_second_trainer_is_refused_and_a_killed_holder_frees_the_workdir(
    demo_data_dir, tmp_path, capsys
):
    workdir = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(workdir)],
        env=subprocess_env(),
        stdout=subprocess.PIPE,
        text=True,
    )
    config = tiny_config(demo_data_dir, total_steps=2, log_every=1, checkpoint_every=0)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert cli.run(config, str(workdir)) == 1
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"error: {workdir} is being trained by pid {holder.pid} on "), err
        assert "\n" not in err and "--workdir" in err
        assert [p.name for p in workdir.iterdir()] == ["train.lock"]  # nothing else written
    finally:
        holder.kill()  # SIGKILL: no cleanup of its own; the OS drops the lock
        holder.wait()
    assert trainer.train_and_evaluate(config, str(workdir))["step"] == 2


def test_one_run_many_processes_and_release(tmp_path):
    workdir = str(tmp_path)
    with workdir_lock.exclusive(workdir):
        with workdir_lock.exclusive(workdir, process_index=1):  # process 1 of the same run
            pass
        with pytest.raises(WorkdirLockedError, match="is being trained by pid"):
            with workdir_lock.exclusive(workdir):
                pass
    with workdir_lock.exclusive(workdir):  # released at the end of the block
        pass


def test_a_filesystem_without_locks_is_one_line(tmp_path, monkeypatch):
    def no_locks(fd, op):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(workdir_lock.fcntl, "flock", no_locks)
    with pytest.raises(WorkdirLockedError, match="does not support file locks"):
        with workdir_lock.exclusive(str(tmp_path)):
            pass
