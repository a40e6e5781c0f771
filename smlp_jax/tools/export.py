"""Export weights: one of our checkpoints (or a model with official weights) to the
official layout of its family, or to a Hugging Face Hub folder.

    python -m smlp_jax.tools.export --checkpoint workdirs/demo \
        --to official --out smlpnet_demo.safetensors
    python -m smlp_jax.tools.export --model mixer_b16 --pretrained Mixer-B_16.npz \
        --to official --out mixer_b16_timm.safetensors          # vit_jax -> timm keys
    python -m smlp_jax.tools.export --checkpoint workdirs/demo --to hub --out smlpnet_demo_hub/

`--to`: `official` (the family's PyTorch state dict, as `.safetensors`, `.pth`/`.pt` with
PyTorch installed, or `.npz`: the official code and timm load it with `strict=True`),
`vit_jax` (MLP-Mixer's Flax `.npz`), `smlp_jax` (our variable paths, every family) or
`hub` (a folder for `create_model("hf-hub:...")` / the Hub: `smlp_jax.save_pretrained`).
A checkpoint's run record (`smlp_jax.train.run_record`) gives the model, class count and
preprocessing; `--config FILE:ARG` is only needed for runs made before records existed
(when given, it must describe the recorded model). `--config.KEY=VALUE` overrides fields
of the run's config as in main.py. Bad input ends with one line `error: ...` on stderr
and exit status 1.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from smlp_jax.convert.export import LAYOUTS, save_weights
from smlp_jax.errors import UserError
from smlp_jax.hub import save_pretrained
from smlp_jax.tools.errors import file_errors
from smlp_jax.tools.model_choice import add_model_options, choose
from smlp_jax.tools.trained import Run, parse_with_config_overrides, run_preprocessing
from smlp_jax.train import checkpoint, run_record
from smlp_jax.train.metrics import last_logged


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_model_options(parser.add_argument_group("what to export (--checkpoint or --model)"))
    parser.add_argument("--to", choices=(*LAYOUTS, "hub"), default="official")
    parser.add_argument("--out", required=True, help="the file (or, for --to hub, a folder)")
    return parser


def load_model(args: argparse.Namespace, config_overrides: list[str]):
    """(the model to export, the run (`tools.trained.Run`) or None), from the options."""
    chosen = choose(args, config_overrides)
    return chosen.build(args.num_classes, args.image_size), chosen.run


def training_summary(run: Run, args: argparse.Namespace) -> dict[str, Any]:
    """The model card's "Training" lines for a run: its config, data, recipe and the last
    eval it logged (the workdir's metrics.jsonl, else the eval saved with the step)."""
    config = run.config
    summary = {
        "Config": f"`{args.config}`" if args.config else "the run record saved with the weights",
        "Data": f"{config.dataset}, {config.image_size}x{config.image_size}",
        "Recipe": (
            f"{config.total_steps} steps of batch {config.batch_size}, "
            f"{config.optimizer.name} lr {config.optimizer.lr}"
        ),
    }
    with file_errors("read", f"{args.checkpoint}/metrics.jsonl"):
        final = last_logged(args.checkpoint, "eval/")
    if "eval/top1" not in final and run.record is not None:
        found = run_record.read(args.checkpoint)
        final = run_record.step_metrics(found[1]) if found else {}
    if "eval/top1" in final:
        summary["Last eval"] = f"top-1 {100 * final['eval/top1']:.2f}% ({config.dataset})"
    return summary


def main(argv: list[str] | None = None) -> int:
    args, overrides = parse_with_config_overrides(build_parser(), argv)
    checkpoint.quiet.install()  # this process is ours: one line per failed read
    try:
        model, run = load_model(args, overrides)
        if args.to == "hub":
            # A run's own preprocessing and recipe, not its family's official ones.
            described = (
                {}
                if run is None
                else dict(
                    preprocessing=run_preprocessing(run.config),
                    training=training_summary(run, args),
                )
            )
            with file_errors("write", args.out):
                save_pretrained(model, args.out, **described)
            print(f"wrote {args.out}/ (config.json, model.safetensors, README.md)")
        else:
            with file_errors("write", args.out):
                keys = save_weights(model, args.out, args.to)
            print(f"wrote {args.out}: {len(keys)} arrays in the {args.to} layout")
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
