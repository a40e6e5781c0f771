"""The model registry: names like `smlpnet_t` -> a factory building the nnx module.

Each family file registers its variants with `register_model`; the family name also
names its weight converter, `smlp_jax.convert.<family>`, which maps the official
release's state-dict keys onto the module (see `smlp_jax.convert`).
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
from collections.abc import Callable, Mapping
from typing import Any

import jax.numpy as jnp
from flax import nnx


@dataclasses.dataclass(frozen=True)
class ModelEntry:
    name: str
    family: str
    build: Callable[..., nnx.Module]  # build(num_classes=, image_size=, rngs=, dtype=, **kw)
    defaults: Mapping[str, Any]  # the variant's hyperparameters (official names)


_REGISTRY: dict[str, ModelEntry] = {}


class UnknownModelError(ValueError):
    """Raised for a model name that is not registered."""


def register_model(
    name: str, *, family: str, build: Callable[..., nnx.Module], **defaults: Any
) -> None:
    """Registers `name`; `defaults` are the variant's hyperparameters."""
    if name in _REGISTRY:
        raise ValueError(f"model {name!r} is registered twice")
    _REGISTRY[name] = ModelEntry(name, family, build, dict(defaults))


def list_models(family: str | None = None) -> list[str]:
    """Registered model names, sorted; optionally only one family's."""
    return sorted(n for n, e in _REGISTRY.items() if family is None or e.family == family)


def get_entry(name: str) -> ModelEntry:
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise UnknownModelError(
            f"unknown model {name!r}.{hint} Known models: {', '.join(list_models())}."
        )
    return _REGISTRY[name]


def create_model(
    name: str,
    *,
    num_classes: int = 1000,
    image_size: int = 224,
    pretrained: Any = None,
    resample_to_grid: bool = False,
    rngs: nnx.Rngs | int | None = None,
    dtype: Any = jnp.float32,
    **overrides: Any,
) -> nnx.Module:
    """Builds a registered model: NHWC float32 images `(B, H, W, 3)` -> logits.

    Args:
      name: a registered name (`smlp_jax.list_models()`).
      num_classes: size of the classifier head.
      image_size: input side length; models whose token mixing is tied to the grid
        reject any other size with a clear error.
      pretrained: official weights to load — a path (`.pth`/`.pth.tar`/`.pt`, `.npz`,
        `.safetensors`) or a mapping from official key names to arrays.
      resample_to_grid: load `pretrained` weights made for another image size into a
        model whose token mixing is tied to the grid, by resampling those weights
        (`smlp_jax.convert.resample`); otherwise such weights are refused.
      rngs: `nnx.Rngs` or an integer seed (default 0) for parameters and dropout.
      dtype: computation dtype (parameters stay float32).
      **overrides: the family's hyperparameters (official names); they win over the
        variant's values.

    Returns:
      The nnx module, in train mode (call `.eval()` for inference).
    """
    entry = get_entry(name)
    if rngs is None:
        rngs = 0
    if isinstance(rngs, int):
        rngs = nnx.Rngs(params=rngs, dropout=rngs + 1)
    kwargs = {**entry.defaults, **overrides}
    # nnx's metaclass hides a class's own signature behind (*args, **kwargs).
    target = entry.build.__init__ if isinstance(entry.build, type) else entry.build
    accepted = {k: p for k, p in inspect.signature(target).parameters.items() if k != "self"}
    if not any(p.kind is p.VAR_KEYWORD for p in accepted.values()):
        unknown = sorted(set(kwargs) - set(accepted))
        if unknown:
            known = ", ".join(k for k in accepted if k not in ("rngs", "dtype"))
            raise TypeError(
                f"{name}: unknown hyperparameter(s) {', '.join(unknown)}; "
                f"{entry.family} takes {known}."
            )
    model = entry.build(
        num_classes=num_classes, image_size=image_size, dtype=dtype, rngs=rngs, **kwargs
    )
    if pretrained is not None:
        from smlp_jax.convert import load_pretrained

        load_pretrained(
            model,
            pretrained,
            family=entry.family,
            model_name=name,
            resample_to_grid=resample_to_grid,
        )
    return model
