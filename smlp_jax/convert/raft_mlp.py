"""RaftMLP: the official `okojoalg/raft-mlp` state-dict layout (`last_model_0.pt` of
`imagenet-raft-mlp-cross-mlp-emb-{s,m,l}`) -> `RaftMLP`.

Official level i is `levels.{i}.fn`, an `nn.Sequential`: index 0 the cross-scale
embedding (its Linear `fc`), index 1 an Identity, then one `nn.Sequential` per block at
index 2 + d holding [RaftShrink, vertical PermutedBlock, Rearrange, horizontal
PermutedBlock, RaftExpansion, ChannelBlock]: parameters at 1, 3 and 5. A PermutedBlock's
LayerNorm is `norm.1` (between two Rearranges) and its MLP `fn.0`/`fn.3`. With
`shortcut=False` the only head is `heads.0` (LayerNorm at `.1`); then `classifier`.
The token-mixing LayerNorms keep the official (raft-major) channel order, so they copy.
"""

from __future__ import annotations

from smlp_jax.convert.assign import COPY, LINEAR, Rules
from smlp_jax.models.raft_mlp import RaftMLP

# How the official layout is checked, in the model card's words: the same weights give
# the logits of the reference named here (its parity test reads that fixture).
PARITY = (
    "our independent PyTorch RaftMLP in the official state-dict layout (fixture: "
    "`reference/make_raft_mlp_fixture.py`)"
)

# The vertical and horizontal token-mixing MLPs mix (raft member x grid side), and their
# hidden widths grow with the side too: no resampling is defined for them.
GRID_RESAMPLING_UNAVAILABLE = (
    "RaftMLP's vertical and horizontal token-mixing MLPs (and their hidden widths) are tied "
    "to the trained grid and no resampling of them is defined; fine-tune at the "
    "checkpoint's image_size (for other input sizes, build the model at that image_size "
    "with resize_to_trained_grid=True, which resizes each level's grid as the official "
    "code does)."
)


def _linear(prefix: str, dense) -> Rules:
    return {f"{prefix}.weight": (dense.kernel, LINEAR), f"{prefix}.bias": (dense.bias, COPY)}


def _norm(prefix: str, norm) -> Rules:
    return {f"{prefix}.weight": (norm.scale, COPY), f"{prefix}.bias": (norm.bias, COPY)}


def official_rules(model: RaftMLP) -> Rules:
    """Official key -> (our variable, layout) for every weight of `model`."""
    rules: dict = {}
    for i, (embedding, blocks) in enumerate(zip(model.embeddings, model.levels)):
        rules.update(_linear(f"levels.{i}.fn.0.fc", embedding.fc))
        for d, block in enumerate(blocks):
            p = f"levels.{i}.fn.{2 + d}"
            for index, mixing in ((1, block.vertical), (3, block.horizontal)):
                rules.update(_norm(f"{p}.{index}.norm.1", mixing.norm))
                rules.update(_linear(f"{p}.{index}.fn.0", mixing.mlp.fc1))
                rules.update(_linear(f"{p}.{index}.fn.3", mixing.mlp.fc2))
            rules.update(_norm(f"{p}.5.norm", block.channel_norm))
            rules.update(_linear(f"{p}.5.fn.0", block.channel_mlp.fc1))
            rules.update(_linear(f"{p}.5.fn.3", block.channel_mlp.fc2))
    rules.update(_norm("heads.0.1", model.norm))
    rules.update(_linear("classifier", model.head))
    return rules
