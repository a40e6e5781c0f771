"""A model trained here, for the tools: a run's record (or config file) and its checkpoint.

`load_run(WORKDIR, None, [])` rebuilds the run's config from the run record saved with its
checkpoints (`smlp_jax.train.run_record`); `load_config("configs/smlpnet.py:demo",
["--config.KEY=VALUE", ...])` reads a config file as main.py does, by the same function
(`smlp_jax.train.config_file`: for runs made before records existed, or checked against the
record when given); `trained_model(config,
WORKDIR)` builds that config's model and fills it from the workdir's newest good
checkpoint (parameters and BatchNorm statistics).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any

import jax
from flax import nnx

from smlp_jax import data
from smlp_jax.models import initializers
from smlp_jax.tools.errors import ToolInputError
from smlp_jax.train import checkpoint, config_file, init_from, run_record
from smlp_jax.train.run_record import run_preprocessing
from smlp_jax.train.state import build_model

__all__ = [
    "Run",
    "ToolInputError",
    "load_config",
    "load_run",
    "parse_with_config_overrides",
    "run_preprocessing",
    "trained_model",
]


def load_config(spec: str, overrides: list[str]) -> Any:
    """`FILE.py[:ARG]` -> that file's `get_config(ARG)`, with `--config.KEY=VALUE` overrides
    applied, exactly as main.py reads its --config (`smlp_jax.train.config_file.load`)."""
    return config_file.load(spec, overrides)


def trained_model(config: Any, path: str, num_classes: int | None = None) -> nnx.Module:
    """`config`'s model (train mode) with the weights of our checkpoint at `path` (a
    workdir, its checkpoints folder or one step). `num_classes` defaults to the config's
    dataset's class count."""
    try:
        init_from.checkpoint_steps(path)  # none there: one line now, not after the build
    except checkpoint.CheckpointError as err:
        raise ToolInputError(str(err)) from None
    if num_classes is None:
        num_classes = data.get_dataset_info(config).num_classes
    # Every parameter comes from the checkpoint: none is drawn (for sMLPNet-T the draws and
    # their compilations were ~1.5 s of a predict), the rng state is seed 0's as before.
    with initializers.draws_skipped():
        model = build_model(config, num_classes, seed=0)
    _, params, _, rest = nnx.split(model, nnx.Param, nnx.RngState, ...)
    target = {"params": nnx.to_pure_dict(params), "model_state": nnx.to_pure_dict(rest)}
    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), target)
    try:
        loaded = init_from.load_for_init(path, abstract, partial=True)
    except checkpoint.CheckpointError as err:
        raise ToolInputError(
            f"{err} (the model built from the config and class count must be the one trained)"
        ) from None
    nnx.replace_by_pure_dict(params, loaded["params"])
    nnx.replace_by_pure_dict(rest, loaded["model_state"])
    nnx.update(model, params, rest)
    return model


def parse_with_config_overrides(
    parser: argparse.ArgumentParser, argv: list[str] | None
) -> tuple[argparse.Namespace, list[str]]:
    """`parser`'s arguments and the `--config.KEY=VALUE` overrides (for `load_config`);
    any other unknown argument is the parser's usage error."""
    args, rest = parser.parse_known_args(argv)
    unknown = [a for a in rest if not a.startswith("--config.")]
    if unknown:
        parser.error(f"unrecognised arguments: {' '.join(unknown)}")
    return args, [a for a in rest if a.startswith("--config.")]


@dataclasses.dataclass(frozen=True)
class Run:
    """A trained run as the tools see it: its config, its record (None for a run made
    before records existed) and its class count."""

    config: Any
    record: dict[str, Any] | None
    num_classes: int | None  # None: only the dataset knows (no record)

    @property
    def class_names(self) -> list[str]:
        return list(self.record["model"].get("class_names") or []) if self.record else []


def apply_overrides(config: Any, overrides: list[str]) -> Any:
    """`--config.KEY=VALUE` items onto `config` (a run record's), by main.py's rules
    (`smlp_jax.train.config_file.override`)."""
    return config_file.override(config, overrides)


def load_run(checkpoint_path: str, config_spec: str | None, overrides: list[str]) -> Run:
    """The run in `checkpoint_path` (a workdir, its checkpoints/ or one step).

    With a run record: its config (`config_spec`, when given, must describe the same model);
    without one (a run made before records): `config_spec` is required, and one line says
    the config was taken on trust. `overrides` apply to whichever config is used.
    """
    if not Path(checkpoint_path).exists():
        raise ToolInputError(f"--checkpoint {checkpoint_path}: no such workdir or step.")
    try:
        found = run_record.read(checkpoint_path)
    except run_record.RunRecordError as err:
        raise ToolInputError(str(err)) from None
    if found is None:
        if not config_spec:
            raise ToolInputError(
                f"{checkpoint_path} has no run record (made before records existed, or not "
                "one of our runs): pass the run's --config FILE:ARG."
            )
        print(
            f"note: {checkpoint_path} has no run record; using --config {config_spec} as the "
            "run's config",
            file=sys.stderr,
        )
        return Run(load_config(config_spec, overrides), None, None)
    record, step_dir = found
    if config_spec:
        config = load_config(config_spec, overrides)
        try:
            run_record.check_tool_config(record, config, str(step_dir))
        except run_record.RunRecordError as err:
            raise ToolInputError(str(err)) from None
    else:
        config = apply_overrides(run_record.config_of(record), overrides)
    return Run(config, record, int(record["model"]["num_classes"]))
