"""One trainer per workdir (smlp_jax/train/workdir_lock.py): a second one is refused in one
line naming the holder, before it writes anything; the OS frees the lock of a killed run;
the processes of one run do not exclude each other; a filesystem without locks is one line."""

import errno
import subprocess
import sys

import pytest

from smlp_jax.train import cli, trainer, workdir_lock
from smlp_jax.train.errors import TrainError
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


def _read_only_folder(tmp_path):
    """A folder this process cannot write into: chmod 555 (root writes anyway: then a
    read-only system folder, or None)."""
    import tempfile

    folder = tmp_path / "read_only"
    folder.mkdir()
    folder.chmod(0o555)
    for candidate in (folder, "/sys", "/proc"):
        try:
            with tempfile.TemporaryFile(dir=candidate):
                continue
        except OSError:
            return candidate
    return None


@pytest.mark.parametrize("case", ["file", "below_a_file", "read_only"])
def test_a_workdir_that_cannot_be_one_is_one_line_before_anything_is_built(
    case, demo_data_dir, tmp_path
):
    """Through main.py: a file, a path below a file, or a read-only folder as --workdir is
    one line and rc 1, before the run's header or any model or data."""
    from tests.train.tiny import run_main

    (tmp_path / "a_file").write_text("not a folder")
    if case == "file":
        workdir, line = tmp_path / "a_file", "is a file, not a folder; give a folder."
    elif case == "below_a_file":
        workdir, line = tmp_path / "a_file" / "run", "cannot be created: "
    else:
        folder = _read_only_folder(tmp_path)
        if folder is None:
            pytest.skip("no folder this user cannot write to")
        workdir, line = f"{folder}/run", "is not writable ("
    result = run_main(workdir, demo_data_dir, timeout=120)
    assert result.returncode == 1, result.stderr
    assert result.stderr.startswith(f"error: --workdir {workdir} ") and line in result.stderr
    assert result.stderr.count("\n") == 1 and result.stdout == "", result.stdout
    assert not (tmp_path / "a_file").is_dir()


def test_eval_may_read_a_read_only_workdir(tmp_path):
    """Only training needs to write: --mode=eval/probe of a read-only workdir passes the
    check (and a file is refused in every mode)."""
    folder = tmp_path / "run"
    folder.mkdir()
    folder.chmod(0o555)
    workdir_lock.check_workdir(str(folder), writable=False)
    with pytest.raises(TrainError, match="is a file, not a folder"):
        workdir_lock.check_workdir(__file__, writable=False)
