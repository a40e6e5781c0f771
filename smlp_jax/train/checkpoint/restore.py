"""Restoring the newest good step, the same one on every process.

`newest_restorable` tries steps newest first; each process reports its outcome (restored,
damaged, or a read the OS or storage refused) and all take the worst: a damaged step is
passed over everywhere, a refused read stops everywhere (`errors.read_refused`). `set_aside`
moves the damaged steps it passed over to `<step>.corrupt`.
"""

from __future__ import annotations

import gc
import itertools
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TypeVar

import jax
import numpy as np
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils

from smlp_jax.train.checkpoint.errors import (
    CheckpointError,
    CheckpointFallbackWarning,
    first_line,
    os_error_reason,
    unreadable,
)

T = TypeVar("T")

_BARRIER_COUNT = itertools.count()


def _sync(name: str) -> None:
    """A barrier across processes (Orbax's own kind); every process calls it in the same order,
    so the counter keeps the names unique, as the barrier requires."""
    if jax.process_count() > 1:
        ocp.multihost.sync_global_processes(f"smlp_jax_{name}_{next(_BARRIER_COUNT)}")


def _worst_anywhere(outcome: int) -> int:
    """The largest of every process's `outcome`: a damaged per-process file fails on one
    process only, and every process must take the same next step (or they deadlock in the
    next barrier)."""
    if jax.process_count() == 1:
        return outcome
    return int(np.max(multihost_utils.process_allgather(np.int32(outcome))))


def _failed_anywhere(failed_here: bool) -> bool:
    """Whether any process failed (see `_worst_anywhere`)."""
    return bool(_worst_anywhere(int(failed_here)))


_RESTORED, _DAMAGED, _UNREADABLE = 0, 1, 2  # a step's outcome on one process, worst last


def newest_restorable(
    steps: Iterable[int],
    restore_step: Callable[[int], T],
    step_dir: Callable[[int], Path] | None = None,
) -> tuple[int | None, T | None, list[tuple[int, BaseException]]]:
    """Tries `restore_step` on `steps`, newest first, until one succeeds on every process.

    -> `(step, result, failed)`: the step restored and what `restore_step` returned, and the
    newer steps that failed, as `(step, error)`; `step` is None when none restored. Every
    process must call it with the same steps, and all end on the same step.
    A step whose read the OS or the storage refused (`errors.read_refused`: permission denied, an
    I/O error...) on any process is not passed over: every process raises `CheckpointError`,
    one line naming the file (else `step_dir(step)`) and the reason.
    """
    failed: list[tuple[int, BaseException]] = []
    for step in sorted(steps, reverse=True):
        error: BaseException | None = None
        report = None
        try:
            result = restore_step(step)
        except Exception as err:  # damage surfaces as many error types from Orbax/TensorStore
            error = err
            gc.collect()  # the failed step's abandoned reads go now, their noise filtered
            report = unreadable(step, err, step_dir(step) if step_dir else None)
        outcome = _RESTORED if error is None else _UNREADABLE if report else _DAMAGED
        outcome = _worst_anywhere(outcome)
        if outcome == _UNREADABLE:
            raise CheckpointError(
                report
                or f"could not read checkpoint step {step} on another process (its error "
                "names the file and the reason); nothing was moved aside and no older step "
                "was used."
            ) from error
        if outcome == _DAMAGED:
            error = error or CheckpointError(f"step {step} failed on another process")
            failed.append((step, error))
            continue
        return step, result, failed
    return None, None, failed


def set_aside(
    directory: Path, failed: list[tuple[int, BaseException]], fallback_step: int, read_only: bool
) -> None:
    """Moves each damaged `(step, error)` of `failed` aside to `<step>.corrupt` (process 0
    renames, every process agrees) and warns once per step that `fallback_step` was used
    instead; a read-only reader leaves them in place. A refused rename stops every process
    with one `CheckpointError`: left in place, the damaged step would block the save of its
    own step number when the resumed run reaches it again."""
    for step, err in failed:
        source = directory / str(step)
        target = directory / f"{step}.corrupt"
        suffix = 1
        while target.exists():
            target = directory / f"{step}.corrupt-{suffix}"
            suffix += 1
        if read_only:
            action = "Left it in place (read-only)"
        else:
            _sync("checkpoint_set_aside_before")
            refused: OSError | None = None
            if jax.process_index() == 0:
                try:
                    source.rename(target)
                except OSError as rename_error:
                    refused = rename_error
            # Stops every process: left in place, the damaged step would block the save
            # of its own step number when the resumed run reaches it again.
            if _failed_anywhere(refused is not None):  # also the barrier after the rename
                reason = "refused on process 0"
                if refused is not None:
                    reason = os_error_reason(refused) or first_line(refused)
                raise CheckpointError(
                    f"checkpoint step {step} in {directory} is damaged "
                    f"({first_line(err)}) but could not be moved aside, {source} -> "
                    f"{target}: {reason}; move it away yourself and run again (step "
                    f"{fallback_step} restores)."
                ) from refused
            action = f"Moved it aside to {target.name}"
        warnings.warn(
            f"Checkpoint step {step} in {directory} could not be restored "
            f"({first_line(err)}). {action} and resumed from step {fallback_step} instead.",
            CheckpointFallbackWarning,
            stacklevel=3,
        )
