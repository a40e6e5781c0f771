"""`create_model`: a registered model, with official weights if asked for.

The one place where the model registry and the weight converters meet, so that neither
imports the other (models <- convert <- factory).
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
from flax import nnx

from smlp_jax.convert import load_pretrained
from smlp_jax.models import get_entry, make_model


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
    model = make_model(
        name, num_classes=num_classes, image_size=image_size, rngs=rngs, dtype=dtype, **overrides
    )
    if pretrained is not None:
        load_pretrained(
            model,
            pretrained,
            family=get_entry(name).family,
            model_name=name,
            resample_to_grid=resample_to_grid,
        )
    return model
