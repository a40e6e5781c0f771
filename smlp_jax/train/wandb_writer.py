"""The optional Weights & Biases writer (`config.wandb.enabled`; `pip install wandb`).

Never required: `wandb` is imported only when the config turns it on, and a missing package
is one line before training starts. What goes to W&B is what goes to metrics.jsonl (every
train log and eval, under the same names and steps), from process 0.

The W&B run id lives in the run record (`run_record`, key "wandb": {"id", "project"}), saved
with every checkpoint: a resumed or preempted run opens the same W&B run
(`wandb.init(id=..., resume="allow")`) and skips the steps that run already holds (those
logged after the checkpoint it resumes from, before the stop: `run.step`, where W&B
resumes), so no step is logged twice. A run with no checkpoint yet starts a new W&B run.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import jax

from smlp_jax.train.errors import ConfigError

INSTALL = "pip install wandb"


def enabled(config: Any) -> bool:
    section = config.get("wandb")
    return bool(section is not None and section.get("enabled"))


def check(config: Any) -> None:
    """With W&B on, `wandb` must import: else one line saying how to install it."""
    if not enabled(config):
        return
    try:
        import wandb  # noqa: F401  # lazy: optional, only when config.wandb.enabled
    except ImportError:
        raise ConfigError(
            f"config.wandb.enabled is set but the wandb package is not installed: {INSTALL} "
            "(or leave config.wandb.enabled False; metrics.jsonl and TensorBoard need nothing)."
        ) from None


class WandbWriter:
    """`write(step, scalars)` to a W&B run; steps the run already holds are skipped."""

    def __init__(self, config: Any, workdir: str, run_id: str, run_config: dict):
        import wandb  # lazy: optional, only when config.wandb.enabled

        cfg = config.wandb
        kwargs: dict[str, Any] = dict(
            project=cfg.project or None,
            id=run_id,
            resume="allow",
            name=cfg.name or Path(workdir).resolve().name,
            config=run_config,
            dir=str(workdir),
        )
        if cfg.entity:
            kwargs["entity"] = cfg.entity
        if cfg.mode:
            kwargs["mode"] = cfg.mode
        try:
            self._run = wandb.init(**kwargs)
        except Exception as err:  # noqa: BLE001 (the optional service's failure: one line)
            reason = (str(err).strip().splitlines() or [""])[0][:200]
            raise ConfigError(
                f"W&B could not start the run ({type(err).__name__}: {reason}). Log in "
                "(`wandb login`), or --config.wandb.mode=offline, or leave "
                "config.wandb.enabled False."
            ) from None
        # Where W&B resumes (0 for a new run): earlier steps are already in the run.
        self._first = int(getattr(self._run, "step", 0) or 0)

    def write(self, step: int, scalars: dict[str, float]) -> None:
        if int(step) < self._first:
            return
        self._run.log(dict(scalars), step=int(step))

    def close(self) -> None:
        self._run.finish()


def open_writer(config: Any, workdir: str, record: dict) -> tuple[dict, list[WandbWriter]]:
    """(the record with the W&B run id, [the writer] on process 0) when W&B is on; the
    record kept as it is and no writer otherwise. The id is the record's, or a new one."""
    if not enabled(config):
        return record, []
    run_id = (record.get("wandb") or {}).get("id") or uuid.uuid4().hex[:12]
    record = {**record, "wandb": {"id": run_id, "project": config.wandb.project}}
    if jax.process_index() != 0:
        return record, []
    return record, [WandbWriter(config, workdir, run_id, record["config"])]
