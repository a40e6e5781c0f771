"""Prepared copies of a dataset: each image's longer side capped, as JPEG.

`write_copy(source, out, max_side, quality)` (run by `python -m smlp_jax.tools.prepare_data
folder:SOURCE --out OUT --max-side 512`) mirrors the folder's layout (`train/` and its eval
folder, or the flat class folders) into `out`. `write_tfds_copy(name, out, max_side, quality)`
(`python -m smlp_jax.tools.prepare_data NAME --out OUT --max-side 512`, NAME `demo` or a
prepared tfds name) writes the tfds splits as ArrayRecord shards in `out`
(data/prepared_records.py: one record an image, its int64 label then its JPEG).

Either way an image whose longer side is above `max_side` is resized to that side (aspect
kept, Pillow's antialiased Lanczos) and written as RGB JPEG at `quality`; a JPEG already
within the cap is kept byte for byte (training decodes the same pixels); any other image
within it is re-encoded as JPEG. The pipeline ignores EXIF orientation, and so does this.
An unreadable image is copied as it is (its bytes, its name or record position) and named
in the info: the copy holds the same examples in the same places, so a folder's held-out
split and tfds's slices select the same images, and training skips that file as it skips
the original. `out/smlp_prepared.json`, written
last, records what was done: the layout ("folder" or "array_record"; an info without one is
a folder copy), the source, the cap, the quality, the counts per split, the longest side
written and, for a tfds copy, the classes and each split's shards with their record counts.

Training reads the copy as `config.dataset = "prepared:OUT"` (`open_prepared_split`): the
folder source or a `prepared_records.PreparedRecordSource`, its info checked (a copy without
it, e.g. cut short, is one line) and its longest side declared (`max_image_side`: the
device-resize canvas is sized to it).
"""

from __future__ import annotations

import contextlib
import functools
import io
import itertools
import json
import multiprocessing
import os
from collections.abc import Iterator, Sequence
from concurrent import futures
from typing import Any

from PIL import Image

from smlp_jax.data import folder_source, prepared_records, transforms
from smlp_jax.data.base import (
    DataError,
    ImageSource,
    held_out_split,
    resolve_data_dir,
)

INFO_NAME = "smlp_prepared.json"
FORMAT = "smlp_jax prepared folder"
VERSION = 1
LAYOUTS = ("folder", "array_record")
PREFIX = "prepared:"
JPEG_SUFFIXES = (".jpg", ".jpeg")
SHARD_BYTES = 1 << 30  # ~1 GiB a shard: ImageNet's train split at 512 px is a few dozen
RECORD = "int64 little-endian label, then the JPEG bytes"


def _trees(source: str) -> list[str]:
    """The folders to copy, relative to `source`: train/ and its eval folders, or "" (flat)."""
    if not os.path.isdir(os.path.join(source, "train")):
        return [""]
    evals = [n for n in folder_source.EVAL_FOLDERS if os.path.isdir(os.path.join(source, n))]
    return ["train", *evals]


def _encode_image(data: bytes, max_side: int, quality: int) -> tuple[str, int, bytes]:
    """One image as written -> (what was done, its longer side, its bytes); raises
    UNREADABLE_ERRORS for a bad one."""
    img = transforms.open_image(data)
    width, height = img.size
    longest = max(width, height)
    img.load()  # a truncated or damaged file fails here, named as unreadable in the info
    if longest <= max_side and img.format == "JPEG":
        return "copied", longest, data
    img = transforms._rgb(img)  # as the pipeline decodes it (16-bit, grey, RGBA -> RGB)
    action = "re-encoded"
    if longest > max_side:
        size = (
            max(1, round(width * max_side / longest)),
            max(1, round(height * max_side / longest)),
        )
        img = img.resize(size, Image.Resampling.LANCZOS)
        action, longest = "resized", max(size)
    buffer = io.BytesIO()
    img.save(buffer, "JPEG", quality=quality)
    return action, longest, buffer.getvalue()


def _encode_or_none(data: bytes, max_side: int, quality: int) -> tuple[str, int, bytes] | None:
    try:
        return _encode_image(data, max_side, quality)
    except transforms.UNREADABLE_ERRORS:
        return None


def _check_settings(out: str, max_side: int, quality: int) -> None:
    if max_side < 1 or not 1 <= quality <= 95:
        raise DataError(
            f"--max-side {max_side} --quality {quality}: give a side of at least 1 px and a "
            "JPEG quality from 1 to 95."
        )
    if os.path.isdir(out) and os.listdir(out):
        raise DataError(f"--out {out} exists and is not empty; give a new or empty folder.")


def _write_info(out: str, info: dict[str, Any]) -> None:
    partial = os.path.join(out, INFO_NAME + ".partial")
    with open(partial, "w") as f:
        json.dump(info, f, indent=1, sort_keys=True)
    os.replace(partial, os.path.join(out, INFO_NAME))  # last: a copy with its info is whole


def write_copy(source: str, out: str, max_side: int, quality: int = 90) -> dict[str, Any]:
    """The prepared copy of folder `source` in `out` (new or empty); returns its info."""
    source = os.path.abspath(os.path.expanduser(source))
    out = os.path.abspath(os.path.expanduser(out))
    _check_settings(out, max_side, quality)
    if not os.path.isdir(source):
        raise DataError(f"Image folder {source} does not exist.")
    if os.path.commonpath([source, out]) == source:
        raise DataError(f"--out {out} is inside {source}; give a folder outside it.")
    splits, unreadable, largest = {}, [], 0
    for tree in _trees(source):
        counts = {"images": 0, "resized": 0, "re-encoded": 0, "copied": 0, "unreadable": 0}
        root = os.path.join(source, tree)
        for paths in folder_source._scan(root).values():
            for path in paths:
                name = path if path.lower().endswith(JPEG_SUFFIXES) else path + ".jpg"
                target = os.path.join(out, tree, name)
                os.makedirs(os.path.dirname(target), exist_ok=True)
                with open(os.path.join(root, path), "rb") as f:
                    data = f.read()
                encoded = _encode_or_none(data, max_side, quality)
                if encoded is None:  # kept as it is: the same files, so the same splits
                    unreadable.append(os.path.join(tree, path))
                    counts["unreadable"] += 1
                    with open(os.path.join(out, tree, path), "wb") as f:
                        f.write(data)
                    continue
                action, side, image = encoded
                with open(target, "wb") as f:
                    f.write(image)
                counts["images"] += 1
                counts[action] += 1
                largest = max(largest, side)
        splits[tree or "train"] = counts
    info = {
        "format": FORMAT,
        "version": VERSION,
        "layout": "folder",
        "source": source,
        "max_side": max_side,
        "quality": quality,
        "resample": "lanczos",
        "splits": splits,
        "max_image_side": largest,
        "unreadable": unreadable,
    }
    _write_info(out, info)
    return info


def _encoded(
    source: ImageSource, max_side: int, quality: int, workers: int
) -> Iterator[tuple[str, int, bytes, tuple[str, int, bytes] | None]]:
    """(name, label, bytes, `_encode_or_none`) of each of `source`'s examples in order,
    encoded by `workers` processes (1: in this one)."""
    chunk = 64 * workers  # examples in flight: bounded, whatever the split's size
    with contextlib.ExitStack() as stack:
        encode = map
        if workers > 1:
            # spawn: this process may hold threads (jax, grain) that fork would copy mid-lock.
            context = multiprocessing.get_context("spawn")
            pool = stack.enter_context(futures.ProcessPoolExecutor(workers, mp_context=context))
            encode = functools.partial(pool.map, chunksize=16)  # fewer round trips
        for start in range(0, len(source), chunk):
            examples = [source[i] for i in range(start, min(start + chunk, len(source)))]
            images = [data for data, _, _ in examples]
            results = encode(
                _encode_or_none, images, itertools.repeat(max_side), itertools.repeat(quality)
            )
            for (data, label, name), result in zip(examples, results, strict=True):
                yield name, label, data, result


def write_tfds_copy(
    name: str,
    out: str,
    max_side: int,
    quality: int = 90,
    *,
    splits: Sequence[str] | None = None,
    data_dir: str | None = None,
    shard_bytes: int = SHARD_BYTES,
    workers: int = 1,
) -> dict[str, Any]:
    """The prepared copy of tfds dataset `name` ("demo" or a prepared tfds name in
    `data_dir`) in `out` (new or empty), `splits` (default: all) as ArrayRecord shards of
    about `shard_bytes`; returns its info."""
    # Lazy: tensorflow_datasets takes seconds to import; folder copies never need it.
    from smlp_jax.data import demo_dataset, tfds_source

    out = os.path.abspath(os.path.expanduser(out))
    _check_settings(out, max_side, quality)
    if shard_bytes < 1 or workers < 1:
        raise DataError(
            f"A shard of {shard_bytes} bytes and {workers} workers: give --shard-mb and "
            "--workers of at least 1."
        )
    data_dir = os.path.abspath(resolve_data_dir(data_dir))
    tfds_name, fix = demo_dataset.tfds_dataset(name, data_dir)  # the demo built (or rebuilt)
    builder = tfds_source.load_builder(tfds_name, data_dir)
    available = list(builder.info.splits.keys())
    splits = list(dict.fromkeys(splits or available))
    for split in splits:
        if split not in available:
            raise DataError(
                f"tfds dataset {tfds_name!r} has no split {split!r}; --splits takes some of "
                f"{available} (slices such as train[:95%] are read from the copy)."
            )
    os.makedirs(out, exist_ok=True)
    written, unreadable, largest, num_classes, classes = {}, [], 0, 0, []
    for split in splits:
        source = tfds_source.open_tfds_split(tfds_name, split, data_dir, fix)
        num_classes, classes = source.num_classes, source.classes
        counts = {"images": 0, "resized": 0, "re-encoded": 0, "copied": 0, "unreadable": 0}
        writer = prepared_records.ShardWriter(out, split, shard_bytes)
        for example, label, data, encoded in _encoded(source, max_side, quality, workers):
            if encoded is None:  # kept as it is: the records keep tfds's indices
                unreadable.append(example)
                counts["unreadable"] += 1
                writer.write(label, data)
                continue
            action, side, image = encoded
            writer.write(label, image)
            counts["images"] += 1
            counts[action] += 1
            largest = max(largest, side)
        written[split] = {**counts, "shards": writer.close()}
    info = {
        "format": FORMAT,
        "version": VERSION,
        "layout": "array_record",
        "source": {
            "name": name,
            "tfds_name": builder.name,
            "tfds_version": str(builder.version),
            "data_dir": data_dir,
        },
        "max_side": max_side,
        "quality": quality,
        "resample": "lanczos",
        "record": RECORD,
        "splits": written,
        "num_classes": num_classes,
        "classes": classes,
        "max_image_side": largest,
        "unreadable": unreadable,
    }
    _write_info(out, info)
    return info


def read_info(path: str) -> dict[str, Any]:
    """The info of the prepared copy at `path`; `DataError` (one line) if it has none."""
    path = os.path.abspath(os.path.expanduser(path))
    info_path = os.path.join(path, INFO_NAME)
    redo = (
        f"prepare it again (python -m smlp_jax.tools.prepare_data folder:SOURCE --out {path} "
        f"--max-side 512) or train on it as folder:{path}"
    )
    shards = (prepared_records.SHARD_SUFFIX, prepared_records.PARTIAL_SUFFIX)
    if os.path.isdir(path) and any(n.endswith(shards) for n in os.listdir(path)):
        redo = (
            f"delete it and prepare it again (python -m smlp_jax.tools.prepare_data NAME "
            f"--data_dir DATA_DIR --out {path} --max-side 512)"
        )
    if not os.path.isfile(info_path):
        if not os.path.isdir(path):
            raise DataError(f"{PREFIX}{path} does not exist; {redo}.")
        raise DataError(
            f"{PREFIX}{path} has no {INFO_NAME}, which prepare_data writes last: the copy is "
            f"not a finished one; {redo}."
        )
    try:
        with open(info_path) as f:
            info = json.load(f)
    except (OSError, ValueError) as error:
        raise DataError(f"{info_path} cannot be read ({error}); {redo}.") from None
    if not isinstance(info, dict) or info.get("format") != FORMAT:
        raise DataError(f"{info_path} is not a prepare_data info file; {redo}.")
    if info.get("version") != VERSION or info.get("layout", "folder") not in LAYOUTS:
        raise DataError(
            f"{info_path} is of version {info.get('version')} layout {info.get('layout')!r}, "
            f"not one this smlp_jax reads (version {VERSION}, {' or '.join(LAYOUTS)}); {redo}."
        )
    return info


def default_eval_split(path: str) -> str:
    """The held-out split of the copy at `path`: "val" for a folder copy; 'validation' when
    an array_record copy has it, else 'test', else 'val'."""
    info = read_info(path)
    if info.get("layout", "folder") == "folder":
        return "val"
    return held_out_split(f"{PREFIX}{os.path.abspath(path)}", list(info["splits"]))


def open_prepared_split(
    path: str, split: str, *, val_fraction: float = 0.1, val_split_seed: int = 0
) -> folder_source.FolderImageSource | prepared_records.PreparedRecordSource:
    """The source of the copy's `split`, declaring the longest side it holds."""
    info = read_info(path)
    path = os.path.abspath(os.path.expanduser(path))
    if info.get("layout", "folder") == "array_record":
        source = info["source"]
        redo = (
            f"delete {path} and prepare it again: python -m smlp_jax.tools.prepare_data "
            f"{source['name']} --data_dir {source['data_dir']} --out {path} --max-side "
            f"{info['max_side']} --quality {info['quality']} --splits {' '.join(info['splits'])}"
        )
        return prepared_records.PreparedRecordSource(path, info, split, PREFIX + path, redo)
    source = folder_source.open_folder_split(
        path, split, val_fraction=val_fraction, val_split_seed=val_split_seed
    )
    source.name = PREFIX + source.name[len("folder:") :]
    source.max_image_side = int(info["max_image_side"]) or None
    return source
