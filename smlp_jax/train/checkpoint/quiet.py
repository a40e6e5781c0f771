"""Quieting Orbax and TensorStore after a failed read or write, installed by the process owner.

A damaged step or a refused write makes Orbax log a traceback from several threads, asyncio
one for each pending read, and Python an "unraisable" error for each abandoned coroutine;
`Checkpointer` reports each such failure as one line, so this noise is only in the way; so
is the warning Orbax logs whenever a run is opened read-only (`--mode=eval`/`probe`, tools).
`install()` adds three log filters and wraps `sys.unraisablehook`: process-wide changes, so
only the owner of the process makes them (`main.py` through `smlp_jax.train.cli.run`, the
tools' `main`), never a library call such as reading a checkpoint.
"""

from __future__ import annotations

import logging
import os
import sys
import traceback
from collections.abc import Callable

from smlp_jax.train.checkpoint.errors import os_error_reason


class _ReportedWriteFailures(logging.Filter):
    """Drops the log records of a checkpoint write the OS refused: `Checkpointer` raises that
    failure as one `CheckpointError` line, where Orbax logs a traceback for it from several
    threads (through absl) and asyncio one for each other write that failed with it."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if error is None or os_error_reason(error) is None:
            return True
        logged_by_orbax = f"{os.sep}orbax{os.sep}" in record.pathname
        return not (logged_by_orbax or ".orbax-checkpoint-tmp" in str(error))


_REPORTED_WRITE_FAILURES = _ReportedWriteFailures()


class _FailedReadTasks(logging.Filter):
    """Drops asyncio's "Task/Future exception was never retrieved" records for Orbax's reads of a
    damaged step: the first failed read fails the restore (reported as one fall-back
    warning); the reads still pending then fail the same way, unobserved, one traceback
    each (thousands of lines for a truncated file)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        ours = ("async_deserialize", "OCDBT database", f"orbax{os.sep}checkpoint")
        return not ("never retrieved" in message and any(m in message for m in ours))


_FAILED_READ_TASKS = _FailedReadTasks()


class _ReadOnlyNotice(logging.Filter):
    """Drops Orbax's "Given directory is read only" warning: `Checkpointer(read_only=True)`
    is how `--mode=eval`, `--mode=probe` and the tools read a run, so it is the expected
    state, logged on every such start. Orbax's other warnings pass."""

    def filter(self, record: logging.LogRecord) -> bool:
        logged_by_orbax = f"{os.sep}orbax{os.sep}" in record.pathname
        return not (logged_by_orbax and str(record.msg).startswith("Given directory is read only"))


_READ_ONLY_NOTICE = _ReadOnlyNotice()


def _quiet_closed_loop(previous: Callable) -> Callable:
    """An unraisable-exception hook that drops what Orbax's abandoned reads and writes leave
    behind after a failed restore or write ("Event loop is closed" from TensorStore
    callbacks, the same read error again from each coroutine closed unawaited) and passes
    everything else to `previous`."""

    def hook(unraisable) -> None:
        err = unraisable.exc_value
        where = "".join(traceback.format_tb(unraisable.exc_traceback)) + repr(unraisable.object)
        from_orbax = f"orbax{os.sep}checkpoint" in where or "_read_array_index" in where
        closed_loop = isinstance(err, RuntimeError) and "Event loop is closed" in str(err)
        if from_orbax or (closed_loop and ("tensorstore" in where or "asyncio" in where)):
            return
        previous(unraisable)

    hook.quiets_closed_loop = True
    return hook


def install() -> None:
    """Installs the filters and the hook above (idempotent). Orbax logs through absl."""
    for name in ("absl", "asyncio"):
        log = logging.getLogger(name)
        for quiet in (_FAILED_READ_TASKS, _REPORTED_WRITE_FAILURES, _READ_ONLY_NOTICE):
            if quiet not in log.filters:
                log.addFilter(quiet)
    if not getattr(sys.unraisablehook, "quiets_closed_loop", False):
        sys.unraisablehook = _quiet_closed_loop(sys.unraisablehook)


def installed() -> bool:
    """Whether `install()` ran in this process."""
    return bool(getattr(sys.unraisablehook, "quiets_closed_loop", False))
