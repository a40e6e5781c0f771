"""The ImageNet test sets, with their labels mapped right, and their tables.

Each set is read from its tensorflow-datasets builder (prepared in the array_record format,
never downloaded) or from a folder, and every source here yields labels in one declared
label space, so the evaluator (smlp_jax/train/evaluators.py) knows which logits to score:

- imagenet_real: tfds imagenet2012_real (validation), or the ImageNet val folder
  `<wnid>/ILSVRC2012_val_<n>.JPEG` with the ReaL `real.json`; 1000 classes, and the ReaL
  multi-hot `real` of each image.
- imagenet_v2: tfds imagenet_v2/<variant> (test), or the release's folder
  `<class index 0..999>/*.jpeg`; 1000 classes.
- imagenet_a, imagenet_r: tfds imagenet_a / imagenet_r (test), or `<wnid>/*.jpg` of their
  200 classes; labels 0..199, positions in the 200 (`imagenet_a` / `imagenet_r`).
- imagenet_sketch: tfds imagenet_sketch (test), or `<wnid>/*.JPEG`; 1000 classes.
- imagenet_c: tfds imagenet2012_corrupted/<corruption>_<severity> (validation), or
  `<corruption>/<severity>/<wnid>/*.JPEG`; 1000 classes, and `group`: which (corruption,
  severity) of the evaluated ones.

The tfds builders label every one of these sets with ImageNet-1k's 1000 wnids (sorted, the
standard class order); ImageNet-v2's folders are named by class index, which a sorted folder
listing would scramble ("10" before "2"), so they are read as numbers. ImageNet-A and -R hold
200 of the 1000 classes: their labels are positions in the 200 and the model's logits are
restricted to those 200 classes (`subset_indices`), as the papers score them (timm #2456:
unrestricted logits gave ImageNet-A 0.08% top-1).

Shipped label maps (beside this file; each line a wnid):
- `imagenet_synsets.txt`: ImageNet-1k's 1000 wnids in class order (sorted). The same list is
  tfds's `imagenet2012/labels.txt` (Apache-2.0) and `all_wnids` in hendrycks/imagenet-r's
  eval.py (MIT).
- `imagenet_a_wnids.txt`: the 200 ImageNet-A classes in ImageNet order, from
  `thousand_k_to_200` in hendrycks/natural-adv-examples eval.py (MIT; commit 0777070).
- `imagenet_r_wnids.txt`: the 200 ImageNet-R classes in ImageNet order, from
  `imagenet_r_wnids` in hendrycks/imagenet-r eval.py (MIT; commit 3131cac).
All three were written from those published lists and checked equal to timm 1.0's
`timm/data/_info/imagenet_{synsets,a_indices,r_indices}.txt` (Apache-2.0).

ImageNet-C's AlexNet errors (`ALEXNET_ERRORS`, the mean over the five severities of each
corruption) are those of google-research/augmix imagenet.py (Apache-2.0, commit 202cf4c;
"Raw AlexNet errors taken from https://github.com/hendrycks/robustness"), which
google-research/robustness_metrics (reports/imagenet_variants.py, Apache-2.0) gives to three
digits from Appendix C of Hendrycks & Dietterich, ICLR 2019, with AlexNet's clean error
0.4348 (`ALEXNET_CLEAN_ERROR`).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import re
from importlib import resources
from typing import Any

import numpy as np

from smlp_jax.data import folder_source
from smlp_jax.data.base import FOLDER_PREFIX, DataError

IMAGENET_CLASSES = 1000
KINDS = (
    "imagenet_real",
    "imagenet_v2",
    "imagenet_a",
    "imagenet_r",
    "imagenet_sketch",
    "imagenet_c",
)
V2_VARIANTS = ("matched-frequency", "threshold-0.7", "topimages")
# (tfds name, its split) of each kind; imagenet_v2 and imagenet_c add their builder config.
TFDS = {
    "imagenet_real": ("imagenet2012_real", "validation"),
    "imagenet_v2": ("imagenet_v2", "test"),
    "imagenet_a": ("imagenet_a", "test"),
    "imagenet_r": ("imagenet_r", "test"),
    "imagenet_sketch": ("imagenet_sketch", "test"),
    "imagenet_c": ("imagenet2012_corrupted", "validation"),
}

# ImageNet-C: the 15 corruptions of the benchmark (mCE) and the 4 extra ones.
BENCHMARK_CORRUPTIONS = (
    "gaussian_noise",
    "shot_noise",
    "impulse_noise",
    "defocus_blur",
    "glass_blur",
    "motion_blur",
    "zoom_blur",
    "snow",
    "frost",
    "fog",
    "brightness",
    "contrast",
    "elastic_transform",
    "pixelate",
    "jpeg_compression",
)
EXTRA_CORRUPTIONS = ("speckle_noise", "gaussian_blur", "spatter", "saturate")
SEVERITIES = (1, 2, 3, 4, 5)
# AlexNet's top-1 error on each corruption, averaged over the 5 severities (module docstring).
ALEXNET_ERRORS = {
    "gaussian_noise": 0.886428,
    "shot_noise": 0.894468,
    "impulse_noise": 0.922640,
    "defocus_blur": 0.819880,
    "glass_blur": 0.826268,
    "motion_blur": 0.785948,
    "zoom_blur": 0.798360,
    "snow": 0.866816,
    "frost": 0.826572,
    "fog": 0.819324,
    "brightness": 0.564592,
    "contrast": 0.853204,
    "elastic_transform": 0.646056,
    "pixelate": 0.717840,
    "jpeg_compression": 0.606500,
}
ALEXNET_CLEAN_ERROR = 0.4348


# --- label maps ---------------------------------------------------------------------------


def _wnids(file: str) -> tuple[str, ...]:
    text = resources.files("smlp_jax.data").joinpath(file).read_text(encoding="utf-8")
    return tuple(line.strip() for line in text.splitlines() if line.strip())


@functools.cache
def imagenet_synsets() -> tuple[str, ...]:
    """ImageNet-1k's 1000 wnids in class order."""
    return _wnids("imagenet_synsets.txt")


@functools.cache
def subset_wnids(classes: str) -> tuple[str, ...]:
    """The 200 wnids of "imagenet_a" or "imagenet_r", in ImageNet order."""
    return _wnids(f"{classes}_wnids.txt")


def subset_indices(classes: str) -> np.ndarray | None:
    """The ImageNet-1k indices of a 200-class label space (None for "imagenet": all 1000)."""
    if classes == "imagenet":
        return None
    index = {wnid: i for i, wnid in enumerate(imagenet_synsets())}
    return np.asarray([index[w] for w in subset_wnids(classes)], np.int32)


def looks_like_imagenet(class_names) -> bool | None:
    """True/False when `class_names` are wnids (in ImageNet-1k's order or not); None when
    they are not wnids at all (nothing to compare)."""
    names = tuple(str(n) for n in class_names)
    if not names or not all(re.fullmatch(r"n\d{8}", n) for n in names):
        return None
    return names == imagenet_synsets()


# --- sources ------------------------------------------------------------------------------
#
# Eval sources follow the pipeline's source protocol (`data.base.ImageSource`); those with
# per-example extras declare `extra_spec` ({name: (shape, dtype)}) and yield
# (bytes, label, name, {name: array}) (`data.pipeline.create_eval_iterator`). A label of -1
# is an image outside the label space: masked out of every metric.


class Relabeled:
    """`base` with each label `l` replaced by `table[l]`."""

    def __init__(self, base, table, classes, name: str | None = None):
        self.base = base
        self.table = np.asarray(table, np.int32)
        self.classes = list(classes)
        self.num_classes = len(self.classes)
        self.name = name or base.name
        self.extra_spec = dict(getattr(base, "extra_spec", {}))

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int) -> tuple:
        item = self.base[index]
        return (item[0], int(self.table[item[1]]), *item[2:])


class Grouped:
    """The concatenation of `parts`, each example tagged with its part's index (`group`)."""

    extra_spec = {"group": ((), np.int32)}

    def __init__(self, parts, name: str):
        self.parts, self.name = list(parts), name
        self.num_classes = self.parts[0].num_classes
        self._offsets = np.cumsum([0] + [len(p) for p in self.parts])

    def __len__(self) -> int:
        return int(self._offsets[-1])

    def __getitem__(self, index: int) -> tuple:
        group = int(np.searchsorted(self._offsets, int(index), side="right") - 1)
        data, label, name = self.parts[group][int(index) - int(self._offsets[group])][:3]
        return data, label, name, {"group": np.int32(group)}


def _multi_hot(labels) -> np.ndarray:
    hot = np.zeros(IMAGENET_CLASSES, np.bool_)
    hot[np.asarray(labels, np.int64)] = True
    return hot


class FolderReal:
    """An ImageNet val folder with the ReaL labels of each image (by its file number)."""

    extra_spec = {"real": ((IMAGENET_CLASSES,), np.bool_)}

    def __init__(self, base, real: list[list[int]]):
        self.base, self.name = base, base.name
        self.classes, self.num_classes = base.classes, base.num_classes
        lengths = [len(r) for r in real]
        self._offsets = np.cumsum([0] + lengths)
        self._flat = np.asarray([c for r in real for c in r], np.int16)

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int) -> tuple:
        data, label, name = self.base[index]
        start, stop = self._offsets[index], self._offsets[index + 1]
        return data, label, name, {"real": _multi_hot(self._flat[start:stop])}


class TfdsReal:
    """tfds `imagenet2012_real`: the image, its original label and the ReaL multi-hot."""

    extra_spec = {"real": ((IMAGENET_CLASSES,), np.bool_)}

    def __init__(self, name: str, split: str, data_dir: str):
        import tensorflow_datasets as tfds  # lazy: tfds takes seconds to import

        from smlp_jax.data import tfds_source  # lazy: imports tensorflow_datasets

        builder = tfds_source.load_builder(name, data_dir)
        features = builder.info.features
        missing = [k for k in ("image", "original_label", "real_label") if k not in features]
        if missing:
            raise DataError(
                f"tfds dataset {name!r} has no {', '.join(missing)} feature(s); ImageNet-ReaL "
                f"needs image, original_label and real_label (found {list(features)})."
            )
        _check_imagenet_names(features["original_label"].names, f"tfds dataset {name!r}")
        splits = list(builder.info.splits.keys())
        if re.split(r"[\[+]", split)[0] not in splits:
            raise DataError(f"tfds dataset {name!r} has no split {split!r}; it has {splits}.")
        self.name, self.split = builder.name, split
        self.classes, self.num_classes = list(imagenet_synsets()), IMAGENET_CLASSES
        self._source = builder.as_data_source(
            split=split, decoders={"image": tfds.decode.SkipDecoding()}
        )

    def __len__(self) -> int:
        return len(self._source)

    def __getitem__(self, index: int) -> tuple:
        record = self._source[int(index)]
        name = f"{self.name}/{self.split}[{int(index)}]"
        real = _multi_hot(np.asarray(record["real_label"], np.int64).reshape(-1))
        return record["image"], int(record["original_label"]), name, {"real": real}


# --- opening a set ------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class EvalData:
    """A test set's source and how its labels read.

    classes: the label space, "imagenet" (1000) or "imagenet_a" / "imagenet_r" (200 of them).
    multi_label: examples carry the ReaL multi-hot `real` (ImageNet-ReaL).
    groups: ImageNet-C's (corruption, severity) of each `group` index.
    """

    source: Any
    classes: str = "imagenet"
    multi_label: bool = False
    groups: tuple[tuple[str, int], ...] = ()


def _check_imagenet_names(names, what: str) -> None:
    if tuple(names or ()) != imagenet_synsets():
        raise DataError(
            f"{what}: its labels are not ImageNet-1k's 1000 wnids in class order, so they "
            "cannot be scored against an ImageNet model."
        )


def _tfds_imagenet(name: str, split: str, data_dir: str):
    from smlp_jax.data import tfds_source  # lazy: imports tensorflow_datasets

    source = tfds_source.open_tfds_split(name, split, data_dir)
    _check_imagenet_names(source.classes, f"tfds dataset {name!r}")
    return source


def _folder(root: str, what: str) -> str:
    root = os.path.abspath(os.path.expanduser(root))
    if not os.path.isdir(root):
        raise DataError(f"{what}: folder {root} does not exist.")
    return root


def _class_folders(root: str) -> list[str]:
    found = sorted(e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith("."))
    if not found:
        raise DataError(f"No class subfolders in {root}.")
    return found


def folder_set(root: str, classes: str, kind: str, *, index_names: bool = False):
    """`root/<class>/**.jpg|jpeg|png` with each folder's images labelled in the label space
    `classes` ("imagenet", "imagenet_a", "imagenet_r"); folders are wnids, or class indices
    0..999 with `index_names` (ImageNet-v2). A folder outside the label space is a DataError."""
    space = imagenet_synsets() if classes == "imagenet" else subset_wnids(classes)
    position = {wnid: i for i, wnid in enumerate(space)}
    paths, labels = [], []
    for folder in _class_folders(root):
        if index_names:
            label = int(folder) if folder.isdigit() and int(folder) < IMAGENET_CLASSES else None
        else:
            label = position.get(folder)
        if label is None:
            expected = (
                "a class index 0..999"
                if index_names
                else f"one of the {len(space)} wnids of {classes}"
            )
            raise DataError(
                f"{kind}: folder {os.path.join(root, folder)} is not {expected} "
                "(smlp_jax/data/eval_sets.py lists the layout)."
            )
        # folder_source's listing: sorted, recursive, .jpg/.jpeg/.png in any case.
        files = folder_source._list_images(os.path.join(root, folder))
        paths += [os.path.join(folder, f) for f in files]
        labels += [label] * len(files)
    if not paths:
        raise DataError(f"{kind}: no .jpg/.jpeg/.png image under {root}.")
    return folder_source.FolderImageSource(root, paths, labels, space, name=f"folder:{root}")


def _real_labels(path: str, source) -> list[list[int]]:
    """The ReaL labels of each image of `source` (an ImageNet val folder), by file number."""
    if not path:
        raise DataError(
            "imagenet_real from a folder needs the ReaL labels: set real_labels to the path of "
            "real.json (github.com/google-research/reassessed-imagenet)."
        )
    try:
        with open(os.path.expanduser(path), encoding="utf-8") as f:
            table = json.load(f)
    except (OSError, ValueError) as err:
        raise DataError(f"imagenet_real: cannot read real_labels {path} ({err}).") from None
    if not isinstance(table, list) or not all(isinstance(r, list) for r in table):
        raise DataError(f"imagenet_real: {path} is not a list of label lists (real.json).")
    real = []
    for index in range(len(source)):
        file = os.path.basename(source.path(index))
        match = re.search(r"ILSVRC2012_val_(\d{8})", file)
        number = int(match.group(1)) if match else 0
        if not 1 <= number <= len(table):
            raise DataError(
                f"imagenet_real: {source.path(index)} is not an ImageNet val image "
                f"ILSVRC2012_val_<n>.JPEG with n in 1..{len(table)} of {path}."
            )
        labels = table[number - 1]
        if not all(isinstance(c, int) and 0 <= c < IMAGENET_CLASSES for c in labels):
            raise DataError(f"imagenet_real: entry {number} of {path} is not class indices.")
        real.append(labels)
    return real


def _imagenet_c(dataset: str, split: str, data_dir: str, corruptions, severities) -> EvalData:
    groups = tuple((c, int(s)) for c in corruptions for s in severities)
    if dataset.startswith(FOLDER_PREFIX):
        root = _folder(dataset[len(FOLDER_PREFIX) :], "imagenet_c")
        missing = [
            f"{c}/{s}" for c, s in groups if not os.path.isdir(os.path.join(root, c, str(s)))
        ]
        if missing:
            raise DataError(
                f"imagenet_c: {root} lacks {', '.join(missing[:5])}"
                + (f" (and {len(missing) - 5} more)" if len(missing) > 5 else "")
                + ": expected <corruption>/<severity>/<wnid>/ folders."
            )
        parts = [
            folder_set(os.path.join(root, c, str(s)), "imagenet", "imagenet_c") for c, s in groups
        ]
        name = f"folder:{root}"
    else:
        name = dataset or TFDS["imagenet_c"][0]
        parts = [_tfds_imagenet(f"{name}/{c}_{s}", split, data_dir) for c, s in groups]
    return EvalData(Grouped(parts, name), groups=groups)


def check_imagenet_c(corruptions, severities) -> None:
    known = BENCHMARK_CORRUPTIONS + EXTRA_CORRUPTIONS
    unknown = [c for c in corruptions if c not in known]
    if unknown or not corruptions:
        raise DataError(
            f"imagenet_c: corruptions {list(corruptions)}: "
            + (f"unknown {unknown}; " if unknown else "give at least one; ")
            + f"use some of {', '.join(known)}."
        )
    bad = [s for s in severities if s not in SEVERITIES]
    if bad or not severities:
        raise DataError(f"imagenet_c: severities {list(severities)}; use some of 1..5.")


def open_imagenet_set(
    kind: str,
    dataset: str,
    split: str,
    data_dir: str,
    *,
    variant: str = "matched-frequency",
    real_labels: str = "",
    corruptions=BENCHMARK_CORRUPTIONS,
    severities=SEVERITIES,
) -> EvalData:
    """The test set `kind` (KINDS) from `dataset`: "" (its tfds builder), another tfds name,
    or "folder:/path" (the layouts in the module docstring); `split` "" is the builder's."""
    if kind not in KINDS:
        raise DataError(f"unknown ImageNet test set {kind!r}; use one of {', '.join(KINDS)}.")
    folder = dataset.startswith(FOLDER_PREFIX)
    if folder and split:
        raise DataError(f"{kind}: split={split!r} is for tfds datasets; a folder is one split.")
    split = split or TFDS[kind][1]
    if kind == "imagenet_c":
        check_imagenet_c(corruptions, severities)
        return _imagenet_c(dataset, split, data_dir, corruptions, severities)
    if kind == "imagenet_v2" and variant not in V2_VARIANTS:
        raise DataError(f"imagenet_v2: variant {variant!r}; use one of {', '.join(V2_VARIANTS)}.")
    if kind == "imagenet_real" and real_labels and not folder:
        raise DataError("imagenet_real: real_labels is for folders; tfds has the labels.")
    classes = kind if kind in ("imagenet_a", "imagenet_r") else "imagenet"
    if folder:
        root = _folder(dataset[len(FOLDER_PREFIX) :], kind)
        source = folder_set(root, classes, kind, index_names=kind == "imagenet_v2")
        if kind == "imagenet_real":
            return EvalData(FolderReal(source, _real_labels(real_labels, source)), multi_label=True)
        return EvalData(source, classes)
    name = dataset or TFDS[kind][0]
    if kind == "imagenet_v2" and not dataset:
        name = f"{name}/{variant}"
    if kind == "imagenet_real":
        return EvalData(TfdsReal(name, split, data_dir), multi_label=True)
    source = _tfds_imagenet(name, split, data_dir)
    if classes != "imagenet":  # the builders label A and R with their ImageNet-1k index
        table = np.full(IMAGENET_CLASSES, -1, np.int32)
        table[subset_indices(classes)] = np.arange(200)
        source = Relabeled(source, table, subset_wnids(classes))
    return EvalData(source, classes)


def map_to_classes(source, model_classes, num_model_classes: int, what: str):
    """`source` with its labels as the model's class indices: by name when both name their
    classes (the source may hold a subset, in any order), else by index when the counts
    agree; a DataError when its classes do not fit the model's."""
    names = [str(c) for c in getattr(source, "classes", ()) or ()]
    model_classes = [str(c) for c in model_classes or ()]
    if names and model_classes:
        if names == model_classes:
            return source
        position = {c: i for i, c in enumerate(model_classes)}
        unknown = [c for c in names if c not in position]
        if unknown:
            raise DataError(
                f"{what}: its classes {unknown[:5]}{' ...' if len(unknown) > 5 else ''} are not "
                f"among the model's {len(model_classes)} classes."
            )
        return Relabeled(source, [position[c] for c in names], model_classes)
    if int(source.num_classes) != int(num_model_classes):
        raise DataError(
            f"{what}: its {source.num_classes} classes do not fit the model's {num_model_classes}."
        )
    return source


# --- ImageNet-C's numbers -----------------------------------------------------------------


def corruption_summary(
    top1: dict[tuple[str, int], float], clean_top1: float | None = None
) -> dict[str, float]:
    """ImageNet-C's aggregates from the top-1 of each (corruption, severity):

    - `<c>/<s>/top1` and `<c>/top1` (the mean over the severities given);
    - with all 5 severities of a benchmark corruption, its corruption error
      `<c>/ce` = E_c / E_c^AlexNet (E: top-1 error averaged over the severities), and with
      `clean_top1`, the relative `<c>/relative_ce` = (E_c - E_clean) / (E_c^AlexNet -
      E_clean^AlexNet) (Hendrycks & Dietterich 2019, section 3);
    - with all 15 benchmark corruptions, `mce` and `relative_mce`: their means.
    """
    out: dict[str, float] = {}
    by_corruption: dict[str, dict[int, float]] = {}
    for (corruption, severity), value in top1.items():
        out[f"{corruption}/{severity}/top1"] = float(value)
        by_corruption.setdefault(corruption, {})[int(severity)] = float(value)
    ces, relative = [], []
    for corruption, values in by_corruption.items():
        out[f"{corruption}/top1"] = float(np.mean(list(values.values())))
        if corruption not in ALEXNET_ERRORS or sorted(values) != list(SEVERITIES):
            continue
        error = 1.0 - float(np.mean(list(values.values())))
        ces.append(error / ALEXNET_ERRORS[corruption])
        out[f"{corruption}/ce"] = ces[-1]
        if clean_top1 is not None:
            relative.append(
                (error - (1.0 - clean_top1)) / (ALEXNET_ERRORS[corruption] - ALEXNET_CLEAN_ERROR)
            )
            out[f"{corruption}/relative_ce"] = relative[-1]
    if len(ces) == len(BENCHMARK_CORRUPTIONS):
        out["mce"] = float(np.mean(ces))
        if clean_top1 is not None:
            out["relative_mce"] = float(np.mean(relative))
    return out
