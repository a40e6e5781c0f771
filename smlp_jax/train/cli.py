"""What `main.py` runs: multi-host set-up, the chosen mode, and one-line errors.

Errors that mean "the input is wrong" (`smlp_jax.errors.UserError`, the base of every such
error class) become one line on stderr, `error: <message>`, and exit status 1; anything else
is a bug and keeps its traceback.
"""

from __future__ import annotations

import gc
import os
import sys
import warnings
from typing import Any

import jax

from smlp_jax.errors import UserError
from smlp_jax.train import checkpoint, preemption, trainer, workdir_lock


def _format_warning(message, category, filename, lineno, line=None) -> str:
    """Our own warnings (a damaged checkpoint passed over, ...) as one `warning:` line;
    everyone else's as Python formats them."""
    if category.__module__.startswith("smlp_jax"):
        return f"warning: {message}\n"
    return _python_format_warning(message, category, filename, lineno, line)


_python_format_warning = warnings.formatwarning


def initialize_distributed(
    coordinator_address: str | None, num_processes: int | None, process_id: int | None
) -> None:
    """`jax.distributed.initialize`; on TPU pods and SLURM all arguments are detected."""
    kwargs = {}
    if coordinator_address is not None:
        kwargs = dict(
            coordinator_address=coordinator_address,
            num_processes=num_processes,
            process_id=process_id,
        )
    jax.distributed.initialize(**kwargs)


def run(
    config: Any,
    workdir: str,
    *,
    mode: str = "train",
    distributed: bool = False,
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
) -> int:
    """Runs `mode` and returns the exit status: 0 done, 1 bad input, 128 + the signal's
    number when SIGTERM or Ctrl-C stopped training after a checkpoint (143 / 130)."""
    # This process is ours (main.py): one-line warnings, and Orbax's noise after a failed
    # read or write goes (the failure is reported as one line).
    warnings.formatwarning = _format_warning
    checkpoint.quiet.install()
    message = None
    try:
        if distributed:
            initialize_distributed(coordinator_address, num_processes, process_id)
        workdir = os.path.abspath(workdir)
        # A file or a read-only folder: one line now, not a traceback after the header.
        workdir_lock.check_workdir(workdir, writable=mode == "train")
        if mode == "train":
            final = trainer.train_and_evaluate(config, workdir)
            if final.get("stopped_by"):
                return preemption.exit_status(final["stopped_by"])
        elif mode == "probe":
            trainer.probe_only(config, workdir)
        else:
            trainer.evaluate_only(config, workdir)
    except UserError as err:
        message = str(err)
    if message is None:
        return 0
    _silence_abandoned_coroutines()
    print(f"error: {message}", file=sys.stderr, flush=True)
    return 1


def _silence_abandoned_coroutines() -> None:
    """Collects, without a word, the coroutines a failed Orbax save or read left unawaited
    (they hang off the error's traceback), so that the `error:` line stays the last line on
    stderr rather than a `RuntimeWarning` printed when the interpreter exits."""
    warnings.filterwarnings(
        "ignore", message=r"coroutine '.*' was never awaited", category=RuntimeWarning
    )
    gc.collect()
