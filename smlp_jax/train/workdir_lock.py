"""One training process per workdir: an advisory lock held for the whole run.

Two trainers on one workdir would both write metrics.jsonl and checkpoints, each
resuming over the other's steps. `exclusive(workdir)` takes an exclusive `flock` on
`WORKDIR/train.lock` (`train.lock.<i>` for process i > 0 of a multi-process run, so the
processes of one run do not exclude each other) and records the holder's host, PID and
start time in it. The OS drops the lock when the process ends in any way, SIGKILL
included, so a crashed run never leaves a stale lock; Linux NFS clients take `flock` as
a lock on the server. Readers (`--mode=eval`, `--mode=probe`, the tools) never take it.
`check_workdir` refuses, before anything is built, a workdir that cannot be one.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
import tempfile
import time
from collections.abc import Iterator

from smlp_jax.train.errors import TrainError

NAME = "train.lock"


class WorkdirLockedError(TrainError):
    """Another process trains in this workdir, or its filesystem cannot lock."""


def lock_path(workdir: str, process_index: int = 0) -> str:
    return os.path.join(workdir, NAME if process_index == 0 else f"{NAME}.{process_index}")


def _holder(fd: int) -> str:
    """`pid N on HOST since TIME` from the lock file, or "another process"."""
    try:
        info = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
        since = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(float(info["since"])))
        return f"pid {int(info['pid'])} on {info['host']} (since {since})"
    except (ValueError, KeyError, TypeError, OSError):
        return "another process"


@contextlib.contextmanager
def exclusive(workdir: str, process_index: int = 0) -> Iterator[str]:
    """Holds the workdir's training lock inside the block; raises `WorkdirLockedError`
    (one line) when another process holds it. -> the lock file's path."""
    os.makedirs(workdir, exist_ok=True)
    path = lock_path(workdir, process_index)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise WorkdirLockedError(
                f"{workdir} is being trained by {_holder(fd)}; wait for that run to end "
                "(or stop it), or give this one another --workdir. Evaluating it "
                "(--mode=eval) works meanwhile."
            ) from None
        except OSError as err:
            if err.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
                raise
            raise WorkdirLockedError(
                f"cannot lock {path} ({err.strerror}): this filesystem does not support "
                "file locks, so two trainings could write this workdir at once; use a "
                "workdir on a filesystem that does."
            ) from None
        record = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(record).encode(), 0)
        try:
            yield path
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def check_workdir(workdir: str, *, writable: bool) -> None:
    """A `TrainError` (one line) for a workdir that cannot serve, found before anything is
    built: a file in its place, or (`writable`: training writes checkpoints and metrics)
    a folder, or the nearest existing folder above it, that cannot be written (read-only,
    not ours). Probed by creating a temporary file, which is what a write needs."""
    if os.path.exists(workdir) and not os.path.isdir(workdir):
        raise TrainError(f"--workdir {workdir} is a file, not a folder; give a folder.")
    if not writable:
        return
    existing = workdir
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise TrainError(
            f"--workdir {workdir} cannot be created: {existing} is a file, not a folder."
        )
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as err:
        where = "" if existing == workdir else f" ({existing}, where it would be created)"
        raise TrainError(
            f"--workdir {workdir} is not writable{where}: {err.strerror}; training writes "
            "its checkpoints and metrics there, so give a folder you can write to."
        ) from None
