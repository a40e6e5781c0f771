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
threads) are dropped by `quiet.install()`, which the process owner calls (main.py, the
tools), never a library call: the error says it once.

A save in flight can be watched without waiting for it (`in_flight_step`, `is_committed`:
a flag and a directory's existence): the preemption guard polls them from its signal
handler so that a second SIGTERM lets that checkpoint land before it exits.
Modules: `manager` (`Checkpointer`), `restore` (`newest_restorable`, setting damaged steps
aside), `shapes` (a saved state's array shapes from its index files), `encoding` (a step's
items, PRNG keys, iterator state and metrics as Orbax stores them), `errors`
(`CheckpointError`; damage told from a refused read or write), `quiet` (the process
owner's filters for Orbax's noise).
"""

from smlp_jax.train.checkpoint import quiet
from smlp_jax.train.checkpoint.encoding import abstract_key_data, data_to_keys
from smlp_jax.train.checkpoint.errors import (
    CheckpointError,
    CheckpointFallbackWarning,
    first_line,
)
from smlp_jax.train.checkpoint.manager import BEST_METRIC, CHECKPOINTS_SUBDIR, Checkpointer
from smlp_jax.train.checkpoint.restore import newest_restorable
from smlp_jax.train.checkpoint.shapes import (
    by_path,
    describe_mismatches,
    saved_shapes,
    shape_mismatches,
)

__all__ = [
    "BEST_METRIC",
    "CHECKPOINTS_SUBDIR",
    "CheckpointError",
    "CheckpointFallbackWarning",
    "Checkpointer",
    "abstract_key_data",
    "by_path",
    "data_to_keys",
    "describe_mismatches",
    "first_line",
    "newest_restorable",
    "quiet",
    "saved_shapes",
    "shape_mismatches",
]
