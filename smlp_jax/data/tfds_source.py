"""tensorflow-datasets splits read with random access (ArrayRecord), without TensorFlow.

A prepared tfds dataset directory is opened with `tfds.builder(...).as_data_source`; images
stay encoded (`SkipDecoding`) so the pipeline decodes them itself with PIL (reduced-size JPEG
decoding, corrupt-file handling). Nothing here downloads: an unknown or unprepared dataset
is a DataError that prints the command that prepares it.
"""

from __future__ import annotations

import os
import re

import tensorflow_datasets as tfds

from smlp_jax.data.base import DataError, held_out_split


def _prepare_hint(name: str, data_dir: str) -> str:
    return (
        "Training never downloads data. Prepare it once (needs TensorFlow, kept out of the "
        "training install):\n"
        "  pip install '.[prepare]'\n"
        f"  python -m smlp_jax.tools.prepare_data {name} --data_dir {data_dir} "
        "[--manual_dir DIR_WITH_THE_DOWNLOADED_ARCHIVES]\n"
        "or set config.data_dir (or $TFDS_DATA_DIR) to a directory where it is prepared in "
        "the array_record format."
    )


def rebuild_hint(name: str, data_dir: str) -> str:
    """The command that prepares `name` again (one line, for the damaged-files errors)."""
    return f"python -m smlp_jax.tools.prepare_data {name} --data_dir {data_dir}"


def damaged_error(what: str, folder: str, err: BaseException | str, fix: str) -> DataError:
    """One line: `what` in `folder` is damaged (the reader's own first clause), and `fix`."""
    if isinstance(err, BaseException):
        err = f"{type(err).__name__}: {(str(err).splitlines() or [''])[0].split(';')[0]}"
    return DataError(
        f"{what}: the files in {folder} are damaged ({err}); delete that folder and {fix}."
    )


def load_builder(name: str, data_dir: str):
    """The prepared tfds builder of `name` in `data_dir`, else a DataError with the fix."""
    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError as e:
        raise DataError(
            f"Unknown dataset {name!r}: config.dataset must be 'demo', 'folder:/abs/path' or a "
            f"tensorflow-datasets name (see `tfds.list_builders()`). tfds said: "
            f"{str(e).splitlines()[0]}"
        ) from None
    except Exception as e:  # noqa: BLE001 - a damaged dataset_info.json (a ParseError), ...
        folder = os.path.join(data_dir, name.split(":")[0])
        fix = f"prepare it again: {rebuild_hint(name, data_dir)}"
        raise damaged_error(f"tfds dataset {name!r}", folder, e, fix) from None
    if not builder.is_prepared():
        raise DataError(
            f"tfds dataset {name!r} is not prepared in {data_dir} (expected "
            f"{builder.data_dir}).\n{_prepare_hint(name, data_dir)}"
        )
    file_format = builder.info.file_format
    if file_format is None or getattr(file_format, "value", file_format) != "array_record":
        raise DataError(
            f"tfds dataset {name!r} in {builder.data_dir} is stored as {file_format}, which has "
            "no random access; the pipeline needs the array_record format.\n"
            + _prepare_hint(name, data_dir)
        )
    return builder


def _feature_keys(builder) -> tuple[str, str]:
    keys = builder.info.supervised_keys
    if keys and len(keys) == 2 and all(isinstance(k, str) for k in keys):
        return keys[0], keys[1]
    features = builder.info.features
    if "image" in features and "label" in features:
        return "image", "label"
    raise DataError(
        f"tfds dataset {builder.name!r} has no (image, label) features; found {list(features)}."
    )


def default_eval_split(name: str, data_dir: str) -> str:
    """'validation' when the dataset has it (ImageNet), else 'test' (CIFAR, the demo)."""
    splits = list(load_builder(name, data_dir).info.splits.keys())
    return held_out_split(f"tfds dataset {name!r}", splits)


class TfdsImageSource:
    """One split of a prepared tfds dataset: index -> (encoded image bytes, label, name).

    Damaged files (a truncated ArrayRecord shard: "Corrupted Riegeli/records file") are a
    one-line DataError naming the folder to delete and `fix` (default: the prepare_data
    command that rebuilds it); the first and last records are read when the split opens,
    so a truncated shard there is found before anything is built."""

    def __init__(self, name: str, split: str, data_dir: str, fix: str | None = None):
        builder = load_builder(name, data_dir)
        self._folder = str(builder.data_dir)
        self._fix = fix or f"prepare it again: {rebuild_hint(name, data_dir)}"
        self._image_key, self._label_key = _feature_keys(builder)
        base_split = re.split(r"[\[+]", split)[0]
        splits = list(builder.info.splits.keys())
        if base_split not in splits:
            raise DataError(f"tfds dataset {name!r} has no split {split!r}; it has {splits}.")
        if not isinstance(builder.info.features[self._image_key], tfds.features.Image):
            raise DataError(
                f"tfds dataset {name!r}: feature {self._image_key!r} is not an encoded "
                "tfds.features.Image; the pipeline reads JPEG/PNG bytes."
            )
        label_feature = builder.info.features[self._label_key]
        if not hasattr(label_feature, "num_classes"):
            raise DataError(
                f"tfds dataset {name!r}: label {self._label_key!r} is not a ClassLabel."
            )
        self.num_classes = int(label_feature.num_classes)
        self.classes = list(getattr(label_feature, "names", None) or ())
        # The longest image side when the builder fixes it (MNIST, CIFAR, the demo digits):
        # the input plan pads device-resize images to it rather than to resize_max.
        height, width = tuple(builder.info.features[self._image_key].shape)[:2]
        self.max_image_side = max(height, width) if height and width else None
        self.name = builder.name
        self.split = split
        self._source = builder.as_data_source(
            split=split, decoders={self._image_key: tfds.decode.SkipDecoding()}
        )
        count = len(self._source)
        for index in sorted({0, count - 1}) if count else ():
            self._read(index)

    def __len__(self) -> int:
        return len(self._source)

    def _read(self, index: int):
        what = f"tfds dataset {self.name!r} ({self.split})"
        try:
            record = self._source[index]
        except RuntimeError as err:  # array_record's reader: a truncated or missing shard
            raise damaged_error(what, self._folder, err, self._fix) from None
        # A shard cut at a block boundary reads back as empty records.
        if record.get(self._image_key) is None or record.get(self._label_key) is None:
            reason = f"record {index} reads back empty"
            raise damaged_error(what, self._folder, reason, self._fix)
        return record

    def __getitem__(self, index: int) -> tuple[bytes, int, str]:
        record = self._read(int(index))
        name = f"{self.name}/{self.split}[{int(index)}]"
        return record[self._image_key], int(record[self._label_key]), name


def open_tfds_split(
    name: str, split: str, data_dir: str, fix: str | None = None
) -> TfdsImageSource:
    return TfdsImageSource(name, split, data_dir, fix)
