"""The data side's shared types: its error, what a dataset tells the trainer, the source
protocol, and where tfds data lives. Every other data module imports from here."""

from __future__ import annotations

import dataclasses
import os
from typing import Protocol

from smlp_jax.errors import UserError

FOLDER_PREFIX = "folder:"
DEMO_NAME = "demo"


class DataError(UserError, ValueError):
    """A dataset cannot be used as configured; the message says what to do."""


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """What the trainer needs to know about a dataset (this process sees all of it)."""

    name: str
    num_classes: int
    num_train: int
    num_eval: int
    # The name of each label, when the source has them (a folder's class subfolders, a tfds
    # ClassLabel's names); kept in the run record. Not part of equality.
    class_names: tuple[str, ...] = dataclasses.field(default=(), compare=False)
    # The longest side of any image, when the source declares it (a tfds builder with a fixed
    # image shape); None when only decoding every image would tell.
    max_image_side: int | None = dataclasses.field(default=None, compare=False)


class ImageSource(Protocol):
    """Random access to encoded images; picklable so grain workers can read from it."""

    name: str
    num_classes: int

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> tuple[bytes, int, str]: ...


def resolve_data_dir(data_dir: str | None) -> str:
    """config.data_dir, else $TFDS_DATA_DIR, else ~/tensorflow_datasets."""
    if data_dir:
        return os.path.expanduser(str(data_dir))
    env = os.environ.get("TFDS_DATA_DIR")
    return os.path.expanduser(env) if env else os.path.expanduser("~/tensorflow_datasets")


def held_out_split(what: str, splits: list[str]) -> str:
    """The held-out split among `splits`: 'validation' (ImageNet), else 'test' (CIFAR, the
    demo), else 'val'; else one line that says how to set one (`what` names the dataset)."""
    for candidate in ("validation", "test", "val"):
        if candidate in splits:
            return candidate
    raise DataError(
        f"{what} has no validation/test split (splits: {splits}); set config.input.eval_split, "
        "e.g. 'train[-5%:]' with config.input.train_split 'train[:95%]'."
    )
