"""Classify images with a registered model: top-5 class names and probabilities.

    python -m smlp_jax.tools.predict --model smlpnet_b --pretrained smlp_b.pth cat.jpg dog.png
    python -m smlp_jax.tools.predict --checkpoint workdirs/demo digit.png

Official weights (`--pretrained`, read by `smlp_jax.convert`) or weights saved by our
trainer (`--checkpoint WORKDIR`, its newest good step; its run record names the model,
image size, normalisation and class names it was trained with — `--config FILE:ARG` for a
run made before records — and `--config.KEY=VALUE` overrides fields as in main.py).
The compiled forward is kept in JAX's persistent compilation cache, where main.py keeps its
steps (`config.compilation_cache_dir`), so the next prediction skips the compile (sMLPNet-T
from a checkpoint on a 2-core CPU: 8.1-10.0 s without the cache, 5.7-7.2 s from it).
Each image goes through the pipeline's eval transform
(`smlp_jax.data.transforms.EvalTransform`: short side to floor(size / crop_pct), centre
crop, normalise), so predictions match `--mode=eval`. With `--model`, the image size,
mean/std, crop_pct and resize filter are the model's pretrained configuration
(`smlp_jax.models.pretrained_cfg(name)`: its official eval), `--image-size` overriding
the size; with `--checkpoint`, the run's config. `--mean`, `--std`, `--crop-pct` and
`--interpolation` override either.

Class names: the 1000 ImageNet-1k names (`imagenet_classes.txt` beside this file: the first
WordNet lemma of each ILSVRC-2012 synset in the standard index order, as torchvision and
timm list them; the two repeated lemmas are told apart as "crane (bird)/(machine)" and
"maillot (tights)/(tank suit)"), the run's own class names (its record, when the dataset
named its labels), or `--class-names FILE` (one name a line). A bad image, weights that do
not fit the model, or a bad option end with one line `error: ...` on stderr and exit
status 1.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from PIL import Image

from smlp_jax import data
from smlp_jax.data.config import default_input_config
from smlp_jax.data.transforms import PREDICT_REDUCING_GAP, UNREADABLE_ERRORS, EvalTransform
from smlp_jax.errors import UserError
from smlp_jax.models import pretrained_cfg
from smlp_jax.tools.errors import ToolInputError
from smlp_jax.tools.model_choice import add_model_options, choose
from smlp_jax.tools.trained import parse_with_config_overrides
from smlp_jax.train import checkpoint, compilation_cache

TOP_K = 5


class PredictError(ToolInputError):
    """Input that cannot be classified (bad image, options, names file); shown as one line."""


@dataclass(frozen=True)
class Prediction:
    """The top classes of one image, most probable first."""

    image: str
    indices: list[int]
    names: list[str]
    probabilities: list[float]

    def lines(self) -> list[str]:
        width = max(len(n) for n in self.names)
        ranked = zip(self.names, self.probabilities)
        return [self.image] + [
            f"  {rank}. {name:<{width}}  {100 * p:6.2f}%"
            for rank, (name, p) in enumerate(ranked, start=1)
        ]


def imagenet_class_names() -> list[str]:
    """The 1000 ImageNet-1k class names in index order (package data)."""
    text = resources.files("smlp_jax.tools").joinpath("imagenet_classes.txt").read_text()
    return text.splitlines()


def read_class_names(path: str | Path) -> list[str]:
    try:
        names = [line.strip() for line in Path(path).read_text().splitlines() if line.strip()]
    except OSError as err:
        raise PredictError(f"cannot read --class-names {path}: {err.strerror or err}") from None
    if not names:
        raise PredictError(f"--class-names {path} is empty; write one class name a line.")
    return names


def build_classifier(args: argparse.Namespace, config_overrides: list[str]):
    """-> (eval-mode model, EvalTransform, class names) from the command-line options.
    JAX's persistent compilation cache is set up as the run's `config.compilation_cache_dir`
    says (with `--model`: main.py's default, `~/.cache/smlp_jax/jax_cache` unless
    `$JAX_COMPILATION_CACHE_DIR` names another or is empty), so a second prediction with
    the same model and image count loads its compiled forward."""
    chosen = choose(args, config_overrides)
    names = read_class_names(args.class_names) if args.class_names else None
    run = chosen.run
    compilation_cache.enable(
        run.config.get("compilation_cache_dir", compilation_cache.DEFAULT)
        if run is not None
        else compilation_cache.DEFAULT
    )
    if run is not None:
        config = run.config
        num_classes = args.num_classes or (len(names) if names else run.num_classes)
        if num_classes is None:  # a run without a record: its dataset knows
            num_classes = data.get_dataset_info(config).num_classes
        if names is None and len(run.class_names) == num_classes != 1000:
            names = run.class_names  # (1000 classes: ImageNet's words, not synset ids)
        model = chosen.build(num_classes)
        input_cfg, image_size = dict(config.input), config.image_size
    else:
        cfg = pretrained_cfg(chosen.name)
        num_classes = args.num_classes or (len(names) if names else cfg.num_classes)
        image_size = args.image_size or cfg.image_size
        model = chosen.build(num_classes, image_size)
        input_cfg = dict(default_input_config("imagenet"))
        input_cfg.update(
            mean=cfg.mean, std=cfg.std, crop_pct=cfg.crop_pct, eval_interpolation=cfg.interpolation
        )
    for key in ("crop_pct", "mean", "std"):
        if getattr(args, key) is not None:
            input_cfg[key] = getattr(args, key)
    if args.interpolation is not None:
        input_cfg["eval_interpolation"] = args.interpolation
    if names is None:
        names = imagenet_class_names() if num_classes == 1000 else None
        names = names or [f"class {i}" for i in range(num_classes)]
    if len(names) != num_classes:
        raise PredictError(
            f"--class-names has {len(names)} names but the model has {num_classes} classes."
        )
    model.eval()
    try:
        transform = EvalTransform(input_cfg, image_size)
    except ValueError as err:  # e.g. crop_pct outside (0, 1]
        raise PredictError(str(err)) from None
    return model, transform, names


def preprocess(transform, path: str) -> np.ndarray:
    """Image file -> float32 (S, S, 3), or PredictError naming the file. A large image is
    decoded and shrunk at a reduced size first (a 9000x9000 JPEG: 0.09 s instead of 1.9 s,
    `smlp_jax.data.transforms.reduced_resize`), with no dataset pixel limit (Pillow's own
    stays)."""
    try:
        data = Path(path).read_bytes()
        return transform(data, reducing_gap=PREDICT_REDUCING_GAP, max_pixels=None)
    except UNREADABLE_ERRORS as err:
        raise PredictError(f"cannot read image {path}: {_reason(err)}") from None


def _reason(err: BaseException) -> str:
    """Why an image could not be read, in words (PIL names the stream object it read)."""
    reason = getattr(err, "strerror", None) or str(err).splitlines()[0]
    if "cannot identify image file" in reason:
        return "not an image file PIL can decode (JPEG, PNG, ...)"
    return reason


def check_images(paths: list[str]) -> None:
    """A PredictError for the first path that is missing or not a decodable image, before
    any model is built (building one takes seconds)."""
    for path in paths:
        try:
            with Image.open(path) as image:
                image.verify()
        except UNREADABLE_ERRORS as err:
            raise PredictError(f"cannot read image {path}: {_reason(err)}") from None


def predict(model, transform, names: list[str], paths: list[str]) -> list[Prediction]:
    """Softmax top-k (k = min(5, classes)) for each image, one batch through the model."""
    images = np.stack([preprocess(transform, p) for p in paths])
    # One compiled forward: run op by op, each op would be compiled on its own (223 of
    # them for the demo's sMLPNet, 23 s of a 38 s prediction on a 2-core CPU).
    forward = nnx.jit(lambda m, x: jax.nn.softmax(m(x).astype(jnp.float32), axis=-1))
    probs = np.asarray(forward(model, jax.device_put(images)))  # no copy program to compile
    k = min(TOP_K, probs.shape[-1])
    results = []
    for path, row in zip(paths, probs):
        top = np.argsort(-row, kind="stable")[:k]
        results.append(Prediction(path, top.tolist(), [names[i] for i in top], row[top].tolist()))
    return results


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(
        prog="python -m smlp_jax.tools.predict", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("images", nargs="+", metavar="IMAGE")
    add_model_options(parser)
    parser.add_argument("--class-names", help="file with one class name a line")
    # Defaults: the --model's pretrained configuration, or the --checkpoint run's config.
    parser.add_argument("--crop-pct", type=float, help="eval crop fraction (the model's)")
    parser.add_argument("--mean", type=float, nargs=3, help="normalisation mean (the model's)")
    parser.add_argument("--std", type=float, nargs=3, help="normalisation std (the model's)")
    parser.add_argument(
        "--interpolation",
        choices=("bicubic", "bilinear", "nearest"),
        help="eval resize filter (the model's)",
    )
    return parse_with_config_overrides(parser, argv)


def main(argv: list[str] | None = None) -> int:
    args, overrides = parse_args(sys.argv[1:] if argv is None else argv)
    checkpoint.quiet.install()  # this process is ours: one line per failed read
    try:
        check_images(args.images)
        model, transform, names = build_classifier(args, overrides)
        for result in predict(model, transform, names, args.images):
            print("\n".join(result.lines()))
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
