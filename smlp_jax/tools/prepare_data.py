"""Prepares a dataset for training, once: `python -m smlp_jax.tools.prepare_data NAME`.

NAME is `demo` (the bundled MNIST digits: offline, no TensorFlow) or a tensorflow-datasets
name (`imagenet2012`, `cifar10`, `imagenette`, ...). tfds datasets are written in the
array_record format that training reads with random access. Building them runs the tfds
builder, which needs TensorFlow and usually downloads: install the optional extra first,
`pip install '.[prepare]'`. ImageNet cannot be downloaded automatically: put
ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar in --manual_dir.

Training never runs this itself; an unprepared dataset is an error that prints this command.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys

from smlp_jax.data import sources
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", help="'demo' or a tensorflow-datasets name, e.g. imagenet2012")
    parser.add_argument("--data_dir", default=None, help="tfds data dir (config.data_dir)")
    parser.add_argument("--manual_dir", default=None, help="manually downloaded archives")
    args = parser.parse_args(argv)
    try:
        path = prepare(args.name, args.data_dir, args.manual_dir)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"Prepared {args.name} in {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
