"""What `main.py` runs: multi-host set-up, the chosen mode, and one-line errors.

Errors that mean "the input is wrong" (`errors.user_errors()`) become one line on stderr,
`error: <message>`, and exit status 1; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import jax


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
    """Runs `mode` and returns the exit status (0 ok, 1 bad input)."""
    from smlp_jax.train import errors, trainer

    try:
        if distributed:
            initialize_distributed(coordinator_address, num_processes, process_id)
        workdir = os.path.abspath(workdir)
        if mode == "train":
            trainer.train_and_evaluate(config, workdir)
        else:
            trainer.evaluate_only(config, workdir)
    except errors.user_errors() as err:
        print(f"error: {err}", file=sys.stderr, flush=True)
        return 1
    return 0
