"""Constructor arguments as the official code (or timm) names them, where ours differ.

`translate(family, kwargs)` rewrites each into ours when the translation is exact, and
otherwise refuses it with a line that names our equivalent, so a user bringing the
official constructor's arguments is never silently given another network:

- MLP-Mixer (timm): `embed_dim` -> `hidden_dim`; `mlp_ratio=(t, c)` ->
  `tokens_mlp_dim=int(t * hidden_dim)`, `channels_mlp_dim=int(c * hidden_dim)` (timm's
  arithmetic);
- RaftMLP: `layers=[{"depth", "dim", "patch_size", "raft_size"}, ...]` -> `depths`,
  `dims`, `patch_sizes` and the one `raft_size` (ours is shared by every level);
- DynaMixer: `mlp_ratios=[r, ...]` -> `mlp_ratio=r` (one ratio for every stage, as every
  official config has);
- Hire-MLP: `step_pad_mode` / `pixel_pad_mode` = "c" (circular, the official default and
  that of the released weights) is what is built; "0" (zeros) is refused;
- any family: `in_channels` -> `in_chans`; `img_size` is `create_model`'s `image_size`.
"""

from __future__ import annotations

from typing import Any


def _refuse(message: str) -> None:
    raise TypeError(message)


def _mixer(kwargs: dict[str, Any]) -> None:
    if "embed_dim" in kwargs:
        kwargs["hidden_dim"] = kwargs.pop("embed_dim")
    if "mlp_ratio" in kwargs:
        ratios = kwargs.pop("mlp_ratio")
        if "hidden_dim" not in kwargs:
            _refuse("mlp_ratio=(tokens, channels) needs embed_dim (or hidden_dim) beside it.")
        tokens, channels = ratios
        kwargs["tokens_mlp_dim"] = int(tokens * kwargs["hidden_dim"])
        kwargs["channels_mlp_dim"] = int(channels * kwargs["hidden_dim"])


def _raft_mlp(kwargs: dict[str, Any]) -> None:
    if "layers" not in kwargs:
        return
    layers = kwargs.pop("layers")
    try:
        kwargs["depths"] = tuple(int(level["depth"]) for level in layers)
        kwargs["dims"] = tuple(int(level["dim"]) for level in layers)
        kwargs["patch_sizes"] = tuple(int(level["patch_size"]) for level in layers)
        rafts = {int(level["raft_size"]) for level in layers}
    except (TypeError, KeyError) as err:
        _refuse(
            f"RaftMLP layers=[...]: each level is a dict with depth, dim, patch_size and "
            f"raft_size (the official format); {err!r} is missing or wrong."
        )
    if len(rafts) != 1:
        _refuse(
            f"RaftMLP layers=[...] with raft sizes {sorted(rafts)}: here one raft_size is "
            "shared by every level; pass depths=, dims=, patch_sizes= and raft_size=."
        )
    kwargs["raft_size"] = rafts.pop()


def _dynamixer(kwargs: dict[str, Any]) -> None:
    if "mlp_ratios" not in kwargs:
        return
    ratios = {float(r) for r in kwargs.pop("mlp_ratios")}
    if len(ratios) != 1:
        _refuse(
            f"DynaMixer mlp_ratios={sorted(ratios)}: this implementation has one mlp_ratio for "
            "every stage (as every official config); pass mlp_ratio=."
        )
    kwargs["mlp_ratio"] = ratios.pop()


def _hire_mlp(kwargs: dict[str, Any]) -> None:
    for name in ("step_pad_mode", "pixel_pad_mode"):
        if name in kwargs and kwargs.pop(name) != "c":
            _refuse(
                f"Hire-MLP {name}: only 'c' (circular padding: the official default, and the "
                "released weights') is built here."
            )


_FAMILIES = {"mixer": _mixer, "raft_mlp": _raft_mlp, "dynamixer": _dynamixer, "hire_mlp": _hire_mlp}


def translate(family: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """`kwargs` with official argument names rewritten as ours (see the module docstring);
    raises TypeError naming our equivalent where no exact rewrite exists."""
    kwargs = dict(kwargs)
    if "in_channels" in kwargs:
        kwargs["in_chans"] = kwargs.pop("in_channels")
    if "img_size" in kwargs:
        _refuse("img_size: pass create_model's image_size= (config.image_size in training).")
    if family in _FAMILIES:
        _FAMILIES[family](kwargs)
    return kwargs
