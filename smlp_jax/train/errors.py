"""Errors that mean "the run's input is wrong", shown to the user as one line.

`main.py` catches `smlp_jax.errors.UserError` (the base of these and of every other error a
user can fix) and prints `error: <message>` on stderr with a non-zero exit, instead of a
traceback: the message itself says what to change.
"""

from __future__ import annotations

from smlp_jax.errors import UserError


class TrainError(UserError, ValueError):
    """A problem with the config or the run set-up, found before or during training."""


class ConfigError(TrainError):
    """A config value that cannot work (e.g. batch size not divisible by the device count)."""


class NonFiniteError(TrainError):
    """The loss or the gradient became NaN/inf; the last saved checkpoint is left as it was."""
