"""The declared type and range of every registered hyperparameter.

Each family's network class declares, in `HYPERPARAMETERS`, one `Hyper` for each of its
constructor's hyperparameters; `register_model` refuses a class that leaves one out, and
`make_model` checks every value (the variant's, the constructor's defaults and the
caller's) against it before anything is built, so `num_blocks=-2`, `depths=(2, -1, 2, 2)`
or `dim=0` is one line naming the hyperparameter and what it accepts, not a network with
no blocks or an IndexError deep in a constructor. What ties several hyperparameters
together (an image size divisible by the patch size, widths divisible by the heads) stays
the family's own check.

    Int(1, WIDTH)            an int from 1 to 65536
    Float(0, 1, high_open)   a float in [0, 1)
    Bool()                   True or False
    Choice("gelu", "relu")   one of these
    per_stage(Int(1, 256))   one value per stage; every per-stage hyperparameter of a model
                             has the same length, 1 to MAX_STAGES
    list_of(Int(0, 255))     a list of any length (Sparse-MLP's sparse_blocks)

The bounds are sanity bounds, far above every published variant: a model of their size
would not fit any accelerator. Sizes within them can still make a large model; what a
Hub folder describes is also measured abstractly before it is built (`smlp_jax.models.size`).
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Mapping
from typing import Any

from smlp_jax.errors import UserError

# Sanity bounds shared by the families.
WIDTH = 65536  # channels, hidden widths, MLP widths
BLOCKS = 256  # blocks in a stage (or in an isotropic model)
PATCH = 1024  # patch sizes, kernels, pixel regions
RATIO = 64.0  # MLP expansion ratios and factors
MAX_STAGES = 8
IMAGE_SIZE = 4096
IN_CHANS = 1024
NUM_CLASSES = 1_000_000


@dataclasses.dataclass(frozen=True)
class Hyper:
    """What one hyperparameter accepts: its element type and range, and whether it is a
    scalar, one value a stage, or a list of any length."""

    kind: str  # "int", "float", "bool" or "choice"
    low: float | None = None
    high: float | None = None
    low_open: bool = False  # `low` itself excluded
    high_open: bool = False  # `high` itself excluded
    choices: tuple[Any, ...] = ()
    shape: str = "scalar"  # "scalar", "per_stage", "scalar_or_per_stage", "list"
    nested: bool = False  # each entry is itself a non-empty list of such values
    optional: bool = False  # None accepted (the constructor's own default then applies)

    # --- description --------------------------------------------------------------

    def _element(self, plural: bool) -> str:
        if self.kind == "bool":
            return "True/False" if plural else "True or False"
        if self.kind == "choice":
            return "one of " + ", ".join(repr(c) for c in self.choices)
        noun = self.kind + ("s" if plural else "")
        article = "" if plural else ("an " if self.kind == "int" else "a ")
        if self.low is not None and self.high is not None:
            if self.low_open or self.high_open:
                lo = "(" if self.low_open else "["
                hi = ")" if self.high_open else "]"
                return f"{article}{noun} in {lo}{_num(self.low)}, {_num(self.high)}{hi}"
            return f"{article}{noun} from {_num(self.low)} to {_num(self.high)}"
        return f"{article}{noun}"

    def describe(self) -> str:
        """E.g. "an int from 1 to 256", "one int from 1 to 256 per stage (1 to 8 stages)"."""
        if self.shape == "scalar":
            text = self._element(plural=False)
        elif self.shape == "list":
            text = f"a list of {self._element(plural=True)}"
        else:
            each = self._element(plural=False)
            if self.nested:
                each = f"a non-empty list of {self._element(plural=True)}"
            text = (
                f"one {each.removeprefix('an ').removeprefix('a ')} per stage "
                f"(1 to {MAX_STAGES} stages)"
            )
            if self.shape == "scalar_or_per_stage":
                text = f"{each}, or {text}"
        return text + (" (or None)" if self.optional else "")

    # --- checking -----------------------------------------------------------------

    def _element_ok(self, value: Any) -> bool:
        if self.kind == "bool":
            return isinstance(value, bool | _np_bool())
        if self.kind == "choice":
            return isinstance(value, str) and value in self.choices
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            return False
        if self.kind == "int" and not isinstance(value, numbers.Integral):
            return False
        value = float(value)
        if not math.isfinite(value):
            return False
        if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
            return False
        if self.high is not None and (value > self.high or (self.high_open and value == self.high)):
            return False
        return True

    def _entry_ok(self, value: Any) -> bool:
        if not self.nested:
            return self._element_ok(value)
        return _is_sequence(value) and len(value) > 0 and all(map(self._element_ok, value))

    def accepts(self, value: Any) -> bool:
        """Whether `value` has this type and lies in this range (per-stage lengths are
        checked across hyperparameters by `check`)."""
        if value is None:
            return self.optional
        if self.shape == "scalar":
            return self._element_ok(value)
        if self.shape == "scalar_or_per_stage" and not _is_sequence(value):
            return self._element_ok(value)
        if not _is_sequence(value):
            return False
        if self.shape != "list" and not 1 <= len(value) <= MAX_STAGES:
            return False
        return all(map(self._entry_ok, value))

    def stages(self, value: Any) -> int | None:
        """The stage count `value` gives (None: a scalar or not per stage)."""
        if self.shape in ("per_stage", "scalar_or_per_stage") and _is_sequence(value):
            return len(value)
        return None


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _np_bool():
    import numpy as np  # lazy: only the bool check needs numpy's bool type

    return np.bool_


def _is_sequence(value: Any) -> bool:
    return isinstance(value, list | tuple)


def Int(low: int, high: int) -> Hyper:
    return Hyper("int", low, high)


def Float(low: float, high: float, *, low_open: bool = False, high_open: bool = False) -> Hyper:
    return Hyper("float", low, high, low_open, high_open)


def Bool() -> Hyper:
    return Hyper("bool")


def Choice(*choices: str) -> Hyper:
    return Hyper("choice", choices=tuple(choices))


def per_stage(element: Hyper, *, nested: bool = False, or_scalar: bool = False) -> Hyper:
    """One `element` per stage (`nested`: one non-empty list of them per stage; `or_scalar`:
    a single `element` for every stage is accepted too)."""
    shape = "scalar_or_per_stage" if or_scalar else "per_stage"
    return dataclasses.replace(element, shape=shape, nested=nested)


def list_of(element: Hyper) -> Hyper:
    return dataclasses.replace(element, shape="list")


def optional(element: Hyper) -> Hyper:
    return dataclasses.replace(element, optional=True)


# What every family takes beside its own hyperparameters (create_model's arguments).
COMMON: dict[str, Hyper] = {
    "image_size": Int(1, IMAGE_SIZE),
    "in_chans": Int(1, IN_CHANS),
    "num_classes": Int(0, NUM_CLASSES),
}
# Shared by several families.
DROP_PATH_RATE = Float(0.0, 1.0, high_open=True)


class HyperparameterError(UserError, ValueError):
    """A hyperparameter of the wrong type or out of its declared range; the message names
    it and what it accepts."""


class UnknownHyperparameterError(HyperparameterError, TypeError):
    """A hyperparameter the family does not take (a TypeError, as Python's own for an
    unexpected keyword argument)."""


def check(model: str, ranges: Mapping[str, Hyper], values: Mapping[str, Any]) -> None:
    """Raises `HyperparameterError`, one line, for the first value of `values` that
    `ranges` does not accept, or for per-stage hyperparameters of different lengths.
    Values without a declared range are left to the constructor (it refuses unknown
    names)."""
    stage_counts: dict[str, int] = {}
    for key, value in values.items():
        spec = ranges.get(key)
        if spec is None:
            continue
        if not spec.accepts(value):
            raise HyperparameterError(
                f"{model}: {key}={value!r} is not accepted; {key} takes {spec.describe()}."
            )
        count = spec.stages(value)
        if count is not None:
            stage_counts[key] = count
    if len(set(stage_counts.values())) > 1:
        listed = ", ".join(f"{k} has {n}" for k, n in stage_counts.items())
        raise HyperparameterError(
            f"{model}: the per-stage hyperparameters need one entry per stage each; {listed}."
        )
