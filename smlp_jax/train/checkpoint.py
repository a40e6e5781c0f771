"""Orbax checkpoints of the train state, each process's input-iterator state and the metrics.

One checkpoint per saved step, under `<workdir>/checkpoints/<step>/`:

    state/                  the train-state pytree (Orbax `StandardSave`, OCDBT); typed PRNG
                            key arrays are stored as their uint32 key data and re-wrapped on
                            restore, so nnx `Rngs` state can sit in the pytree as it is
    data/process_<i>.json   process i's input-iterator state (each host reads its own shard)
    meta/meta.json          {"step", "metrics", "process_count"}
    record/run.json         the run record (smlp_jax.train.run_record), when the trainer saves

Atomicity: Orbax writes a step into `<step>.orbax-checkpoint-tmp-*` and renames it once every
process has finished, so a killed run leaves at worst a temporary directory; it is never
listed as a step, and the next writing `Checkpointer` deletes it (in the background, before
its first save). A committed step whose content was damaged later is found when restoring
it: `restore` warns, moves it aside to `<step>.corrupt` (never deletes it) and falls back to
the previous step; all processes agree on that step. Damage must be shown, not assumed: data
that was read and does not decode, a file missing from the step, bad JSON, a wrong shape, an
input-iterator state its validator (`check_data_state`) rejects. A read the operating system
or the storage refused (permission denied, I/O error, a timeout or stale handle of a network
file system, too many open files...; not "no such file", which is damage) says nothing about
the content: it is one `CheckpointError` line, `could not read checkpoint step 60: FILE:
Permission denied; ...`, on every process, and nothing is moved aside or skipped. A damaged
step that cannot be moved aside (the rename refused) is a `CheckpointError` naming both paths
too, rather than a resume that would meet the same step again at its next save.
`read_only=True` readers (evaluating a run that may be training) touch nothing.

Retention: the last `keep` steps plus the one with the best `eval/top1`. Orbax's own
`best_fn` + `max_to_keep` keeps the best N instead, so this uses a preservation policy,
`AnyPreservationPolicy([LatestN(keep), BestN(n=1)])`.

`smlp_jax.train.init_from.load_for_init` reads the `state/` of these steps for
`config.init_from`, through the same key-data conversion and `newest_restorable` fall-back.

A save the operating system refuses (disk full, quota, file-size limit) raises a one-line
`CheckpointError`, `could not write checkpoint 40 to W/checkpoints: No space left on device;
the checkpoint of step 20 is intact`: from `save` when synchronous, and for an asynchronous
save from `check()` once the background write has failed (the trainer calls it every step,
so the failure of step 80 stops the run at step 81 or so, not at the next save), or else
from the next `save`, `wait`, `restore` or `close`; it is raised once. The failed step stays
a temporary directory (never listed; the next writer removes it), and no older step is
deleted for it. Orbax's own log records of such a failure (a traceback each, from several
threads) are dropped: the error says it once.

A save in flight can be watched without waiting for it (`in_flight_step`, `is_committed`:
a flag and a directory's existence): the preemption guard polls them from its signal
handler so that a second SIGTERM lets that checkpoint land before it exits.
"""

from __future__ import annotations

import errno
import gc
import itertools
import json
import logging
import os
import re
import sys
import traceback
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import jax
import numpy as np
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils
from orbax.checkpoint import checkpoint_managers

BEST_METRIC = "eval/top1"
CHECKPOINTS_SUBDIR = "checkpoints"

__all__ = [
    "BEST_METRIC",
    "CheckpointError",
    "CheckpointFallbackWarning",
    "Checkpointer",
    "newest_restorable",
]

T = TypeVar("T")


class CheckpointError(RuntimeError):
    """No usable checkpoint where one was required (missing, corrupt, or not matching), or a
    checkpoint the OS would not let us write (disk full), read (permission denied, an I/O
    error) or move aside."""


class CheckpointFallbackWarning(UserWarning):
    """A damaged checkpoint was skipped and an older one used instead."""


def _item_handlers() -> dict[str, ocp.CheckpointHandler]:
    # primary_host=None: every process writes its own data file (the default is process 0 only).
    per_process = ocp.options.MultiprocessingOptions(primary_host=None)
    return {
        "state": ocp.StandardCheckpointHandler(),
        "data": ocp.JsonCheckpointHandler(
            filename=f"process_{jax.process_index()}.json", multiprocessing_options=per_process
        ),
        "meta": ocp.JsonCheckpointHandler(filename="meta.json"),
        # What the run is (smlp_jax.train.run_record): written by process 0.
        "record": ocp.JsonCheckpointHandler(filename="run.json"),
    }


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


def first_line(err: BaseException) -> str:
    """`Type: first line of the message` (at most 300 characters), for one-line reports."""
    text = str(err).strip().splitlines()
    line = text[0].split(" See full TensorStore details")[0] if text else ""  # a spec dump
    return f"{type(err).__name__}: {line[:300]}"


def _chain(err: BaseException) -> Iterable[BaseException]:
    """`err`, then what it was raised from (or while handling), and so on."""
    seen: BaseException | None = err
    while seen is not None:
        yield seen
        seen = seen.__cause__ or seen.__context__


def _os_errno(err: BaseException) -> int | None:
    """The operating system's error number behind `err`: an OSError's in its chain, or
    TensorStore's `[os_error_code='28']`; None if there is none."""
    for seen in _chain(err):
        if isinstance(seen, OSError) and seen.errno:
            return seen.errno
        code = re.search(r"os_error_code='(\d+)'", str(seen))
        if code:
            return int(code.group(1))
    return None


def _os_error_reason(err: BaseException) -> str | None:
    """The operating system's reason a write failed ("No space left on device"), from an
    OSError in `err`'s chain or TensorStore's `[os_error_code='28']`; None if there is none."""
    code = _os_errno(err)
    return None if code is None else os.strerror(code)


# A file or folder not there, or not a file, where the step has one: its content is damaged
# (deleted, a cut copy), where every other OS error says only that it could not be read now.
_MISSING = frozenset({errno.ENOENT, errno.EISDIR, errno.ENOTDIR})
# The statuses of a refused read from storage without an OS error number (object stores):
# TensorStore's message starts with one. NOT_FOUND, DATA_LOSS, OUT_OF_RANGE... are damage.
_REFUSED_STATUS = {
    "PERMISSION_DENIED": "permission denied",
    "UNAUTHENTICATED": "not authenticated",
    "UNAVAILABLE": "storage unavailable",
    "DEADLINE_EXCEEDED": "timed out",
    "RESOURCE_EXHAUSTED": "out of memory or another resource",
}


def _read_refused(err: BaseException) -> str | None:
    """Why a read failed when the operating system or the storage refused it ("Permission
    denied", "Input/output error", "Stale file handle"...), which says nothing about the
    content; None when `err` is not such a refusal (damage, a mismatch)."""
    code = _os_errno(err)
    if code is not None:
        return None if code in _MISSING else os.strerror(code)
    for seen in _chain(err):
        status = re.match(r"\s*([A-Z_]+): ", str(seen))
        if status and status.group(1) in _REFUSED_STATUS:
            return _REFUSED_STATUS[status.group(1)]
    return None


def _failed_path(err: BaseException) -> str | None:
    """The file a failed read names: an OSError's filename, else the longest quoted absolute
    path in the message (TensorStore names the store, then the file in it); None if none."""
    for seen in _chain(err):
        if isinstance(seen, OSError) and seen.filename:
            return os.fsdecode(seen.filename)
        text = str(seen).split(" [tensorstore_spec")[0]  # the spec dump quotes its paths too
        paths = re.findall(r'"(/[^"]+)"', text)
        if paths:
            return max(paths, key=len)
    return None


def _unreadable(step: int, err: BaseException, step_dir: Path | None) -> str | None:
    """The one-line report of a step whose read was refused (see `_read_refused`), naming the
    file if known, else the step directory; None when `err` is no such refusal."""
    reason = _read_refused(err)
    if reason is None:
        return None
    where = _failed_path(err) or (str(step_dir) if step_dir is not None else None)
    return (
        f"could not read checkpoint step {step}: {where + ': ' if where else ''}{reason}; it "
        "may well be intact, so it was not moved aside and no older step was used: make it "
        "readable (permissions, the mount, the storage) and run again."
    )


class _ReportedWriteFailures(logging.Filter):
    """Drops the log records of a checkpoint write the OS refused: `Checkpointer` raises that
    failure as one `CheckpointError` line, where Orbax logs a traceback for it from several
    threads (through absl) and asyncio one for each other write that failed with it."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if error is None or _os_error_reason(error) is None:
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


def _quiet_orbax_noise() -> None:
    """Installs the two filters above once per process (idempotent)."""
    asyncio_log = logging.getLogger("asyncio")
    if _FAILED_READ_TASKS not in asyncio_log.filters:
        asyncio_log.addFilter(_FAILED_READ_TASKS)
    absl_log = logging.getLogger("absl")
    if _FAILED_READ_TASKS not in absl_log.filters:
        absl_log.addFilter(_FAILED_READ_TASKS)
    if not getattr(sys.unraisablehook, "quiets_closed_loop", False):
        sys.unraisablehook = _quiet_closed_loop(sys.unraisablehook)


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
    A step whose read the OS or the storage refused (`_read_refused`: permission denied, an
    I/O error...) on any process is not passed over: every process raises `CheckpointError`,
    one line naming the file (else `step_dir(step)`) and the reason.
    """
    _quiet_orbax_noise()
    failed: list[tuple[int, BaseException]] = []
    for step in sorted(steps, reverse=True):
        error: BaseException | None = None
        unreadable = None
        try:
            result = restore_step(step)
        except Exception as err:  # damage surfaces as many error types from Orbax/TensorStore
            error = err
            gc.collect()  # the failed step's abandoned reads go now, their noise filtered
            unreadable = _unreadable(step, err, step_dir(step) if step_dir else None)
        outcome = _RESTORED if error is None else _UNREADABLE if unreadable else _DAMAGED
        outcome = _worst_anywhere(outcome)
        if outcome == _UNREADABLE:
            raise CheckpointError(
                unreadable
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


# --- pytree <-> what Orbax stores ------------------------------------------------------------


def _is_key(leaf: Any) -> bool:
    dtype = getattr(leaf, "dtype", None)
    return dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key)


def _keys_to_data(state: Any) -> Any:
    """Replaces typed PRNG key arrays (shape S) by their uint32 key data (S + (2,) for
    threefry): Orbax stores plain arrays."""
    return jax.tree.map(lambda leaf: jax.random.key_data(leaf) if _is_key(leaf) else leaf, state)


_REPLICATED: list[jax.sharding.Sharding] = []


def _replicated() -> jax.sharding.Sharding:
    if not _REPLICATED:
        mesh = jax.sharding.Mesh(np.asarray(jax.devices()), ("replica",))
        _REPLICATED.append(jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec()))
    return _REPLICATED[0]


def _key_data_sharding(sharding: jax.sharding.Sharding, ndim: int) -> jax.sharding.Sharding:
    """The sharding of a key array's data: the key's own axes, then the unsharded key axes."""
    if isinstance(sharding, jax.sharding.NamedSharding):
        spec = tuple(sharding.spec) + (None,) * (ndim - len(sharding.spec))
        return jax.sharding.NamedSharding(sharding.mesh, jax.sharding.PartitionSpec(*spec))
    if sharding.is_fully_replicated:
        return sharding
    raise TypeError(
        f"Cannot restore a PRNG key array sharded by {type(sharding).__name__}; give it a "
        "NamedSharding in the abstract state."
    )


def abstract_key_data(abstract_state: Any) -> Any:
    """The restore target: ShapeDtypeStructs with shardings (missing ones: replicated), PRNG
    key leaves replaced by their key-data shape and dtype."""

    def convert(leaf):
        if not hasattr(leaf, "shape") or not hasattr(leaf, "dtype"):
            raise TypeError(
                f"The abstract state must hold jax.ShapeDtypeStruct or arrays, got "
                f"{type(leaf).__name__}; build it with jax.eval_shape."
            )
        sharding = getattr(leaf, "sharding", None) or _replicated()
        if _is_key(leaf):
            data = jax.eval_shape(jax.random.key_data, jax.ShapeDtypeStruct(leaf.shape, leaf.dtype))
            sharding = _key_data_sharding(sharding, data.ndim)
            return jax.ShapeDtypeStruct(data.shape, data.dtype, sharding=sharding)
        return jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=sharding)

    return jax.tree.map(convert, abstract_state)


def data_to_keys(restored: Any, abstract_state: Any) -> Any:
    """Inverse of `_keys_to_data`: key data back into keys of the abstract leaf's key dtype."""

    def convert(leaf, target):
        if not _is_key(target):
            return leaf
        key = jax.random.wrap_key_data(leaf, dtype=target.dtype)
        # The keys inherit the key data's sharding spec, one axis too long; state it exactly.
        return jax.device_put(key, getattr(target, "sharding", None) or _replicated())

    return jax.tree.map(convert, restored, abstract_state)


def _metrics_to_json(metrics: dict[str, Any] | None) -> dict[str, Any] | None:
    if metrics is None:
        return None
    out = {}
    for name, value in metrics.items():
        array = np.asarray(value)  # jax and numpy scalars alike
        if array.shape != () or not np.issubdtype(array.dtype, np.number):
            raise TypeError(f"metrics[{name!r}] must be a scalar number, got {value!r}.")
        out[str(name)] = array.item()
    return out


def _encode_data_state(data_state: dict[str, Any] | None) -> dict[str, Any]:
    """The input iterator's state (`TrainIterator.get_state()`, a dict of ints) -> the JSON
    of `data/process_<i>.json`; checked here, not in Orbax's background thread."""
    if data_state is None:
        return {"kind": "none"}
    if not isinstance(data_state, dict):
        raise TypeError(f"data_state must be a dict or None, got {type(data_state).__name__}.")
    try:
        same = json.loads(json.dumps(data_state)) == data_state
    except (TypeError, ValueError) as err:
        raise TypeError(f"data_state must be JSON-serialisable: {err}") from None
    if not same:
        raise TypeError(
            "data_state would not survive JSON unchanged (tuples, non-string keys?): "
            "use lists and string keys."
        )
    return {"kind": "dict", "value": data_state}


def _decode_data_state(stored: Any) -> dict[str, Any] | None:
    """The JSON of `data/process_<i>.json` -> the iterator state saved (a dict) or None;
    ValueError (the file is damaged) for anything `_encode_data_state` does not write."""
    kind = stored.get("kind") if isinstance(stored, dict) else None
    if kind == "dict" and isinstance(stored.get("value"), dict):
        return stored["value"]
    if kind == "none":
        return None
    raise ValueError(
        'data_state is not {"kind": "dict", "value": {...}} or {"kind": "none"}: '
        f"{json.dumps(stored)[:100]}"
    )


# --- the checkpointer -------------------------------------------------------------------------


class Checkpointer:
    """Saves and restores training checkpoints under `<workdir>/checkpoints`.

    Args:
      workdir: the run's directory; checkpoints go to `workdir/checkpoints/<step>`.
      keep: how many of the most recent checkpoints to keep (None: all).
      keep_best: also keep the checkpoint with the highest `metrics[best_metric]`.
      async_save: write in a background thread; `save` returns once the arrays are copied
        to host memory, so the caller may donate or overwrite the state right away.
      best_metric: the metric that ranks checkpoints (higher is better).
      read_only: only restore (e.g. evaluating the workdir of a run that may be training right
        now): nothing is created, cleaned up, saved, deleted or moved aside.
    """

    def __init__(
        self,
        workdir: str | os.PathLike,
        *,
        keep: int | None = 3,
        keep_best: bool = True,
        async_save: bool = True,
        best_metric: str = BEST_METRIC,
        read_only: bool = False,
    ):
        if keep is not None and keep < 1:
            raise ValueError(f"keep={keep}: keep at least 1 checkpoint (or None for all).")
        self.directory = Path(workdir) / CHECKPOINTS_SUBDIR
        self.best_metric = best_metric
        self._keep_best = keep_best
        self.read_only = read_only
        policies: list[Any] = [checkpoint_managers.LatestN(n=keep)]
        if keep_best:
            policies.append(
                checkpoint_managers.BestN(
                    get_metric_fn=self._rank,
                    reverse=False,  # ascending; BestN keeps the tail, i.e. the highest
                    n=1,
                    keep_checkpoints_without_metrics=False,
                )
            )
        writer_options = dict(
            preservation_policy=checkpoint_managers.AnyPreservationPolicy(policies),
            # best_fn only makes Orbax write each step's metrics (so the ranking survives a
            # restart); the preservation policy above decides what is deleted.
            best_fn=self._rank if keep_best else None,
            best_mode="max",
            enable_async_checkpointing=async_save,
            # A killed run's half-written steps; a read-only reader must leave them alone, as
            # they may belong to a save in flight.
            cleanup_tmp_directories=True,
            create=True,
        )
        reader_options = dict(read_only=True, save_interval_steps=0, create=False)
        options = ocp.CheckpointManagerOptions(**(reader_options if read_only else writer_options))
        self._manager = ocp.CheckpointManager(
            self.directory, options=options, item_handlers=_item_handlers()
        )
        self._in_flight: int | None = None  # the step an asynchronous save may be writing
        if not read_only:
            for logger in ("absl", "asyncio"):  # Orbax logs through absl
                logging.getLogger(logger).addFilter(_REPORTED_WRITE_FAILURES)

    def _rank(self, metrics: dict[str, Any]) -> float:
        """Checkpoints without a finite `best_metric` rank lowest (BestN breaks ties by recency)."""
        value = metrics.get(self.best_metric)
        return float(value) if value is not None and np.isfinite(value) else -np.inf

    def latest_step(self) -> int | None:
        """The newest committed step (not yet checked for damage; `restore` does that)."""
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        """Committed steps, oldest first."""
        return sorted(self._manager.all_steps())

    def save(
        self,
        step: int,
        state: Any,
        *,
        data_state: dict[str, Any] | None = None,
        metrics: dict[str, Any] | None = None,
        record: dict[str, Any] | None = None,
        force: bool = False,
    ) -> bool:
        """Starts saving `state` (any pytree of jax arrays) as checkpoint `step`, with the
        run's `record` (`smlp_jax.train.run_record`, JSON) beside it when given.

        A step that is already saved is skipped; so is a step older than the latest one
        unless `force`. Returns whether a save was started. Call `wait()` before relying on
        the files (or before the process exits). Raises `CheckpointError` when the OS refuses
        the write (disk full), for this step or for an asynchronous save still in flight.
        """
        if self.read_only:
            raise CheckpointError(f"This Checkpointer of {self.directory} is read-only.")
        step = int(step)
        self.wait()  # an earlier save that failed is reported as its own step, not this one
        latest = self.latest_step()
        if step in self._manager.all_steps() or (
            not force and latest is not None and step < latest
        ):
            return False
        storable = _keys_to_data(state)
        metrics_json = _metrics_to_json(metrics)
        meta = {
            "step": step,
            "metrics": metrics_json,
            "process_count": jax.process_count(),
        }
        items = dict(
            state=ocp.args.StandardSave(storable),
            data=ocp.args.JsonSave(_encode_data_state(data_state)),
            meta=ocp.args.JsonSave(meta),
        )
        if record is not None:
            items["record"] = ocp.args.JsonSave(record)
        args = ocp.args.Composite(**items)
        try:
            # force=True: the trainer decides when to save, not Orbax's save-interval policy.
            started = self._manager.save(
                step,
                args=args,
                metrics=(metrics_json or {}) if self._keep_best else None,
                force=True,
            )
        except Exception as err:
            failure = self._write_failed(step, err)
            if failure is None:
                raise
            raise failure from err
        self._in_flight = step if started else None
        return started

    def _write_failed(self, step: int | None, err: Exception) -> CheckpointError | None:
        """A one-line `CheckpointError` for a write the OS refused; None for anything else
        (a bug, which keeps its traceback)."""
        reason = _os_error_reason(err)
        if reason is None:
            return None
        # Orbax's in-memory list already lacks the steps it meant to delete after this save;
        # the directory says what is really there.
        self._manager.reload()
        kept = self._manager.latest_step()
        intact = (
            f"the checkpoint of step {kept} is intact"
            if kept is not None
            else "there is no earlier checkpoint"
        )
        which = "a checkpoint" if step is None else f"checkpoint {step}"
        return CheckpointError(f"could not write {which} to {self.directory}: {reason}; {intact}")

    def restore(
        self,
        abstract_state: Any,
        check_data_state: Callable[[Any], None] | None = None,
    ) -> tuple[int, Any, Any] | None:
        """Restores the latest good checkpoint as `(step, state, data_state)`; None if none.

        `abstract_state` is a pytree of `jax.ShapeDtypeStruct` (or arrays) whose `sharding`
        says where each restored array goes, so the state is restored directly sharded.
        `check_data_state` (e.g. `TrainIterator.check_state`) raises ValueError for a stored
        input-iterator state that is not one; that step then counts as damaged.
        A damaged checkpoint is moved aside with a `CheckpointFallbackWarning` once an older
        one has restored; if none restores, a `CheckpointError` is raised and nothing is
        moved (then the cause is more likely a changed model than damage). A read refused
        by the OS or the storage raises a one-line `CheckpointError` and moves nothing.
        """
        self.wait()
        step, result, failed = newest_restorable(
            self._manager.all_steps(),
            lambda step: self._restore_step(step, abstract_state, check_data_state),
            step_dir=lambda step: self.directory / str(step),
        )
        if step is not None:
            if failed:
                self._set_aside(failed, fallback_step=step)
            return (step, *result)
        if failed:
            details = "; ".join(f"step {s}: {first_line(e)}" for s, e in failed)
            raise CheckpointError(
                f"None of the checkpoints in {self.directory} could be restored into the "
                f"requested state ({details}). If the model or optimiser changed, use a new "
                "--workdir (or config.init_from to start from these weights); if the files "
                "are damaged, move the bad step directories aside."
            ) from failed[0][1]
        return None

    def _restore_step(
        self, step: int, abstract_state: Any, check_data_state: Callable[[Any], None] | None
    ) -> tuple[Any, Any]:
        # One collective Orbax restore of what all processes share...
        restored = self._manager.restore(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract_key_data(abstract_state)),
                meta=ocp.args.JsonRestore(),
            ),
        )
        state = data_to_keys(restored["state"], abstract_state)
        saved_processes = restored["meta"].get("process_count", 1)
        if saved_processes != jax.process_count():
            warnings.warn(
                f"Checkpoint step {step} holds the input-iterator state of {saved_processes} "
                f"processes but this run has {jax.process_count()}: the input pipeline starts "
                "from its beginning.",
                CheckpointFallbackWarning,
                stacklevel=5,  # the caller of `restore`, past `newest_restorable`
            )
            return state, None
        # ...then this process's own iterator state, read outside Orbax: damage to one
        # process's file fails that process only, past Orbax's barriers, where `restore` can
        # still agree with the others on a fallback.
        data_file = self.directory / str(step) / "data" / f"process_{jax.process_index()}.json"
        data_state = _decode_data_state(json.loads(data_file.read_text()))
        if data_state is not None and check_data_state is not None:
            try:
                check_data_state(data_state)
            except ValueError as err:  # valid JSON, but no state the iterator could have saved
                raise ValueError(f"data/{data_file.name}: {err}") from None
        return state, data_state

    def _set_aside(self, failed: list[tuple[int, BaseException]], fallback_step: int) -> None:
        for step, err in failed:
            source = self.directory / str(step)
            target = self.directory / f"{step}.corrupt"
            suffix = 1
            while target.exists():
                target = self.directory / f"{step}.corrupt-{suffix}"
                suffix += 1
            if self.read_only:
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
                        reason = _os_error_reason(refused) or first_line(refused)
                    raise CheckpointError(
                        f"checkpoint step {step} in {self.directory} is damaged "
                        f"({first_line(err)}) but could not be moved aside, {source} -> "
                        f"{target}: {reason}; move it away yourself and run again (step "
                        f"{fallback_step} restores)."
                    ) from refused
                action = f"Moved it aside to {target.name}"
            warnings.warn(
                f"Checkpoint step {step} in {self.directory} could not be restored "
                f"({first_line(err)}). {action} and resumed from step {fallback_step} instead.",
                CheckpointFallbackWarning,
                stacklevel=3,
            )
        if not self.read_only:
            self._manager.reload()

    def wait(self) -> None:
        """Blocks until every started save is committed to disk."""
        step = self._in_flight
        try:
            self._manager.wait_until_finished()
        except Exception as err:
            failure = self._write_failed(step, err)
            if failure is None:
                raise
            raise failure from err
        finally:
            # Only now: a signal handler that runs while this waits (a second SIGTERM) must
            # still see the step being written.
            self._in_flight = None

    def check(self) -> None:
        """Raises the one-line `CheckpointError` of an asynchronous save whose background
        write has failed; returns at once otherwise. It never waits for a save still being
        written, so the training loop calls it every step."""
        if self._in_flight is not None and self._save_finished():
            self.wait()  # nothing left to wait for: it collects the outcome (and the error)

    def in_flight_step(self) -> int | None:
        """The step an asynchronous save is still writing (started, not committed, not
        failed); None if there is none. A flag and a directory's existence, no waiting and
        nothing of Orbax's threads: a signal handler may poll it."""
        step = self._in_flight
        if step is None or self.is_committed(step) or self._save_finished():
            return None
        return step

    def is_committed(self, step: int) -> bool:
        """Whether checkpoint `step` is committed: Orbax renames `<step>.orbax-checkpoint-tmp-*`
        to `<step>` once every file is written, so the final directory is the commit."""
        return (self.directory / str(int(step))).is_dir()

    def _save_finished(self) -> bool:
        """Whether the save last started has finished, committed or failed, without waiting:
        Orbax's save-finalize thread (started by an asynchronous save) has ended.
        `is_saving_in_progress()` says the same, but with several processes it can wait on
        the lock the finalize thread holds through a barrier, so it is only the fallback."""
        finalize = getattr(self._manager, "_finalize_thread", None)  # Orbax 0.12
        if finalize is None:
            return not self._manager.is_saving_in_progress()
        thread = finalize.get()
        return thread is None or not thread.is_alive()

    def close(self) -> None:
        """Waits for pending saves and releases Orbax's threads."""
        try:
            self.wait()
        finally:
            self._manager.close()

    def __enter__(self) -> Checkpointer:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
