"""`Checkpointer`: saves, retention, restore with fall-back, and watching a save in flight.

The layout of a step, atomicity, retention and the failure rules are described in the
package docstring (`smlp_jax.train.checkpoint`).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers

from smlp_jax.train.checkpoint.encoding import (
    abstract_key_data,
    data_to_keys,
    item_handlers,
    metrics_to_json,
    read_data_state,
    save_args,
)
from smlp_jax.train.checkpoint.errors import (
    CheckpointError,
    CheckpointFallbackWarning,
    first_line,
    os_error_reason,
    write_failure,
)
from smlp_jax.train.checkpoint.restore import newest_restorable, set_aside
from smlp_jax.train.checkpoint.shapes import describe_mismatches, saved_shapes, shape_mismatches

BEST_METRIC = "eval/top1"
CHECKPOINTS_SUBDIR = "checkpoints"


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
            self.directory, options=options, item_handlers=item_handlers()
        )
        self._in_flight: int | None = None  # the step an asynchronous save may be writing

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
        metrics_json = metrics_to_json(metrics)
        args = save_args(step, state, data_state, metrics_json, record)
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
        if os_error_reason(err) is None:
            return None
        # Orbax's in-memory list already lacks the steps it meant to delete after this save;
        # the directory says what is really there.
        self._manager.reload()
        return write_failure(self.directory, step, err, self._manager.latest_step())

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
        moved (then the cause is more likely a changed model than damage: arrays saved with
        other shapes are named, as `mismatches` too). A read refused
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
                set_aside(self.directory, failed, step, self.read_only)
                if not self.read_only:
                    self._manager.reload()
            return (step, *result)
        if failed:
            raise self._none_restored(failed, abstract_state) from failed[0][1]
        return None

    def _none_restored(self, failed: list, abstract_state: Any) -> CheckpointError:
        """The one-line error when no step restores. Where a step's index files show arrays
        of other shapes than `abstract_state`'s, it names them (not Orbax's restore error,
        whose advice is about Orbax's own options): then the checkpoints hold another model
        or optimiser, not damage."""
        target = abstract_key_data(abstract_state)
        differ = {s: _shape_mismatches(self.directory / str(s), target) for s, _ in failed}
        details = "; ".join(
            f"step {s}: " + (describe_mismatches(differ[s]) if differ[s] else first_line(e))
            for s, e in failed
        )
        if all(differ.values()):
            err = CheckpointError(
                f"The checkpoints in {self.directory} hold another model or optimiser than "
                f"this config builds ({details}). Use the config they were saved with (each "
                "step's record/run.json has it), or a new --workdir (config.init_from starts "
                "from their weights)."
            )
            err.mismatches = tuple(differ[failed[0][0]])
            return err
        return CheckpointError(
            f"None of the checkpoints in {self.directory} could be restored into the "
            f"requested state ({details}). If the model or optimiser changed, use a new "
            "--workdir (or config.init_from to start from these weights); if the files "
            "are damaged, move the bad step directories aside."
        )

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
        return state, read_data_state(self.directory / str(step), check_data_state)

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


def _shape_mismatches(step_dir: Path, target: Any) -> list[str]:
    """What `shapes.shape_mismatches` finds between a step's saved arrays and `target`
    (none where the index files do not tell, or cannot be read)."""
    try:
        saved = saved_shapes(step_dir / "state")
    except OSError:
        return []
    found = shape_mismatches(saved, target) if saved else []
    return sorted(found, key=lambda text: not text.startswith("'params/"))  # weights first
