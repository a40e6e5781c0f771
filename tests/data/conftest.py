"""Fixtures of the data tests: a tiny tfds ArrayRecord dataset whose pixels say which
example they are, and a config factory."""

import io

import ml_collections
import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from smlp_jax import data

TINY_CLASSES = 3
TINY_SPLITS = {"train": 40, "validation": 10}


def tiny_colour(index: int, label: int) -> tuple[int, int, int]:
    """Solid colour of example `index`: red encodes the index, green the label."""
    return 10 + 5 * index, 100 * label, 50


def tiny_index(image: np.ndarray, mean, std) -> tuple[int, int]:
    """Recovers (index, label) from a normalised (H, W, 3) solid-colour image."""
    rgb = (image.mean(axis=(0, 1)) * np.asarray(std) + np.asarray(mean)) * 255.0
    return int(round((rgb[0] - 10) / 5)), int(round(rgb[1] / 100))


class SmlpTestTiny(tfds.core.GeneratorBasedBuilder):
    """3 classes, train 40 / validation 10, PNG RGB images of varied sizes; label = i % 3."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self,
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(shape=(None, None, 3), encoding_format="png"),
                    "label": tfds.features.ClassLabel(num_classes=TINY_CLASSES),
                }
            ),
            supervised_keys=("image", "label"),
        )

    def _split_generators(self, dl_manager):
        return {split: self._generate_examples(n) for split, n in TINY_SPLITS.items()}

    def _generate_examples(self, n):
        for i in range(n):
            label = i % TINY_CLASSES
            size = (24 + (i * 7) % 17, 24 + (i * 5) % 13)
            buffer = io.BytesIO()
            Image.new("RGB", size, tiny_colour(i, label)).save(buffer, format="PNG")
            yield i, {"image": buffer.getvalue(), "label": label}


@pytest.fixture(scope="session")
def tiny_data_dir(tmp_path_factory) -> str:
    data_dir = tmp_path_factory.mktemp("tiny_tfds")
    tfds.disable_progress_bar()
    SmlpTestTiny(data_dir=str(data_dir), file_format="array_record").download_and_prepare(
        download_config=tfds.download.DownloadConfig(try_download_gcs=False)
    )
    return str(data_dir)


def make_config(dataset: str, data_dir: str | None = None, *, preset="simple", **overrides):
    """A locked-down trainer-like config with small sizes."""
    config = ml_collections.ConfigDict(
        dict(
            dataset=dataset,
            data_dir=data_dir,
            image_size=16,
            batch_size=8,
            eval_batch_size=8,
            seed=0,
        )
    )
    config.input = data.default_input_config(preset)
    config.mixup = data.default_mixup_config()
    for key, value in overrides.items():
        target = config
        *path, leaf = key.split(".")
        for part in path:
            target = target[part]
        target[leaf] = value
    config.lock()
    return config
