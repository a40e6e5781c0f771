"""Errors that mean "the run's input is wrong", shown to the user as one line.

`main.py` catches `TrainError` (and the library's own ValueError subclasses listed in
`USER_ERRORS`) and prints `error: <message>` on stderr with a non-zero exit, instead of a
traceback: the message itself says what to change.
"""

from __future__ import annotations


class TrainError(ValueError):
    """A problem with the config or the run set-up, found before or during training."""


class ConfigError(TrainError):
    """A config value that cannot work (e.g. batch size not divisible by the device count)."""


class NonFiniteError(TrainError):
    """The loss or the gradient became NaN/inf; the last saved checkpoint is left as it was."""


def user_errors() -> tuple[type[BaseException], ...]:
    """The exception types whose message alone is a complete answer to the user."""
    from smlp_jax.convert import WeightsFileError, WeightsMismatchError
    from smlp_jax.models import UnknownModelError
    from smlp_jax.train.checkpoint import CheckpointError

    types: list[type[BaseException]] = [
        TrainError,
        UnknownModelError,
        WeightsFileError,
        WeightsMismatchError,
        CheckpointError,
    ]
    try:
        from smlp_jax.data import DataError

        types.append(DataError)
    except ImportError:  # the data package may be mid-install; its errors then cannot occur
        pass
    return tuple(types)
