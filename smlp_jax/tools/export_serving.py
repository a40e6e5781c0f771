"""Export a model for serving: its eval-mode forward as a jax.export artifact folder.

    python -m smlp_jax.tools.export_serving --model smlpnet_s --pretrained smlp_s.pth \
        --out served/smlpnet_s
    python -m smlp_jax.tools.export_serving --checkpoint workdirs/demo \
        --out served/demo [--platforms cpu cuda] [--onnx]

The model comes as for `smlp_jax.tools.predict`: a registered `--model` with official
weights (`--pretrained FILE`, or none for a fresh initialisation) and its pretrained
configuration's image size and normalisation, or our trainer's `--checkpoint WORKDIR`,
described by its run record (`--config FILE:ARG` for runs made before records;
`--config.KEY=VALUE` overrides). `--out DIR` receives
what `smlp_jax.serving.save` writes (forward.jaxexport, weights.npz, serving.json; see
`smlp_jax.serving`), and with `--onnx` a model.onnx too (needs jax2onnx). The batch
dimension is symbolic unless `--batch N`. An unknown model, a missing checkpoint or
weights that do not fit end with one line `error: ...` on stderr and exit status 1.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from smlp_jax import serving
from smlp_jax.errors import UserError
from smlp_jax.models import pretrained_cfg
from smlp_jax.tools.errors import ToolInputError
from smlp_jax.tools.predict import create_with_model_args
from smlp_jax.tools.trained import (
    load_run,
    parse_with_config_overrides,
    run_preprocessing,
    trained_model,
)
from smlp_jax.train import checkpoint

ONNX_FILE = "model.onnx"


def build(args: argparse.Namespace, config_overrides: list[str]) -> tuple[Any, dict[str, Any]]:
    """-> (model, `serving.save` keyword arguments naming it and its preprocessing)."""
    if args.checkpoint:
        if args.model or args.pretrained or args.model_arg:
            raise ToolInputError("--model, --pretrained and --model-arg go without --checkpoint.")
        run = load_run(args.checkpoint, args.config, config_overrides)
        config = run.config
        model = trained_model(config, args.checkpoint, args.num_classes or run.num_classes)
        described = dict(model_name=config.model, **run_preprocessing(config))
        return model, described | {"image_size": config.image_size}
    if config_overrides:
        raise ToolInputError(f"{config_overrides[0]}: --config.KEY needs --checkpoint.")
    if not args.model:
        raise ToolInputError("give --model NAME (with --pretrained FILE) or --checkpoint.")
    cfg = pretrained_cfg(args.model)
    if args.pretrained and not Path(args.pretrained).is_file():  # before building the model
        raise ToolInputError(f"--pretrained {args.pretrained}: no such file.")
    image_size = args.image_size or cfg.image_size
    model = create_with_model_args(
        args.model,
        args.model_arg,
        num_classes=args.num_classes or cfg.num_classes,
        image_size=image_size,
        pretrained=args.pretrained,
    )
    return model, {"model_name": args.model, "image_size": image_size}


def export(args: argparse.Namespace, config_overrides: list[str]) -> list[Path]:
    """Builds the model, writes the artifact folder (and model.onnx); -> the files written."""
    model, described = build(args, config_overrides)
    image_size = described.pop("image_size")
    exported = serving.export_model(
        model,
        image_size=image_size,
        batch=args.batch,
        platforms=args.platforms,
        bake_weights=args.bake_weights,
    )
    weights = None if args.bake_weights else serving.serving_weights(model)
    folder = serving.save(exported, args.out, weights=weights, **described)
    if args.onnx:
        serving.export_onnx(model, folder / ONNX_FILE, image_size=image_size, batch=args.batch)
    names = [serving.FORWARD_FILE, serving.WEIGHTS_FILE, serving.SIDECAR_FILE, ONNX_FILE]
    return [folder / name for name in names if (folder / name).is_file()]


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(
        prog="python -m smlp_jax.tools.export_serving", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--out", required=True, help="folder to write the artifact into")
    parser.add_argument("--model", help="registered model name, e.g. smlpnet_s")
    parser.add_argument("--pretrained", help="official weights (.pth/.npz/.safetensors)")
    parser.add_argument("--checkpoint", help="our trainer's workdir or checkpoint step dir")
    parser.add_argument(
        "--config", help="with --checkpoint: the run's FILE.py:ARG (default: its run record)"
    )
    parser.add_argument("--num-classes", type=int, help="classes of the head (the model's)")
    parser.add_argument("--image-size", type=int, help="input side for --model (the model's)")
    parser.add_argument(
        "--model-arg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a hyperparameter override for --model (repeatable), e.g. depths=(1,1,1,1)",
    )
    parser.add_argument("--batch", type=int, help="a fixed batch size (default: symbolic)")
    parser.add_argument(
        "--platforms",
        nargs="+",
        choices=("cpu", "cuda", "rocm", "tpu"),
        help="platforms to lower for (default: the one JAX runs on here)",
    )
    parser.add_argument(
        "--bake-weights", action="store_true", help="weights as constants of the artifact"
    )
    parser.add_argument("--onnx", action="store_true", help=f"also write {ONNX_FILE}")
    return parse_with_config_overrides(parser, argv)


def main(argv: list[str] | None = None) -> int:
    args, overrides = parse_args(sys.argv[1:] if argv is None else argv)
    checkpoint.quiet.install()  # this process is ours: one line per failed read
    try:
        for path in export(args, overrides):
            print(path)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
