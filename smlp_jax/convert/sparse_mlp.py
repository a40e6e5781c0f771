"""Sparse-MLP: no official weight release exists (arXiv 2109.02008 published neither
code nor checkpoints), so there is no official layout to import.

`official_rules` exists so that `create_model("sparse_mlp_*", pretrained=...)` fails
with a message that says what to do instead: start from one of our own training runs
(`config.init_from=<workdir>`), whose checkpoints hold the nnx state directly.

`GRID_RESAMPLERS` (our variable paths) carries such a checkpoint to another image size
(`config.init_resample_to_grid`). Sparse-MLP mixes the S patches of the flattened grid,
not rows and columns apart: the token axes of the dense blocks' token MLP and of the
Sparse blocks' re-represent layers (S -> S', S' -> S) are unflattened to the grid and
interpolated along its rows and columns; the re-represented axis S' (2S by default),
which the token experts and their router work on, is a line of features with no grid of
its own and is interpolated as a line, consistently in every layer that touches it (left
alone when the new model keeps S', e.g. with `represent_tokens_factor` set to match).
Inputs summed over are scaled by old/new length (see `smlp_jax.convert.resample`). The
token MLP's and experts' widths, the channel experts and everything else keep their
shapes and are copied.
"""

from __future__ import annotations

from smlp_jax.convert.assign import Rules, WeightsMismatchError
from smlp_jax.convert.resample import token_interpolation
from smlp_jax.models.sparse_mlp import SparseMLP

# No official code, so no parity check of a layout (the model card says so).
PARITY = ""

_BLOCK = r"^blocks/\d+/"
GRID_RESAMPLERS = (
    # Dense (Mixer) blocks: the token MLP S -> tokens_mlp_dim -> S.
    (_BLOCK + r"token_mixing/fc1/kernel$", token_interpolation(grid=(0,), summed=(0,))),
    (_BLOCK + r"token_mixing/fc2/kernel$", token_interpolation(grid=(1,))),
    (_BLOCK + r"token_mixing/fc2/bias$", token_interpolation(grid=(0,))),
    # Sparse blocks: S -> S' in, the token experts and router on S', S' -> S out.
    (
        _BLOCK + r"represent_in/patches/kernel$",
        token_interpolation(grid=(0,), line=(1,), summed=(0,)),
    ),
    (_BLOCK + r"represent_in/patches/bias$", token_interpolation(line=(0,))),
    (_BLOCK + r"token_moe/router/kernel$", token_interpolation(line=(0,), summed=(0,))),
    (_BLOCK + r"token_moe/experts/fc1_kernel$", token_interpolation(line=(1,), summed=(1,))),
    (_BLOCK + r"token_moe/experts/fc2_kernel$", token_interpolation(line=(2,))),
    (_BLOCK + r"token_moe/experts/fc2_bias$", token_interpolation(line=(1,))),
    (
        _BLOCK + r"represent_out_tokens/kernel$",
        token_interpolation(line=(0,), grid=(1,), summed=(0,)),
    ),
    (_BLOCK + r"represent_out_tokens/bias$", token_interpolation(grid=(0,))),
)


def official_rules(model: SparseMLP) -> Rules:
    """Always raises: there is no official Sparse-MLP state-dict layout."""
    del model
    raise WeightsMismatchError(
        "Sparse-MLP has no official weights to import: the paper (arXiv 2109.02008) "
        "released no code or checkpoints, and this implementation is a reconstruction. "
        "To start from a Sparse-MLP you trained with smlp_jax, pass its workdir or "
        "checkpoint as config.init_from (or restore it with the trainer's checkpointer)."
    )
