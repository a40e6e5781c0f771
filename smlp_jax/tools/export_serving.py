"""Export a model for serving: its eval-mode forward as a jax.export artifact folder.

    python -m smlp_jax.tools.export_serving --model smlpnet_s --pretrained smlp_s.pth \
        --out served/smlpnet_s
    python -m smlp_jax.tools.export_serving --checkpoint workdirs/demo \
        --out served/demo [--platforms cpu cuda] [--onnx]

The model comes as for predict and export (`smlp_jax.tools.model_choice`): a registered
`--model` with official weights (`--pretrained FILE`, or none for a fresh initialisation)
and its pretrained configuration's image size and normalisation, or our trainer's
`--checkpoint WORKDIR`, described by its run record (`--config FILE:ARG` for runs made
before records; `--config.KEY=VALUE` overrides). `--out DIR` receives
what `smlp_jax.serving.save` writes (forward.jaxexport, weights.npz, serving.json; see
`smlp_jax.serving`), and with `--onnx` a model.onnx too (needs jax2onnx, checked before
the model is built). The folder is written whole or not at all: on a failure `--out` is
left as it was. The batch dimension is symbolic unless `--batch N`. An unknown model, a
missing checkpoint, weights that do not fit or a missing optional package end with one
line `error: ...` on stderr and exit status 1.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from smlp_jax import serving
from smlp_jax.errors import UserError
from smlp_jax.models import pretrained_cfg
from smlp_jax.tools.errors import ToolInputError
from smlp_jax.tools.model_choice import add_model_options, choose
from smlp_jax.tools.trained import parse_with_config_overrides, run_preprocessing
from smlp_jax.train import checkpoint

ONNX_FILE = "model.onnx"


def build(args: argparse.Namespace, config_overrides: list[str]) -> tuple[Any, dict[str, Any]]:
    """-> (model, `serving.save` keyword arguments naming it and its preprocessing)."""
    chosen = choose(args, config_overrides)
    if (run := chosen.run) is not None:
        model = chosen.build(args.num_classes)
        described = dict(model_name=run.config.model, **run_preprocessing(run.config))
        return model, described | {"image_size": run.config.image_size}
    cfg = pretrained_cfg(chosen.name)
    image_size = args.image_size or cfg.image_size
    model = chosen.build(args.num_classes or cfg.num_classes, image_size)
    return model, {"model_name": chosen.name, "image_size": image_size}


def check_optional_dependencies(args: argparse.Namespace) -> None:
    """A `ToolInputError` for an optional package the options need and this environment
    lacks, before the model is built (which takes seconds to minutes)."""
    # find_spec, not an import: jax2onnx is loaded only where the export uses it.
    if args.onnx and importlib.util.find_spec("jax2onnx") is None:
        raise ToolInputError(
            "--onnx needs jax2onnx, which is not installed: pip install jax2onnx (see "
            "docs/models.md, 'For serving'), or leave out --onnx."
        )


ARTIFACT_FILES = (serving.FORWARD_FILE, serving.WEIGHTS_FILE, serving.SIDECAR_FILE, ONNX_FILE)


@contextlib.contextmanager
def _whole_or_nothing(out: Path):
    """A new folder to write the artifact into; when the block ends without an error its
    files replace the artifact in `out` (created with its parents then), else nothing of
    it is left. The new folder sits beside `out` where that folder exists, so the files
    are renamed, not copied."""
    beside = out.parent if out.parent.is_dir() else None
    with tempfile.TemporaryDirectory(prefix=f".{out.name}.", dir=beside) as staging:
        yield Path(staging)
        out.mkdir(parents=True, exist_ok=True)
        for name in ARTIFACT_FILES:  # a file not written now would contradict the sidecar
            if (Path(staging) / name).is_file():
                shutil.move(Path(staging) / name, out / name)
            elif (out / name).is_file():
                (out / name).unlink()


def export(args: argparse.Namespace, config_overrides: list[str]) -> list[Path]:
    """Builds the model, writes the artifact folder (and model.onnx), all or nothing;
    -> the files written."""
    check_optional_dependencies(args)
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
    out = Path(args.out)
    with _whole_or_nothing(out) as staging:
        serving.save(exported, staging, weights=weights, **described)
        if args.onnx:
            serving.export_onnx(model, staging / ONNX_FILE, image_size=image_size, batch=args.batch)
        written = [name for name in ARTIFACT_FILES if (staging / name).is_file()]
    return [out / name for name in written]


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(
        prog="python -m smlp_jax.tools.export_serving", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--out", required=True, help="folder to write the artifact into")
    add_model_options(parser)
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
