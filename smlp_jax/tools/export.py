"""Export weights: one of our checkpoints (or a model with official weights) to the
official layout of its family, or to a Hugging Face Hub folder.

    python -m smlp_jax.tools.export --checkpoint workdirs/demo \
        --config configs/smlpnet.py:demo --to official --out smlpnet_demo.safetensors
    python -m smlp_jax.tools.export --model mixer_b16 --pretrained Mixer-B_16.npz \
        --to official --out mixer_b16_timm.safetensors          # vit_jax -> timm keys
    python -m smlp_jax.tools.export --checkpoint workdirs/demo \
        --config configs/smlpnet.py:demo --to hub --out smlpnet_demo_hub/

`--to`: `official` (the family's PyTorch state dict, as `.safetensors`, `.pth`/`.pt` with
PyTorch installed, or `.npz`: the official code and timm load it with `strict=True`),
`vit_jax` (MLP-Mixer's Flax `.npz`), `smlp_jax` (our variable paths, every family) or
`hub` (a folder for `create_model("hf-hub:...")` / the Hub: `smlp_jax.save_pretrained`).
`--config.KEY=VALUE` overrides fields of the run's config as in main.py. Bad input ends
with one line `error: ...` on stderr and exit status 1.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import smlp_jax
from smlp_jax.convert.export import LAYOUTS, save_weights
from smlp_jax.tools.predict import parse_model_args
from smlp_jax.tools.trained import (
    ToolInputError,
    load_config,
    parse_with_config_overrides,
    run_preprocessing,
    trained_model,
)
from smlp_jax.train.cli import USER_ERRORS
from smlp_jax.train.metrics import last_logged


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    source = parser.add_argument_group("what to export (one of)")
    source.add_argument("--checkpoint", help="one of our workdirs, checkpoints/ or a step")
    source.add_argument("--config", help="the run's config, FILE.py[:ARG] (with --checkpoint)")
    source.add_argument("--model", help="a registered name (with --pretrained)")
    source.add_argument("--pretrained", help="official weights for --model")
    source.add_argument("--model-arg", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--num-classes", type=int, help="default: the run's dataset / 1000")
    parser.add_argument("--image-size", type=int, help="with --model (default: its own)")
    parser.add_argument("--to", choices=(*LAYOUTS, "hub"), default="official")
    parser.add_argument("--out", required=True, help="the file (or, for --to hub, a folder)")
    return parser


def load_model(args: argparse.Namespace, config_overrides: list[str]):
    """(the model to export, the run's config or None), from the command-line options."""
    if args.checkpoint:
        if not args.config:
            raise ToolInputError("--checkpoint needs --config FILE:ARG (the run's config).")
        config = load_config(args.config, config_overrides)
        return trained_model(config, args.checkpoint, args.num_classes), config
    if config_overrides:
        raise ToolInputError(f"{config_overrides[0]}: --config.KEY needs --checkpoint.")
    if not args.model:
        raise ToolInputError("give --checkpoint WORKDIR --config CFG, or --model NAME.")
    model = smlp_jax.create_model(
        args.model,
        pretrained=args.pretrained,
        num_classes=args.num_classes,
        image_size=args.image_size,
        **parse_model_args(args.model_arg),
    )
    return model, None


def training_summary(config: Any, args: argparse.Namespace) -> dict[str, Any]:
    """The model card's "Training" lines for a run: its config, data, recipe and the last
    eval it logged (from the workdir's metrics.jsonl, when `--checkpoint` is a workdir)."""
    summary = {
        "Config": f"`{args.config}`",
        "Data": f"{config.dataset}, {config.image_size}x{config.image_size}",
        "Recipe": (
            f"{config.total_steps} steps of batch {config.batch_size}, "
            f"{config.optimizer.name} lr {config.optimizer.lr}"
        ),
    }
    final = last_logged(args.checkpoint, "eval/")
    if "eval/top1" in final:
        summary["Last eval"] = f"top-1 {100 * final['eval/top1']:.2f}% ({config.dataset})"
    return summary


def main(argv: list[str] | None = None) -> int:
    args, overrides = parse_with_config_overrides(build_parser(), argv)
    try:
        model, config = load_model(args, overrides)
        if args.to == "hub":
            # A run's own preprocessing and recipe, not its family's official ones.
            run = (
                {}
                if config is None
                else dict(
                    preprocessing=run_preprocessing(config), training=training_summary(config, args)
                )
            )
            smlp_jax.save_pretrained(model, args.out, **run)
            print(f"wrote {args.out}/ (config.json, model.safetensors, README.md)")
        else:
            keys = save_weights(model, args.out, args.to)
            print(f"wrote {args.out}: {len(keys)} arrays in the {args.to} layout")
    except (ToolInputError, TypeError, OSError, *USER_ERRORS) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
