"""Prepared copies of a folder dataset: each image's longer side capped, as JPEG.

`write_copy(source, out, max_side, quality)` (run by `python -m smlp_jax.tools.prepare_data
folder:SOURCE --out OUT --max-side 512`) mirrors the folder's layout (`train/` and its eval
folder, or the flat class folders) into `out`. An image whose longer side is above
`max_side` is resized to that side (aspect kept, Pillow's antialiased Lanczos) and written
as RGB JPEG at `quality`; a JPEG already within the cap is copied byte for byte (training
decodes the same pixels); any other image within it is re-encoded as JPEG. The pipeline
ignores EXIF orientation, and so does this. An unreadable file is skipped and named in the
info. `out/smlp_prepared.json`, written last, records what was done: the source, the cap,
the quality, the counts per split and the longest side written.

Training reads the copy as `config.dataset = "prepared:OUT"`: the folder source, its info
checked (a copy without it, e.g. cut short, is one line) and its longest side declared
(`max_image_side`: the device-resize canvas is sized to it).
"""

from __future__ import annotations

import json
import os
from typing import Any

from PIL import Image

from smlp_jax.data import folder_source, transforms
from smlp_jax.data.base import DataError

INFO_NAME = "smlp_prepared.json"
FORMAT = "smlp_jax prepared folder"
VERSION = 1
PREFIX = "prepared:"
JPEG_SUFFIXES = (".jpg", ".jpeg")


def _trees(source: str) -> list[str]:
    """The folders to copy, relative to `source`: train/ and its eval folders, or "" (flat)."""
    if not os.path.isdir(os.path.join(source, "train")):
        return [""]
    evals = [n for n in folder_source.EVAL_FOLDERS if os.path.isdir(os.path.join(source, n))]
    return ["train", *evals]


def _copy_image(data: bytes, target: str, max_side: int, quality: int) -> tuple[str, int]:
    """Writes one image to `target`; -> (what was done, its longer side as written)."""
    img = transforms.open_image(data)
    width, height = img.size
    longest = max(width, height)
    img.load()  # a truncated or damaged file fails here, named as unreadable in the info
    if longest <= max_side and img.format == "JPEG":
        with open(target, "wb") as f:
            f.write(data)
        return "copied", longest
    img = transforms._rgb(img)  # as the pipeline decodes it (16-bit, grey, RGBA -> RGB)
    action = "re-encoded"
    if longest > max_side:
        size = (
            max(1, round(width * max_side / longest)),
            max(1, round(height * max_side / longest)),
        )
        img = img.resize(size, Image.Resampling.LANCZOS)
        action, longest = "resized", max(size)
    img.save(target, "JPEG", quality=quality)
    return action, longest


def write_copy(source: str, out: str, max_side: int, quality: int = 90) -> dict[str, Any]:
    """The prepared copy of folder `source` in `out` (new or empty); returns its info."""
    source = os.path.abspath(os.path.expanduser(source))
    out = os.path.abspath(os.path.expanduser(out))
    if max_side < 1 or not 1 <= quality <= 95:
        raise DataError(
            f"--max-side {max_side} --quality {quality}: give a side of at least 1 px and a "
            "JPEG quality from 1 to 95."
        )
    if not os.path.isdir(source):
        raise DataError(f"Image folder {source} does not exist.")
    if os.path.commonpath([source, out]) == source:
        raise DataError(f"--out {out} is inside {source}; give a folder outside it.")
    if os.path.isdir(out) and os.listdir(out):
        raise DataError(f"--out {out} exists and is not empty; give a new or empty folder.")
    splits, unreadable, largest = {}, [], 0
    for tree in _trees(source):
        counts = {"images": 0, "resized": 0, "re-encoded": 0, "copied": 0}
        root = os.path.join(source, tree)
        for paths in folder_source._scan(root).values():
            for path in paths:
                name = path if path.lower().endswith(JPEG_SUFFIXES) else path + ".jpg"
                target = os.path.join(out, tree, name)
                os.makedirs(os.path.dirname(target), exist_ok=True)
                with open(os.path.join(root, path), "rb") as f:
                    data = f.read()
                try:
                    action, side = _copy_image(data, target, max_side, quality)
                except transforms.UNREADABLE_ERRORS:
                    unreadable.append(os.path.join(tree, path))
                    continue
                counts["images"] += 1
                counts[action] += 1
                largest = max(largest, side)
        splits[tree or "train"] = counts
    info = {
        "format": FORMAT,
        "version": VERSION,
        "source": source,
        "max_side": max_side,
        "quality": quality,
        "resample": "lanczos",
        "splits": splits,
        "max_image_side": largest,
        "unreadable": unreadable,
    }
    partial = os.path.join(out, INFO_NAME + ".partial")
    with open(partial, "w") as f:
        json.dump(info, f, indent=1, sort_keys=True)
    os.replace(partial, os.path.join(out, INFO_NAME))  # last: a copy with its info is whole
    return info


def read_info(path: str) -> dict[str, Any]:
    """The info of the prepared copy at `path`; `DataError` (one line) if it has none."""
    path = os.path.abspath(os.path.expanduser(path))
    info_path = os.path.join(path, INFO_NAME)
    redo = (
        f"prepare it again (python -m smlp_jax.tools.prepare_data folder:SOURCE --out {path} "
        f"--max-side 512) or train on it as folder:{path}"
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
    return info


def open_prepared_split(
    path: str, split: str, *, val_fraction: float = 0.1, val_split_seed: int = 0
) -> folder_source.FolderImageSource:
    """The folder source of the copy's `split`, declaring the longest side it holds."""
    info = read_info(path)
    source = folder_source.open_folder_split(
        path, split, val_fraction=val_fraction, val_split_seed=val_split_seed
    )
    source.name = PREFIX + source.name[len("folder:") :]
    source.max_image_side = int(info["max_image_side"]) or None
    return source
