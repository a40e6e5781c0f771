"""The array_record layout of a prepared copy: a tfds split's images as ArrayRecord shards.

`prepared.write_tfds_copy` writes each split as `<split>-NNNNN-of-MMMMM.array_record`
(`ShardWriter`: a new shard once the current one holds `shard_bytes` of records), with the
writer options "group_size:1,uncompressed": one record a chunk, so a random read decodes one
record (as tfds and grain write them), and no compression (JPEG bytes do not shrink).

A record is the label as a little-endian int64 (8 bytes, `struct` "<q") followed by the
encoded image, a JPEG: `encode_record(label, image)`, `decode_record(record)`.

`PreparedRecordSource` reads one split of such a copy: index -> (JPEG bytes, label, name),
like `tfds_source.TfdsImageSource`. A split is a base split name the copy has or tfds's
slicing syntax over them (`train[:95%]`, `train[1000:]`, `train+validation`), resolved by
tfds's own rules over the copy's record counts, so it selects the examples tfds would.
"""

from __future__ import annotations

import os
import re
import struct
import types
from typing import Any

from array_record.python import array_record_module
from array_record.python.array_record_data_source import ArrayRecordDataSource

from smlp_jax.data.base import DataError

LABEL = struct.Struct("<q")
WRITER_OPTIONS = "group_size:1,uncompressed"
SHARD_SUFFIX = ".array_record"
PARTIAL_SUFFIX = ".array_record.partial"  # a shard being written: named when its split ends


def encode_record(label: int, image: bytes) -> bytes:
    """One record: the label as a little-endian int64, then the encoded image."""
    return LABEL.pack(int(label)) + image


def decode_record(record: bytes) -> tuple[bytes, int]:
    """A record -> (encoded image, label); ValueError for one too short to hold both."""
    if len(record) <= LABEL.size:
        raise ValueError(f"a record of {len(record)} bytes")
    (label,) = LABEL.unpack_from(record)
    return record[LABEL.size :], int(label)


def shard_name(split: str, index: int, count: int) -> str:
    return f"{split}-{index:05d}-of-{count:05d}{SHARD_SUFFIX}"


class ShardWriter:
    """Writes one split's records into `out`; `close()` names the shards (their count is
    known only then) and returns them as [{"file", "records", "bytes"}]."""

    def __init__(self, out: str, split: str, shard_bytes: int):
        self._out, self._split, self._shard_bytes = out, split, shard_bytes
        self._partials: list[tuple[str, int]] = []  # (path, records) of the closed shards
        self._writer = None
        self._records = self._bytes = 0

    def _close_shard(self) -> None:
        self._writer.close()
        self._partials.append((self._path, self._records))
        self._writer = None

    def write(self, label: int, image: bytes) -> None:
        if self._writer is None:
            self._path = os.path.join(
                self._out, f"{self._split}-{len(self._partials):05d}{PARTIAL_SUFFIX}"
            )
            self._writer = array_record_module.ArrayRecordWriter(self._path, WRITER_OPTIONS)
            self._records = self._bytes = 0
        record = encode_record(label, image)
        self._writer.write(record)
        self._records += 1
        self._bytes += len(record)
        if self._bytes >= self._shard_bytes:
            self._close_shard()

    def close(self) -> list[dict[str, Any]]:
        if self._writer is not None:
            self._close_shard()
        if not self._partials:  # no readable image: an empty shard keeps the split listed
            self._path = os.path.join(self._out, f"{self._split}-00000{PARTIAL_SUFFIX}")
            array_record_module.ArrayRecordWriter(self._path, WRITER_OPTIONS).close()
            self._partials.append((self._path, 0))
        shards = []
        for index, (path, records) in enumerate(self._partials):
            name = shard_name(self._split, index, len(self._partials))
            os.replace(path, os.path.join(self._out, name))
            size = os.path.getsize(os.path.join(self._out, name))
            shards.append({"file": name, "records": records, "bytes": size})
        return shards


def split_ranges(spec: str, shards: dict[str, list[int]]) -> list[tuple[str, int, int]]:
    """`spec` ("train", "train[:95%]", "train[10:]+validation") -> [(split, start, stop)] by
    tfds's rules, given each split's shard lengths; ValueError for a malformed spec."""
    if spec in shards:
        return [(spec, 0, sum(shards[spec]))]
    import tensorflow_datasets as tfds  # lazy: seconds to import; only slicing needs it

    infos = {
        name: types.SimpleNamespace(num_examples=sum(lengths), shard_lengths=list(lengths))
        for name, lengths in shards.items()
    }
    ranges = []
    for part in tfds.core.ReadInstruction.from_spec(spec).to_absolute(infos):
        count = infos[part.splitname].num_examples
        start = 0 if part.from_ is None else part.from_
        stop = count if part.to is None else part.to
        ranges.append((part.splitname, start, max(start, stop)))
    return ranges


class PreparedRecordSource:
    """One split of an array_record copy: index -> (JPEG bytes, label, name).

    `info` is the copy's smlp_prepared.json; `name` names it in messages and examples, and
    `redo` says how to write it again. A split it lacks, or a shard that is missing or not
    the size the info records (a copy cut short, a damaged disk), is a one-line DataError
    when the split opens, as is a first or last record that does not read back."""

    def __init__(self, path: str, info: dict[str, Any], split: str, name: str, redo: str):
        self.name, self.split, self._redo = name, split, redo
        self.num_classes = int(info["num_classes"])
        self.classes = [str(c) for c in info["classes"]]
        self.max_image_side = int(info["max_image_side"]) or None
        written = info["splits"]
        shards = {s: [int(shard["records"]) for shard in written[s]["shards"]] for s in written}
        bases = {re.split(r"\[", part)[0].strip() for part in re.split(r"\+", split)}
        unknown = sorted(bases - set(written) - {"all"})
        if unknown:
            raise DataError(f"{name} has no split {unknown[0]!r}; it has {sorted(written)}.")
        try:
            ranges = split_ranges(split, shards)
        except (ValueError, NotImplementedError) as error:
            reason = (str(error).splitlines() or [""])[0]
            raise DataError(f"{name}: split {split!r} cannot be read ({reason}).") from None
        pieces = []
        for split_name, start, stop in ranges:
            first = 0  # the split's index of the shard's first record
            for shard in written[split_name]["shards"]:
                file = os.path.join(path, shard["file"])
                lo, hi = max(start - first, 0), min(stop - first, shard["records"])
                first += shard["records"]
                if lo >= hi:
                    continue
                self._check_shard(file, shard["bytes"])
                pieces.append(f"{file}[{lo}:{hi}]")
        self._records = ArrayRecordDataSource(pieces) if pieces else []
        count = len(self._records)
        for index in sorted({0, count - 1}) if count else ():
            self[index]

    def _damaged(self, reason: str) -> DataError:
        return DataError(f"{self.name} ({self.split}) is damaged ({reason}); {self._redo}.")

    def _check_shard(self, file: str, size: int) -> None:
        if not os.path.isfile(file):
            raise self._damaged(f"{os.path.basename(file)} is missing")
        if os.path.getsize(file) != size:
            found = os.path.getsize(file)
            shard = os.path.basename(file)
            raise self._damaged(f"{shard} has {found} bytes, its info says {size}")

    def __len__(self) -> int:
        return len(self._records)

    def __getitem__(self, index: int) -> tuple[bytes, int, str]:
        index = int(index)
        if not 0 <= index < len(self._records):
            raise IndexError(f"{self.name} ({self.split}): index {index} of {len(self)}")
        try:
            image, label = decode_record(self._records[index])
        except (RuntimeError, ValueError) as error:  # a shard damaged after it was opened
            raise self._damaged(f"record {index}: {(str(error).splitlines() or [''])[0]}") from None
        if not 0 <= label < self.num_classes:
            raise self._damaged(f"record {index} has label {label} of {self.num_classes} classes")
        return image, label, f"{self.name}/{self.split}[{index}]"
