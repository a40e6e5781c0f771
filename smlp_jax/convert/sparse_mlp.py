"""Sparse-MLP: no official weight release exists (arXiv 2109.02008 published neither
code nor checkpoints), so there is no official layout to import.

`official_rules` exists so that `create_model("sparse_mlp_*", pretrained=...)` fails
with a message that says what to do instead: start from one of our own training runs
(`config.init_from=<workdir>`), whose checkpoints hold the nnx state directly.
"""

from __future__ import annotations

from smlp_jax.convert.assign import Rules, WeightsMismatchError
from smlp_jax.models.sparse_mlp import SparseMLP


def official_rules(model: SparseMLP) -> Rules:
    """Always raises: there is no official Sparse-MLP state-dict layout."""
    del model
    raise WeightsMismatchError(
        "Sparse-MLP has no official weights to import: the paper (arXiv 2109.02008) "
        "released no code or checkpoints, and this implementation is a reconstruction. "
        "To start from a Sparse-MLP you trained with smlp_jax, pass its workdir or "
        "checkpoint as config.init_from (or restore it with the trainer's checkpointer)."
    )
