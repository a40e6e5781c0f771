"""The model registry: names like `smlpnet_t` -> a factory building the nnx module.

Each family file registers its variants with `register_model`; the family name also
names its weight converter, `smlp_jax.convert.<family>`, which maps the official
release's state-dict keys onto the module (see `smlp_jax.convert`). Each entry carries
its pretrained configuration (`PretrainedCfg`: input size, normalisation, eval crop and
filter, head name, where the official weights are), given at registration by the family
file (its `PRETRAINED_CFGS`, beside its `register_model` calls); `pretrained_cfg(name)`
returns it.
"""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch
import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax.numpy as jnp
from flax import nnx

from smlp_jax.errors import UserError
from smlp_jax.models import hparams, official_args
from smlp_jax.models.hparams import Hyper
from smlp_jax.models.pretrained_cfgs import PretrainedCfg


@dataclasses.dataclass(frozen=True)
class ModelEntry:
    name: str
    family: str
    build: Callable[..., nnx.Module]  # build(num_classes=, image_size=, rngs=, dtype=, **kw)
    defaults: Mapping[str, Any]  # the variant's hyperparameters (official names)
    pretrained_cfg: PretrainedCfg | None = None  # None: a model registered without one
    # Rewrites the official constructor's argument names as ours, in place (None: the
    # family's are ours); `official_args.translate` calls it.
    official_args: Callable[[dict[str, Any]], None] | None = None


_REGISTRY: dict[str, ModelEntry] = {}


class UnknownModelError(UserError, ValueError):
    """Raised for a model name that is not registered (or, where its pretrained
    configuration is asked for, registered without one)."""


def register_model(
    name: str,
    *,
    family: str,
    build: Callable[..., nnx.Module],
    pretrained_cfg: PretrainedCfg | None = None,
    official_args: Callable[[dict[str, Any]], None] | None = None,
    **defaults: Any,
) -> None:
    """Registers `name`; `defaults` are the variant's hyperparameters. `pretrained_cfg` is
    the variant's pretrained configuration (None: registered without one);
    `official_args(kwargs)` rewrites the official constructor's argument names as ours, in
    place, refusing with a TypeError what has no exact equivalent (None: none differ).
    `build` declares the type and range of every hyperparameter its constructor takes in
    `build.HYPERPARAMETERS` (`smlp_jax.models.hparams`); one left out is refused here."""
    if name in _REGISTRY:
        raise ValueError(f"model {name!r} is registered twice")
    ranges = _ranges(build)
    undeclared = [k for k in _constructor_defaults(build, every=True) if k not in ranges]
    if undeclared:
        raise ValueError(
            f"{name}: {getattr(build, '__name__', build)} declares no type and range for "
            f"{', '.join(undeclared)}; add them to its HYPERPARAMETERS (smlp_jax.models.hparams)."
        )
    hparams.check(name, ranges, {**_constructor_defaults(build), **defaults})
    timm_name = pretrained_cfg.timm_architecture if pretrained_cfg else ""
    twin = next(
        (
            other.name
            for other in _REGISTRY.values()
            if timm_name
            and other.pretrained_cfg
            and other.pretrained_cfg.timm_architecture == timm_name
        ),
        None,
    )
    if twin:  # a timm Hub folder names one architecture: it must build one model
        raise ValueError(f"{name}: timm's {timm_name!r} is already {twin!r}'s timm name")
    _REGISTRY[name] = ModelEntry(name, family, build, dict(defaults), pretrained_cfg, official_args)


def list_models(
    filter: str | Sequence[str] = "",
    module: str = "",
    pretrained: bool = False,
    exclude_filters: str | Sequence[str] = "",
    *,
    family: str = "",
) -> list[str]:
    """Registered model names, sorted, as timm's `list_models` selects them.

    Args:
      filter: shell-style wildcard pattern(s) on the name (`"mixer*"`, `"*_t"`), or a
        family name (`"smlpnet"`: that family's models).
      module: a family name (timm's module: the family file), e.g. `"convmixer"`.
      pretrained: only models whose official weights are published (a `url` in their
        pretrained configuration).
      exclude_filters: pattern(s) of names to leave out.
      family: the same as `module` (our word for it).
    """
    module = module or family
    names = sorted(n for n, e in _REGISTRY.items() if not module or e.family == module)
    families = {e.family for e in _REGISTRY.values()}
    patterns = [filter] if isinstance(filter, str) else list(filter)
    if any(patterns):
        names = [
            n
            for n in names
            if any(
                _REGISTRY[n].family == p if p in families else fnmatch.fnmatchcase(n, p)
                for p in patterns
                if p
            )
        ]
    excluded = [exclude_filters] if isinstance(exclude_filters, str) else list(exclude_filters)
    names = [n for n in names if not any(p and fnmatch.fnmatchcase(n, p) for p in excluded)]
    if pretrained:
        names = [n for n in names if (cfg := _REGISTRY[n].pretrained_cfg) and cfg.url]
    return names


def get_entry(name: str) -> ModelEntry:
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise UnknownModelError(
            f"unknown model {name!r}.{hint} Known models: {', '.join(list_models())}."
        )
    return _REGISTRY[name]


def pretrained_cfg(name: str) -> PretrainedCfg:
    """The registered model's pretrained configuration (timm's `pretrained_cfg`): the input
    size, mean/std, eval crop_pct and filter of its official weights, its head's name and
    where the weights come from."""
    cfg = get_entry(name).pretrained_cfg
    if cfg is None:
        raise UnknownModelError(
            f"model {name!r} was registered without a pretrained configuration; pass "
            "register_model(..., pretrained_cfg=PretrainedCfg(...)) (smlp_jax.models)."
        )
    return cfg


# Constructor arguments that are not the architecture's hyperparameters.
_NOT_HYPERPARAMETERS = ("self", "num_classes", "image_size", "in_chans", "dtype", "rngs")


def _constructor_defaults(build: Callable[..., Any], every: bool = False) -> dict[str, Any]:
    """{hyperparameter: its default} of `build`'s constructor (arguments without a default
    left out); `every`: also image_size, in_chans and num_classes."""
    target = build.__init__ if isinstance(build, type) else build
    skip = ("self", "dtype", "rngs") if every else _NOT_HYPERPARAMETERS
    return {
        k: p.default
        for k, p in inspect.signature(target).parameters.items()
        if k not in skip
        and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
        and (every or p.default is not inspect.Parameter.empty)
    }


def _ranges(build: Callable[..., Any]) -> dict[str, Hyper]:
    return {**hparams.COMMON, **getattr(build, "HYPERPARAMETERS", {})}


def hyperparameter_ranges(name: str) -> dict[str, Hyper]:
    """{hyperparameter: its declared type and range} of `name`'s family, image_size,
    in_chans and num_classes included (`Hyper.describe()` says it in words)."""
    return _ranges(get_entry(name).build)


def hyperparameters(name: str) -> dict[str, Any]:
    """Every hyperparameter `name`'s constructor takes, with the value `name` uses: the
    variant's registered values over the constructor's defaults (arguments without a
    default or defaulting to None are left out: they have no value to show)."""
    entry = get_entry(name)
    values = {**_constructor_defaults(entry.build), **entry.defaults}
    return {k: v for k, v in values.items() if v is not None}


def check_hyperparameters(
    name: str, *, num_classes: int = 1000, image_size: int = 224, **overrides: Any
) -> dict[str, Any]:
    """Raises `HyperparameterError` (one line naming the hyperparameter and what it
    accepts) unless every value `name` would be built with has its declared type and range
    (`smlp_jax.models.hparams`); returns the variant's values with `overrides` (official
    names translated). Nothing is built."""
    entry = get_entry(name)
    overrides = official_args.translate(entry, overrides)
    kwargs = {**entry.defaults, **overrides}
    values = {**hyperparameters(name), **kwargs}
    hparams.check(
        name, _ranges(entry.build), {**values, "num_classes": num_classes, "image_size": image_size}
    )
    return kwargs


def make_model(
    name: str,
    *,
    num_classes: int = 1000,
    image_size: int = 224,
    rngs: nnx.Rngs | int | None = None,
    dtype: Any = jnp.float32,
    **overrides: Any,
) -> nnx.Module:
    """Builds a registered model with fresh weights (`smlp_jax.create_model` also loads
    official ones); the arguments are `smlp_jax.create_model`'s, less the weights."""
    entry = get_entry(name)
    if rngs is None:
        rngs = 0
    if isinstance(rngs, int):
        rngs = nnx.Rngs(params=rngs, dropout=rngs + 1)
    overrides = official_args.translate(entry, overrides)
    kwargs = {**entry.defaults, **overrides}
    # nnx's metaclass hides a class's own signature behind (*args, **kwargs).
    target = entry.build.__init__ if isinstance(entry.build, type) else entry.build
    accepted = {k: p for k, p in inspect.signature(target).parameters.items() if k != "self"}
    if not any(p.kind is p.VAR_KEYWORD for p in accepted.values()):
        unknown = sorted(set(kwargs) - set(accepted))
        if unknown:
            known = ", ".join(k for k in accepted if k not in ("rngs", "dtype"))
            raise hparams.UnknownHyperparameterError(
                f"{name}: unknown hyperparameter(s) {', '.join(unknown)}; "
                f"{entry.family} takes {known}."
            )
    values = {**hyperparameters(name), **kwargs, "num_classes": num_classes}
    hparams.check(name, _ranges(entry.build), {**values, "image_size": image_size})
    model = entry.build(
        num_classes=num_classes, image_size=image_size, dtype=dtype, rngs=rngs, **kwargs
    )
    every = {**hyperparameters(name), **kwargs}
    model.model_spec = ModelSpec(name, num_classes, image_size, _frozen(every))
    return model


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """What a registered model was built from (`model.model_spec`, set by `make_model`):
    enough to build it again, and what `save_pretrained` writes to `config.json`.
    Frozen and hashable, since it lives in the module's graph definition."""

    name: str
    num_classes: int
    image_size: int
    hyperparameters: tuple[tuple[str, Any], ...]  # every one, the variant's defaults included

    def kwargs(self) -> dict[str, Any]:
        """The hyperparameters as `create_model` keyword arguments."""
        return dict(self.hyperparameters)


def _frozen(kwargs: Mapping[str, Any]) -> tuple[tuple[str, Any], ...]:
    def freeze(value):
        if isinstance(value, (list, tuple)):
            return tuple(freeze(v) for v in value)
        return value

    return tuple(sorted((k, freeze(v)) for k, v in kwargs.items()))


def family_of(model: nnx.Module) -> str:
    """The registered family whose class built `model` (its converter's name)."""
    for entry in _REGISTRY.values():
        if isinstance(entry.build, type) and type(model) is entry.build:
            return entry.family
    raise ValueError(f"no registered family builds {type(model).__name__}; pass family=")
