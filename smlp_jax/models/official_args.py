"""Constructor arguments as the official code (or timm) names them, where ours differ.

`translate(entry, kwargs)` rewrites each into ours when the translation is exact, and
otherwise refuses it (TypeError) with a line that names our equivalent, so a user bringing
the official constructor's arguments is never silently given another network. What is
common to every family is here:

- `in_channels` -> `in_chans`; `img_size` is `create_model`'s `image_size`.

A family's own names are translated by the function its file registers with its variants
(`register_model(..., official_args=translate_official_args)`, beside the model):
MLP-Mixer's timm `embed_dim` / `mlp_ratio=(t, c)`, ConvMixer's timm `act_layer`, RaftMLP's
`layers=[...]`, DynaMixer's `mlp_ratios=[...]`, Hire-MLP's `step_pad_mode` /
`pixel_pad_mode`. Reading timm's Hub folders uses the same translation
(`smlp_jax.convert.hub`), over what timm computes differently from our defaults (the
variant's `PretrainedCfg.timm_model_args`).
"""

from __future__ import annotations

from typing import Any, Protocol


class _Entry(Protocol):  # smlp_jax.models.registry.ModelEntry (which imports this module)
    official_args: Any  # Callable[[dict[str, Any]], None] | None


def translate(entry: _Entry, kwargs: dict[str, Any]) -> dict[str, Any]:
    """`kwargs` with official argument names rewritten as ours (see the module docstring),
    the family's own through `entry.official_args`; raises TypeError naming our equivalent
    where no exact rewrite exists."""
    kwargs = dict(kwargs)
    if "in_channels" in kwargs:
        kwargs["in_chans"] = kwargs.pop("in_channels")
    if "img_size" in kwargs:
        raise TypeError(
            "img_size: pass create_model's image_size= (config.image_size in training)."
        )
    if entry.official_args is not None:
        entry.official_args(kwargs)
    return kwargs
