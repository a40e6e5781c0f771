"""Assigning an official state dict to an nnx module, with one clear error on mismatch.

A family's converter lists, for every official key, the nnx variable it fills and the
`Layout` that turns the official array into ours. `assign_weights` checks the key sets
and every shape before it writes anything, so a mismatched checkpoint never leaves a
half-loaded model behind.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping

import jax.numpy as jnp
import numpy as np
from flax import nnx

from smlp_jax.errors import UserError


class WeightsMismatchError(UserError, ValueError):
    """Official weights whose keys or shapes do not fit the model."""


@dataclasses.dataclass(frozen=True)
class Layout:
    """How an official (PyTorch) array becomes ours: squeeze trailing 1x1, transpose.

    `ours = official.transpose(perm)` after dropping a trailing `(1, 1)` when
    `squeeze_1x1` (a 1x1 convolution stored as a Dense kernel).
    """

    perm: tuple[int, ...] | None = None
    squeeze_1x1: bool = False

    def official_shape(self, our_shape: tuple[int, ...]) -> tuple[int, ...]:
        shape = tuple(our_shape)
        if self.perm is not None:
            inverse = np.argsort(self.perm)
            shape = tuple(shape[i] for i in inverse)
        if self.squeeze_1x1:
            shape = shape + (1, 1)
        return shape

    def to_ours(self, array: np.ndarray) -> np.ndarray:
        """An official array in our layout."""
        if self.squeeze_1x1:
            array = array.reshape(array.shape[:-2])
        if self.perm is not None:
            array = np.transpose(array, self.perm)
        return array

    def to_official(self, array: np.ndarray) -> np.ndarray:
        """One of our arrays in the official layout: the inverse of `to_ours`."""
        if self.perm is not None:
            array = np.transpose(array, np.argsort(self.perm))
        if self.squeeze_1x1:
            array = array.reshape(array.shape + (1, 1))
        return array


COPY = Layout()
LINEAR = Layout(perm=(1, 0))  # torch (out, in) -> (in, out)
CONV = Layout(perm=(2, 3, 1, 0))  # torch (out, in/g, kh, kw) -> (kh, kw, in/g, out)
CONV1X1_AS_DENSE = Layout(perm=(1, 0), squeeze_1x1=True)  # (out, in, 1, 1) -> (in, out)

Rules = Mapping[str, tuple[nnx.Variable, Layout]]


def assign_weights(
    model_name: str,
    rules: Rules,
    weights: Mapping[str, np.ndarray],
    *,
    ignore: Iterable[str] = (r"(^|\.)num_batches_tracked$",),
) -> None:
    """Writes `weights` into the variables named by `rules` (official key -> target).

    Raises `WeightsMismatchError` naming the keys that are missing, unexpected, or of
    the wrong shape (both shapes, in the official layout), before anything is written.
    """
    check_fit(model_name, rules, weights, ignore=ignore)
    for key, (variable, layout) in rules.items():
        array = layout.to_ours(np.asarray(weights[key], dtype=np.float32))
        variable[...] = jnp.asarray(array, dtype=variable.dtype)


def check_fit(
    model_name: str,
    rules: Rules,
    weights: Mapping[str, np.ndarray],
    *,
    ignore: Iterable[str] = (r"(^|\.)num_batches_tracked$",),
) -> None:
    """`assign_weights`' check alone: a `WeightsMismatchError` naming the keys that are
    missing, unexpected, or of the wrong shape. Reads only names and shapes (so `weights`
    may be stand-ins: `smlp_jax.models.npz.declared_arrays`)."""
    ignored = [re.compile(p) for p in ignore]
    given = {k for k in weights if not any(p.search(k) for p in ignored)}
    missing = sorted(set(rules) - given)
    unexpected = sorted(given - set(rules))
    problems = []
    if missing:
        problems.append(f"missing key(s) {_few(missing)}")
    if unexpected:
        problems.append(f"unexpected key(s) {_few(unexpected)}")
    for key in sorted(set(rules) & given):
        variable, layout = rules[key]
        expected = layout.official_shape(variable.shape)
        got = tuple(np.shape(weights[key]))
        if got != expected:
            problems.append(
                f"{key!r} has shape {got} in the checkpoint but the model expects {expected}"
            )
    if problems:
        hint = ""
        if any("shape" in p for p in problems):
            hint = (
                " (weights built for another image_size, num_classes or variant? create "
                "the model with the checkpoint's settings; to fine-tune at a new image_size, "
                "pass resample_to_grid=True)"
            )
        raise WeightsMismatchError(
            f"{model_name}: the weights do not fit the model: " + "; ".join(problems) + hint
        )


def _few(keys: list[str], n: int = 5) -> str:
    shown = ", ".join(repr(k) for k in keys[:n])
    return shown + (f" and {len(keys) - n} more" if len(keys) > n else "")
