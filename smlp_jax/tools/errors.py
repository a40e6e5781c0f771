"""The tools' error: bad input to a tool (options, a config, a checkpoint, a file), shown as
one line `error: <message>` by the tool's `main` (which catches `UserError`)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from smlp_jax.errors import UserError


class ToolInputError(UserError, ValueError):
    """Bad input to a tool (options, a config, a checkpoint); shown as one line."""


@contextlib.contextmanager
def file_errors(action: str, path: str | os.PathLike) -> Iterator[None]:
    """The operating system's refusal inside (`OSError`: no such folder, permission
    denied, disk full) as a `ToolInputError`: `cannot <action> <path>: <reason>`."""
    try:
        yield
    except OSError as err:
        raise ToolInputError(f"cannot {action} {path}: {err.strerror or err}") from None
