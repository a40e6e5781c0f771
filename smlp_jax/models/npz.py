"""Reading untrusted `.npz` files: every array's declared shape and dtype is checked
against the bytes the file holds before anything is read.

numpy allocates an array of the shape an `.npy` header declares before it reads the data,
so a 16-byte member declaring a 10^6 x 10^6 array asks for 4 TB. `read_npz` reads the
headers first (a few hundred bytes each) and refuses, in one line:
  - an array declaring more bytes than its member holds (or a member whose declared
    uncompressed size is beyond what deflate can expand its compressed bytes to);
  - object arrays (loading them would run pickled code);
  - anything that is not an `.npz` zip of `.npy` arrays.
`declared_arrays` gives the declared names and shapes alone (stand-ins that hold no data),
so that `smlp_jax.convert.load_pretrained` checks them against the model before reading.
Used by the weight loaders (`smlp_jax.convert.checkpoint_io`) and the serving artifact's
weights (`smlp_jax.serving`); it lives in the bottom layer so that both can import it.
"""

from __future__ import annotations

import math
import os
import zipfile
from typing import IO

import numpy as np
import numpy.lib.format as npy_format

# Deflate expands at most ~1032:1; a member claiming more is a zip bomb.
_MAX_DEFLATE_RATIO = 1100


def _header(f: IO[bytes]) -> tuple[tuple[int, ...], np.dtype]:
    version = npy_format.read_magic(f)
    if version == (1, 0):
        shape, _, dtype = npy_format.read_array_header_1_0(f)
    elif version == (2, 0):
        shape, _, dtype = npy_format.read_array_header_2_0(f)
    else:
        shape, _, dtype = npy_format._read_array_header(f, version)  # 3.0: utf-8 header
    return tuple(shape), np.dtype(dtype)


def _size(nbytes: float) -> str:
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if nbytes >= scale:
            return f"{nbytes / scale:.1f} {unit}"
    return f"{int(nbytes)} bytes"


def check_npz(
    path: str | os.PathLike, error: type[Exception] = ValueError
) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Raises `error` (one line) unless every array of the `.npz` at `path` declares no
    more bytes than its member holds and none is an object array. Reads only headers;
    returns what they declare, `{name: (shape, dtype)}`."""
    headers = {}
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                name = info.filename.removesuffix(".npy")
                if (
                    info.compress_type != zipfile.ZIP_STORED
                    and info.file_size > _MAX_DEFLATE_RATIO * info.compress_size + 1024
                ):
                    raise error(
                        f"{path}: member {name!r} claims {_size(info.file_size)} uncompressed "
                        f"from {_size(info.compress_size)}; no compressor packs that tightly "
                        "(a damaged or crafted file)."
                    )
                if not info.filename.endswith(".npy"):
                    continue  # not an array: read_npz leaves it unread
                with archive.open(info) as f:
                    shape, dtype = _header(f)
                    header = f.tell()
                if dtype.hasobject:
                    raise error(
                        f"{path}: array {name!r} holds Python objects ({dtype}); loading them "
                        "would run pickled code, so it is refused."
                    )
                declared = math.prod(shape) * dtype.itemsize
                if declared > info.file_size - header:
                    raise error(
                        f"{path}: array {name!r} declares {dtype}{list(shape)} "
                        f"({_size(declared)}) but holds {_size(info.file_size - header)} "
                        "(a truncated, damaged or crafted file)."
                    )
                headers[name] = (shape, dtype)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError, OSError) as err:
        if isinstance(err, error):
            raise
        raise error(f"could not read {path} (corrupt or not an npz?): {err}") from None
    return headers


def declared_arrays(
    path: str | os.PathLike, error: type[Exception] = ValueError
) -> dict[str, np.ndarray]:
    """{name: a stand-in of the declared shape and dtype} of the `.npz` at `path`, after
    `check_npz`, reading headers only: each stand-in is one zero broadcast to its shape (no
    memory), so a loader can check names and shapes against a model before reading any
    array."""
    return {
        name: np.broadcast_to(np.zeros((), dtype), shape)
        for name, (shape, dtype) in check_npz(path, error).items()
    }


def read_npz(path: str | os.PathLike, error: type[Exception] = ValueError) -> dict[str, np.ndarray]:
    """{name: array} of the `.npz` at `path`, after `check_npz`; never unpickles.
    Raises `error`, one line, for a file that is refused or cannot be read."""
    check_npz(path, error)
    try:
        with np.load(path, allow_pickle=False) as arrays:
            members = set(arrays.zip.namelist())
            return {name: arrays[name] for name in arrays.files if f"{name}.npy" in members}
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as err:
        raise error(f"could not read {path} (corrupt or not an npz?): {err}") from None
