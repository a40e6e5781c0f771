"""Where images come from: one config string picks a random-access source of encoded images.

`config.dataset` is "demo" (the bundled MNIST digits, built offline into a tfds ArrayRecord
set), "folder:/path" (one subfolder per class), "prepared:/path" (a copy written by
`prepare_data` of a folder, as a folder, or of a tfds dataset, as ArrayRecord shards;
data/prepared.py) or a tensorflow-datasets name. Every source
yields `(encoded_image_bytes, label, name)` for an index, so decoding and transforms are the
same code for all of them; `name` identifies the example in warnings.
"""

from __future__ import annotations

from smlp_jax.data import folder_source, prepared
from smlp_jax.data.base import (
    DEMO_NAME,
    FOLDER_PREFIX,
    DataError,
    DatasetInfo,
    ImageSource,
    resolve_data_dir,
)

__all__ = [
    "DEMO_NAME",
    "FOLDER_PREFIX",
    "DataError",
    "DatasetInfo",
    "ImageSource",
    "eval_split",
    "get_dataset_info",
    "open_split",
    "resolve_data_dir",
    "train_split",
]


def open_split(config, split: str) -> ImageSource:
    """The source of `split` ("train", "test", "val", tfds slices ...) for config.dataset."""
    dataset = str(config.dataset)
    if dataset.startswith(prepared.PREFIX):
        return prepared.open_prepared_split(
            dataset[len(prepared.PREFIX) :],
            split,
            val_fraction=float(config.input.val_fraction),
            val_split_seed=int(config.input.val_split_seed),
        )
    if dataset.startswith(FOLDER_PREFIX):
        return folder_source.open_folder_split(
            dataset[len(FOLDER_PREFIX) :],
            split,
            val_fraction=float(config.input.val_fraction),
            val_split_seed=int(config.input.val_split_seed),
        )
    # Lazy: tensorflow_datasets takes seconds to import; folder datasets never need it.
    from smlp_jax.data import demo_dataset, tfds_source

    data_dir = resolve_data_dir(config.get("data_dir"))
    name, fix = demo_dataset.tfds_dataset(dataset, data_dir)  # the demo built (or rebuilt)
    return tfds_source.open_tfds_split(name, split, data_dir, fix)


def train_split(config) -> str:
    return str(config.input.train_split)


def eval_split(config) -> str:
    """config.input.eval_split, or the dataset's natural held-out split when it is ""."""
    if config.input.eval_split:
        return str(config.input.eval_split)
    dataset = str(config.dataset)
    if dataset.startswith(prepared.PREFIX):
        return prepared.default_eval_split(dataset[len(prepared.PREFIX) :])
    if dataset.startswith(FOLDER_PREFIX):
        return "val"
    if dataset == DEMO_NAME:
        return "test"
    from smlp_jax.data import tfds_source  # lazy: tensorflow_datasets (see open_split)

    return tfds_source.default_eval_split(dataset, resolve_data_dir(config.get("data_dir")))


def get_dataset_info(config) -> DatasetInfo:
    """Classes and split sizes of config.dataset; a DataError if it is unknown or unprepared,
    or if its training split has fewer than two classes (a classifier of one class reaches
    loss 0 and top-1 100% having learnt nothing)."""
    train = open_split(config, train_split(config))
    if train.num_classes < 2:
        names = list(getattr(train, "classes", ()))
        folder = str(config.dataset).startswith(FOLDER_PREFIX)
        raise DataError(
            f"{train.name} has {train.num_classes} class{'' if train.num_classes == 1 else 'es'}"
            f"{f' ({names[0]!r})' if names else ''}: a classifier needs at least two; "
            + ("add a subfolder of images for each class." if folder else "train on another.")
        )
    evaluation = open_split(config, eval_split(config))
    return DatasetInfo(
        name=train.name,
        num_classes=train.num_classes,
        num_train=len(train),
        num_eval=len(evaluation),
        class_names=tuple(str(name) for name in getattr(train, "classes", ())),
        max_image_side=getattr(train, "max_image_side", None),
    )
