"""`folder:/path` datasets: a user's own images, one subfolder per class.

Layout: `/path/train/<class>/**.{jpg,jpeg,png}` and `/path/val/<class>/...` (`validation/`
and `test/` are accepted as the eval folder's name). Without a `train/` subfolder the path
itself is the training folder. Without an eval folder, `val_fraction` of every class's
training images is held out (chosen with the fixed `val_split_seed`, so the split does not
change with the training seed). Class names are the sorted training subfolder names; labels
are their indices. Files are listed once; decoding (and skipping corrupt files) happens in
the pipeline. An empty folder or a class without images is a DataError, and so is a listed
file that cannot be read (an OSError: permissions, a mount, the storage): that stops the run
where a corrupt image is skipped.
"""

from __future__ import annotations

import os

import numpy as np

from smlp_jax.data.base import DataError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
EVAL_FOLDERS = ("val", "validation", "test")


def _list_images(folder: str) -> list[str]:
    """Image files under `folder` (recursive), as sorted paths relative to it."""
    found = []
    for directory, subdirs, files in os.walk(folder, followlinks=True):
        subdirs.sort()
        for file in files:
            if file.lower().endswith(IMAGE_EXTENSIONS):
                found.append(os.path.relpath(os.path.join(directory, file), folder))
    return sorted(found)


def _scan(folder: str) -> dict[str, list[str]]:
    """{class name: sorted image paths relative to folder} for each class subfolder."""
    if not os.path.isdir(folder):
        raise DataError(f"Image folder {folder} does not exist.")
    classes = sorted(
        e.name for e in os.scandir(folder) if e.is_dir() and not e.name.startswith(".")
    )
    if not classes:
        raise DataError(
            f"No class subfolders in {folder}: expected {folder}/<class_name>/<image>.jpg|png "
            "(one subfolder per class)."
        )
    files = {
        c: [os.path.join(c, f) for f in _list_images(os.path.join(folder, c))] for c in classes
    }
    empty = [c for c, paths in files.items() if not paths]
    if empty:
        raise DataError(
            f"Class folder(s) without any {'/'.join(IMAGE_EXTENSIONS)} image in {folder}: "
            f"{empty}. Remove them or add images."
        )
    return files


class FolderImageSource:
    """index -> (file bytes, label, path). Paths are packed in one string so that grain
    workers receive the source cheaply even for millions of files."""

    def __init__(self, root: str, paths: list[str], labels: list[int], classes, name: str):
        self.root, self.name, self.classes = root, name, list(classes)
        self.num_classes = len(self.classes)
        encoded = [p.encode() for p in paths]
        self._blob = b"".join(encoded)
        self._offsets = np.cumsum([0] + [len(p) for p in encoded], dtype=np.int64)
        self._labels = np.asarray(labels, np.int32)

    def __len__(self) -> int:
        return len(self._labels)

    def path(self, index: int) -> str:
        start, stop = self._offsets[index], self._offsets[index + 1]
        return os.path.join(self.root, self._blob[start:stop].decode())

    def __getitem__(self, index: int) -> tuple[bytes, int, str]:
        path = self.path(int(index))
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as err:
            # Not a damaged image (those decode badly and are skipped by name): the file may
            # well be intact behind permissions, a mount or the storage, and skipping it
            # would train or evaluate without it, unnoticed. So the run stops, and says why.
            raise DataError(
                f"could not read {path}: {err.strerror or err}; the image may well be intact, "
                "so the run stopped rather than go on without it: make it readable "
                "(permissions, the mount, the storage) and run again (training resumes from "
                "its last checkpoint)."
            ) from None
        return data, int(self._labels[index]), path


def _holdout(files: dict[str, list[str]], fraction: float, seed: int) -> tuple[dict, dict]:
    """Per class, round(n * fraction) images, at least 1 and at most n - 1, go to eval,
    chosen by `seed`."""
    if not 0 < fraction < 1:
        raise DataError(
            f"No val/ folder, so config.input.val_fraction ({fraction}) of each class is held out "
            "for eval; it must be in (0, 1). Or add a val/<class>/ folder."
        )
    train, held = {}, {}
    for class_index, (name, paths) in enumerate(sorted(files.items())):
        order = np.random.default_rng((seed, class_index)).permutation(len(paths))
        count = min(max(1, int(round(len(paths) * fraction))), len(paths) - 1)
        held[name] = sorted(paths[i] for i in order[:count])
        train[name] = sorted(paths[i] for i in order[count:])
    return train, held


def open_folder_split(
    path: str, split: str, *, val_fraction: float = 0.1, val_split_seed: int = 0
) -> FolderImageSource:
    """`split` is "train" or an eval name ("val", "validation", "test")."""
    path = os.path.abspath(os.path.expanduser(path))
    train_dir = os.path.join(path, "train")
    if not os.path.isdir(train_dir):
        train_dir = path  # class folders directly under path
    files = _scan(train_dir)
    classes = sorted(files)
    # Without train/, folders named val/ etc. under path are classes, not an eval split.
    eval_dirs = [
        os.path.join(path, n)
        for n in EVAL_FOLDERS
        if train_dir != path and os.path.isdir(os.path.join(path, n))
    ]
    if split == "train":
        root = train_dir
        if not eval_dirs:
            files, _ = _holdout(files, val_fraction, val_split_seed)
    elif split in EVAL_FOLDERS:
        if eval_dirs:
            root = eval_dirs[0]
            files = _scan(root)
            unknown = sorted(set(files) - set(classes))
            if unknown:
                raise DataError(f"Eval classes {unknown} in {root} have no training folder.")
        else:
            root = train_dir
            _, files = _holdout(files, val_fraction, val_split_seed)
    else:
        raise DataError(f"Image folders have the splits 'train' and 'val', not {split!r}.")
    paths = [p for name in classes for p in files.get(name, [])]
    labels = [classes.index(name) for name in classes for _ in files.get(name, [])]
    return FolderImageSource(root, paths, labels, classes, name=f"folder:{root}")
