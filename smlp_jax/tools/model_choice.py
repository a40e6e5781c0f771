"""The model a tool works on, from its options: a run trained here or a registered model.

    --checkpoint WORKDIR [--config FILE:ARG] [--config.KEY=VALUE ...]   one of our runs
    --model NAME [--pretrained FILE] [--model-arg KEY=VALUE ...]         a registered model

`add_model_options(parser)` gives a tool these options (with `--num-classes` and
`--image-size`); `choose(args, config_overrides)` checks them, all before anything is
built and in the same words for every tool (exactly one of `--checkpoint` / `--model`;
each option with the one it belongs to; the workdir, the registered name and the weights
file exist), and reads the run; `ModelChoice.build` builds the model. predict, export and
export_serving take their model this way.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
from pathlib import Path
from typing import Any

from flax import nnx

from smlp_jax.convert import hub
from smlp_jax.factory import create_model
from smlp_jax.models.registry import get_entry
from smlp_jax.tools.errors import ToolInputError
from smlp_jax.tools.trained import Run, load_run, trained_model


def add_model_options(parser: argparse.ArgumentParser | Any) -> None:
    """The options `choose` reads, on `parser` (or an argument group of it)."""
    parser.add_argument("--checkpoint", help="one of our workdirs, its checkpoints/ or a step")
    parser.add_argument(
        "--config", help="with --checkpoint: the run's FILE.py[:ARG] (default: its run record)"
    )
    parser.add_argument("--model", help="a registered model name, e.g. smlpnet_t")
    parser.add_argument(
        "--pretrained", help="with --model: official weights (.pth/.npz/.safetensors)"
    )
    parser.add_argument(
        "--model-arg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="with --model: a hyperparameter (repeatable), e.g. depths=(1,1,1,1)",
    )
    parser.add_argument(
        "--num-classes", type=int, help="classes of the head (default: the run's or model's)"
    )
    parser.add_argument(
        "--image-size", type=int, help="with --model: the input side (default: the model's)"
    )


def parse_model_args(items: list[str]) -> dict[str, Any]:
    """`["depths=(1, 1)", "gelu_approximate=False"]` -> create_model keyword arguments."""
    kwargs = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.isidentifier():
            raise ToolInputError(f"--model-arg {item!r}: write KEY=VALUE, e.g. depths=(2,8,14,2).")
        try:
            kwargs[key] = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            kwargs[key] = text
    return kwargs


@dataclasses.dataclass(frozen=True)
class ModelChoice:
    """What the options chose: one of our runs (`run`, read from `checkpoint`) or the
    registered model `name` with `pretrained` weights (a file, or None: fresh) and the
    `--model-arg` hyperparameters. `name` is the run's model for a run."""

    name: str
    checkpoint: str | None = None
    run: Run | None = None
    pretrained: str | None = None
    model_args: dict[str, Any] = dataclasses.field(default_factory=dict)

    def build(self, num_classes: int | None = None, image_size: int | None = None) -> nnx.Module:
        """The model, in train mode: the run's config with its checkpoint's weights
        (`num_classes` defaults to the run's; the run's image size), or
        `create_model(name, ...)` (`None`: create_model's defaults)."""
        if self.run is not None:
            return trained_model(
                self.run.config, self.checkpoint, num_classes or self.run.num_classes
            )
        try:
            return create_model(
                self.name,
                pretrained=self.pretrained,
                num_classes=num_classes,
                image_size=image_size,
                **self.model_args,
            )
        except TypeError as err:  # a hyperparameter the model does not take
            raise ToolInputError(str(err)) from None


def choose(args: argparse.Namespace, config_overrides: list[str]) -> ModelChoice:
    """The model `args` (from `add_model_options`) and the `--config.KEY=VALUE` overrides
    name, checked; raises `ToolInputError` (one line) for a choice that is not one."""
    if args.checkpoint and args.model:
        raise ToolInputError(
            "--checkpoint and --model: give one of them (a run trained here, or a registered "
            "model)."
        )
    if not (args.checkpoint or args.model):
        raise ToolInputError(
            "give --checkpoint WORKDIR (a run trained here) or --model NAME (a registered "
            "model, with --pretrained FILE for its official weights)."
        )
    if args.checkpoint:
        with_model = [
            flag
            for flag, value in (
                ("--pretrained", args.pretrained),
                ("--model-arg", args.model_arg),
                ("--image-size", args.image_size),
            )
            if value
        ]
        if with_model:
            raise ToolInputError(f"{with_model[0]} goes with --model, not --checkpoint.")
        run = load_run(args.checkpoint, args.config, config_overrides)
        return ModelChoice(run.config.model, checkpoint=args.checkpoint, run=run)
    with_checkpoint = [*(["--config"] if args.config else []), *config_overrides]
    if with_checkpoint:
        raise ToolInputError(f"{with_checkpoint[0]} goes with --checkpoint, not --model.")
    if not args.model.startswith(hub.PREFIX):  # a hub model's name is in its config.json
        get_entry(args.model)  # an unknown name: the registry's line, with close matches
    if args.pretrained and not Path(args.pretrained).is_file():
        raise ToolInputError(f"--pretrained {args.pretrained}: no such file.")
    return ModelChoice(
        args.model, pretrained=args.pretrained, model_args=parse_model_args(args.model_arg)
    )
