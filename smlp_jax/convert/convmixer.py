"""ConvMixer: timm's state-dict layout (`convmixer_1536_20.in1k`, ...) -> `ConvMixer`.

timm keeps the official `nn.Sequential` indices: `stem.0` is the patch conv and
`stem.2` its BatchNorm; in block i, `blocks.{i}.0.fn.0` is the depthwise conv and
`.fn.2` its BatchNorm (inside the `Residual`), `blocks.{i}.1` the 1x1 conv and
`blocks.{i}.3` its BatchNorm. The activations hold no weights. No weight depends on
the image size.
"""

from __future__ import annotations

from smlp_jax.convert.assign import CONV, CONV1X1_AS_DENSE, COPY, LINEAR, Rules
from smlp_jax.models.convmixer import ConvMixer

# How the official layout is checked, in the model card's words: the same weights give
# the logits of the reference named here (its parity test reads that fixture).
PARITY = "timm's `ConvMixer` (fixtures: `reference/make_convmixer_fixture.py`)"


def _batch_norm(prefix: str, bn) -> Rules:
    return {
        f"{prefix}.weight": (bn.scale, COPY),
        f"{prefix}.bias": (bn.bias, COPY),
        f"{prefix}.running_mean": (bn.mean, COPY),
        f"{prefix}.running_var": (bn.var, COPY),
    }


def official_rules(model: ConvMixer) -> Rules:
    """timm key -> (our variable, layout) for every weight of `model`."""
    rules: dict = {
        "stem.0.weight": (model.stem.kernel, CONV),
        "stem.0.bias": (model.stem.bias, COPY),
        **_batch_norm("stem.2", model.stem_norm),
    }
    for i, block in enumerate(model.blocks):
        p = f"blocks.{i}"
        rules[f"{p}.0.fn.0.weight"] = (block.depthwise.kernel, CONV)  # (C,1,k,k)->(k,k,1,C)
        rules[f"{p}.0.fn.0.bias"] = (block.depthwise.bias, COPY)
        rules.update(_batch_norm(f"{p}.0.fn.2", block.depthwise_norm))
        rules[f"{p}.1.weight"] = (block.pointwise.kernel, CONV1X1_AS_DENSE)
        rules[f"{p}.1.bias"] = (block.pointwise.bias, COPY)
        rules.update(_batch_norm(f"{p}.3", block.pointwise_norm))
    rules["head.weight"] = (model.head.kernel, LINEAR)
    rules["head.bias"] = (model.head.bias, COPY)
    return rules
