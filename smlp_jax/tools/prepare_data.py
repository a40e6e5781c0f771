"""Prepares a dataset for training, once: `python -m smlp_jax.tools.prepare_data NAME`.

NAME is `demo` (the bundled MNIST digits: offline, no TensorFlow) or a tensorflow-datasets
name (`imagenet2012`, `cifar10`, `imagenette`, ...). tfds datasets are written in the
array_record format that training reads with random access. Building them runs the tfds
builder, which needs TensorFlow and usually downloads: install the optional extra first,
`pip install '.[prepare]'`. ImageNet cannot be downloaded automatically: put
ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar in --manual_dir.

`folder:PATH --out NEW --max-side 512 [--quality 90]` writes a copy of an image folder with
each image's longer side capped, as JPEG, and an info file recording what was done
(smlp_jax/data/prepared.py); train on it as `--config.dataset=prepared:NEW`.

Training never runs this itself; an unprepared dataset is an error that prints this command.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys

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
    counts = "; ".join(
        f"{split}: {c['images']} images, {c['resized']} resized, {c['re-encoded']} re-encoded, "
        f"{c['copied']} copied"
        for split, c in info["splits"].items()
    )
    skipped = f"; {len(info['unreadable'])} unreadable skipped" if info["unreadable"] else ""
    return (
        f"Prepared {name} in {os.path.abspath(out)} (longer side <= {max_side}, JPEG quality "
        f"{quality}; {counts}{skipped}): train on it with --config.dataset="
        f"{prepared.PREFIX}{os.path.abspath(out)}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "name", help="'demo', folder:PATH, or a tensorflow-datasets name, e.g. imagenet2012"
    )
    parser.add_argument("--data_dir", default=None, help="tfds data dir (config.data_dir)")
    parser.add_argument("--manual_dir", default=None, help="manually downloaded archives")
    parser.add_argument("--out", default=None, help="folder:PATH: the new folder of the copy")
    parser.add_argument("--max-side", type=int, default=None, help="folder:PATH: longer side cap")
    parser.add_argument("--quality", type=int, default=90, help="folder:PATH: JPEG quality")
    args = parser.parse_args(argv)
    try:
        if args.name.startswith(sources.FOLDER_PREFIX):
            print(prepare_folder(args.name, args.out, args.max_side, args.quality))
            return 0
        path = prepare(args.name, args.data_dir, args.manual_dir)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"Prepared {args.name} in {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
