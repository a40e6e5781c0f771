"""Checkpoint errors, and telling damage from a refused read or write.

`CheckpointError` is one line for the user; `read_refused` tells an operating-system or
storage refusal (permission denied, an I/O error, a stale handle...: the content may be
fine) from damage (a file missing, data that does not decode); `os_error_reason` names why a
write failed.
"""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Iterable
from pathlib import Path

from smlp_jax.errors import UserError


class CheckpointError(UserError, RuntimeError):
    """No usable checkpoint where one was required (missing, corrupt, or not matching), or a
    checkpoint the OS would not let us write (disk full), read (permission denied, an I/O
    error) or move aside. `mismatches`: when the saved arrays' shapes differ from the
    requested state's, each difference (`'path' is (..) in the checkpoint, (..) here`)."""

    mismatches: tuple[str, ...] = ()


class CheckpointFallbackWarning(UserWarning):
    """A damaged checkpoint was skipped and an older one used instead."""


def first_line(err: BaseException) -> str:
    """`Type: first line of the message` (at most 300 characters), for one-line reports."""
    text = str(err).strip().splitlines()
    line = text[0].split(" See full TensorStore details")[0] if text else ""  # a spec dump
    return f"{type(err).__name__}: {line[:300]}"


def _chain(err: BaseException) -> Iterable[BaseException]:
    """`err`, then what it was raised from (or while handling), and so on."""
    seen: BaseException | None = err
    while seen is not None:
        yield seen
        seen = seen.__cause__ or seen.__context__


def _os_errno(err: BaseException) -> int | None:
    """The operating system's error number behind `err`: an OSError's in its chain, or
    TensorStore's `[os_error_code='28']`; None if there is none."""
    for seen in _chain(err):
        if isinstance(seen, OSError) and seen.errno:
            return seen.errno
        code = re.search(r"os_error_code='(\d+)'", str(seen))
        if code:
            return int(code.group(1))
    return None


def os_error_reason(err: BaseException) -> str | None:
    """The operating system's reason a write failed ("No space left on device"), from an
    OSError in `err`'s chain or TensorStore's `[os_error_code='28']`; None if there is none."""
    code = _os_errno(err)
    return None if code is None else os.strerror(code)


# A file or folder not there, or not a file, where the step has one: its content is damaged
# (deleted, a cut copy), where every other OS error says only that it could not be read now.
_MISSING = frozenset({errno.ENOENT, errno.EISDIR, errno.ENOTDIR})
# The statuses of a refused read from storage without an OS error number (object stores):
# TensorStore's message starts with one. NOT_FOUND, DATA_LOSS, OUT_OF_RANGE... are damage.
_REFUSED_STATUS = {
    "PERMISSION_DENIED": "permission denied",
    "UNAUTHENTICATED": "not authenticated",
    "UNAVAILABLE": "storage unavailable",
    "DEADLINE_EXCEEDED": "timed out",
    "RESOURCE_EXHAUSTED": "out of memory or another resource",
}


def read_refused(err: BaseException) -> str | None:
    """Why a read failed when the operating system or the storage refused it ("Permission
    denied", "Input/output error", "Stale file handle"...), which says nothing about the
    content; None when `err` is not such a refusal (damage, a mismatch)."""
    code = _os_errno(err)
    if code is not None:
        return None if code in _MISSING else os.strerror(code)
    for seen in _chain(err):
        status = re.match(r"\s*([A-Z_]+): ", str(seen))
        if status and status.group(1) in _REFUSED_STATUS:
            return _REFUSED_STATUS[status.group(1)]
    return None


def failed_path(err: BaseException) -> str | None:
    """The file a failed read names: an OSError's filename, else the longest quoted absolute
    path in the message (TensorStore names the store, then the file in it); None if none."""
    for seen in _chain(err):
        if isinstance(seen, OSError) and seen.filename:
            return os.fsdecode(seen.filename)
        text = str(seen).split(" [tensorstore_spec")[0]  # the spec dump quotes its paths too
        paths = re.findall(r'"(/[^"]+)"', text)
        if paths:
            return max(paths, key=len)
    return None


def unreadable(step: int, err: BaseException, step_dir: Path | None) -> str | None:
    """The one-line report of a step whose read was refused (see `read_refused`), naming the
    file if known, else the step directory; None when `err` is no such refusal."""
    reason = read_refused(err)
    if reason is None:
        return None
    where = failed_path(err) or (str(step_dir) if step_dir is not None else None)
    return (
        f"could not read checkpoint step {step}: {where + ': ' if where else ''}{reason}; it "
        "may well be intact, so it was not moved aside and no older step was used: make it "
        "readable (permissions, the mount, the storage) and run again."
    )


def write_failure(
    directory: Path, step: int | None, err: BaseException, kept: int | None
) -> CheckpointError:
    """The one line for a write the OS refused (`os_error_reason(err)` is not None): what
    failed, why, and the newest step still `kept`."""
    intact = (
        f"the checkpoint of step {kept} is intact"
        if kept is not None
        else "there is no earlier checkpoint"
    )
    which = "a checkpoint" if step is None else f"checkpoint {step}"
    reason = os_error_reason(err)
    return CheckpointError(f"could not write {which} to {directory}: {reason}; {intact}")
