"""Each model family's converter module, by family name: one table, written out.

`CONVERTERS["smlpnet"]` is `smlp_jax.convert.smlpnet`, whose `official_rules(model)` map the
official state dict's keys to our variables (and whose `GRID_RESAMPLERS`, `IGNORED_KEYS`,
`rules_for_weights` and `vit_jax_rules`, where it has them, say the rest). The table is
built from plain imports, so a reader, a static tool and the layering test all see which
converter a family uses; a family with official weights adds its converter here.
"""

from __future__ import annotations

from types import ModuleType

from smlp_jax.convert import (
    as_mlp,
    convmixer,
    dynamixer,
    hire_mlp,
    mixer,
    permutator,
    raft_mlp,
    smlpnet,
    sparse_mlp,
)
from smlp_jax.convert.assign import WeightsMismatchError

CONVERTERS: dict[str, ModuleType] = {
    "as_mlp": as_mlp,
    "convmixer": convmixer,
    "dynamixer": dynamixer,
    "hire_mlp": hire_mlp,
    "mixer": mixer,
    "permutator": permutator,
    "raft_mlp": raft_mlp,
    "smlpnet": smlpnet,
    "sparse_mlp": sparse_mlp,
}


def converter(family: str) -> ModuleType:
    """The converter module of a model family (`CONVERTERS[family]`)."""
    try:
        return CONVERTERS[family]
    except KeyError:
        raise WeightsMismatchError(
            f"no converter for the family {family!r}; the families with one are "
            f"{', '.join(sorted(CONVERTERS))}."
        ) from None
