"""Prepares a dataset for training, once: `python -m smlp_jax.tools.prepare_data NAME`.

NAME is `demo` (the bundled MNIST digits: offline, no TensorFlow) or a tensorflow-datasets
name (`imagenet2012`, `cifar10`, `imagenette`, ...). tfds datasets are written in the
array_record format that training reads with random access. Building them runs the tfds
builder, which needs TensorFlow and usually downloads: install the optional extra first,
`pip install '.[prepare]'`. ImageNet cannot be downloaded automatically: put
ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar in --manual_dir.

`NAME --out NEW --max-side 512 [--quality 90] [--splits train validation]` writes a copy
of a tfds dataset that is already prepared (or `demo`) as ArrayRecord shards in NEW, each
image's longer side capped, as JPEG: one record an image, its label as a little-endian int64
then the JPEG bytes, a new shard every `--shard-mb` MB (default 1024), encoded by `--workers`
processes (default: this process's cores). `folder:PATH --out NEW --max-side 512` writes such
a copy of an image folder, as a folder. Either way NEW/smlp_prepared.json, written last,
records what was done (smlp_jax/data/prepared.py); train on the copy as
`--config.dataset=prepared:NEW`.

Training never runs this itself; an unprepared dataset is an error that prints this command.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys

from smlp_jax.data import config as data_config
from smlp_jax.data import prepared, sources
from smlp_jax.errors import UserError


def prepare(name: str, data_dir: str | None, manual_dir: str | None = None) -> str:
    """Builds `name` into data_dir (default $TFDS_DATA_DIR or ~/tensorflow_datasets);
    returns the dataset's directory."""
    data_dir = sources.resolve_data_dir(data_dir)
    if name == sources.DEMO_NAME:
        from smlp_jax.data import demo_dataset  # lazy: imports tensorflow_datasets

        return demo_dataset.ensure_built(data_dir)
    if importlib.util.find_spec("tensorflow") is None:
        raise sources.DataError(
            f"Preparing the tfds dataset {name!r} runs its tfds builder, which needs TensorFlow. "
            "Install the optional extra: pip install '.[prepare]' (training itself does not "
            "need TensorFlow)."
        )
    import tensorflow_datasets as tfds  # lazy: heavy; after the TensorFlow check above

    builder = tfds.builder(name, data_dir=data_dir, file_format="array_record")
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=manual_dir),
    )
    return str(builder.data_dir)


def prepare_folder(name: str, out: str | None, max_side: int | None, quality: int) -> str:
    """`folder:PATH` -> its prepared copy in `out` (data/prepared.py); a line that
    describes what was written."""
    if not out or not max_side:
        raise sources.DataError(
            f"{name}: a folder is prepared as a copy with each image's longer side capped; give "
            "--out NEW_FOLDER and --max-side (e.g. 512)."
        )
    info = prepared.write_copy(name[len(sources.FOLDER_PREFIX) :], out, max_side, quality)
    return _prepared_line(name, out, info)


def _prepared_line(name: str, out: str, info: dict) -> str:
    """The line that says what a copy holds (per split: images, shards of a tfds copy, what
    was done to them) and how to train on it."""

    def split_counts(split: str, c: dict) -> str:
        shards = c.get("shards")
        where = f" in {len(shards)} shard{'' if len(shards) == 1 else 's'}" if shards else ""
        return (
            f"{split}: {c['images']} images{where}, {c['resized']} resized, "
            f"{c['re-encoded']} re-encoded, {c['copied']} copied"
        )

    counts = "; ".join(split_counts(split, c) for split, c in info["splits"].items())
    bad = len(info["unreadable"])
    skipped = f"; {bad} unreadable kept as they were, skipped in training" if bad else ""
    layout = " as array_record" if info.get("layout") == "array_record" else ""
    return (
        f"Prepared {name} in {os.path.abspath(out)}{layout} (longer side <= "
        f"{info['max_side']}, JPEG quality {info['quality']}; {counts}{skipped}): train on it "
        f"with --config.dataset={prepared.PREFIX}{os.path.abspath(out)}"
    )


def prepare_tfds_copy(
    name: str,
    out: str,
    max_side: int | None,
    quality: int,
    splits: list[str] | None,
    data_dir: str | None,
    shard_mb: int,
    workers: int,
) -> str:
    """tfds `name` -> its prepared array_record copy in `out` (data/prepared.py); a line
    that describes what was written."""
    if not max_side:
        raise sources.DataError(
            f"{name} --out {out}: a copy has each image's longer side capped; give --max-side "
            "(e.g. 512)."
        )
    info = prepared.write_tfds_copy(
        name,
        out,
        max_side,
        quality,
        splits=splits,
        data_dir=data_dir,
        shard_bytes=shard_mb << 20,
        workers=workers,
    )
    return _prepared_line(name, out, info)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "name", help="'demo', folder:PATH, or a tensorflow-datasets name, e.g. imagenet2012"
    )
    parser.add_argument("--data_dir", default=None, help="tfds data dir (config.data_dir)")
    parser.add_argument("--manual_dir", default=None, help="manually downloaded archives")
    parser.add_argument("--out", default=None, help="a capped copy: its new folder")
    parser.add_argument("--max-side", type=int, default=None, help="a copy: longer side cap")
    parser.add_argument("--quality", type=int, default=90, help="a copy: JPEG quality")
    parser.add_argument(
        "--splits", nargs="+", default=None, help="a tfds copy: its splits (default: all)"
    )
    parser.add_argument("--shard-mb", type=int, default=None, help="a tfds copy: MB a shard")
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="a tfds copy: processes that encode (default: this process's cores)",
    )
    args = parser.parse_args(argv)
    # The tfds copy's own options mean nothing elsewhere: say so rather than ignore them.
    tfds_copy = bool(args.out) and not args.name.startswith(sources.FOLDER_PREFIX)
    stray = [f"--{k.replace('_', '-')}" for k in ("splits", "shard_mb", "workers")
             if getattr(args, k) is not None]  # fmt: skip
    if stray and not tfds_copy:
        what = "a folder copy" if args.out else "building a tfds dataset (no --out)"
        print(f"error: {' '.join(stray)} only apply to a tfds copy (NAME --out DST "
              f"--max-side N), not to {what}.", file=sys.stderr)  # fmt: skip
        return 2
    if args.shard_mb is None:
        args.shard_mb = 1024
    if args.workers is None:
        args.workers = data_config.usable_cores()
    try:
        if args.name.startswith(sources.FOLDER_PREFIX):
            print(prepare_folder(args.name, args.out, args.max_side, args.quality))
            return 0
        if args.out:
            copy_args = (args.splits, args.data_dir, args.shard_mb, args.workers)
            print(prepare_tfds_copy(args.name, args.out, args.max_side, args.quality, *copy_args))
            return 0
        path = prepare(args.name, args.data_dir, args.manual_dir)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"Prepared {args.name} in {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
