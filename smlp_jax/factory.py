"""`create_model`: a registered model, with official weights if asked for.

The one place where the model registry and the weight converters meet, so that neither
imports the other (models <- convert <- factory).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import jax.numpy as jnp
from flax import nnx

from smlp_jax.convert import hub, load_pretrained
from smlp_jax.convert.assign import assign_weights
from smlp_jax.convert.checkpoint_io import WeightsFileError, read_weights
from smlp_jax.convert.export import variable_rules
from smlp_jax.models import HyperparameterError, get_entry, make_model
from smlp_jax.models.npz import check_npz
from smlp_jax.models.size import check_model_size


def create_model(
    name: str,
    pretrained: Any = None,
    *,
    num_classes: int | None = None,
    image_size: int | None = None,
    resample_to_grid: bool = False,
    rngs: nnx.Rngs | int | None = None,
    dtype: Any = jnp.float32,
    **overrides: Any,
) -> nnx.Module:
    """Builds a registered model: NHWC float32 images `(B, H, W, 3)` -> logits.

    Args:
      name: a registered name (`smlp_jax.list_models()`), or `"hf-hub:ORG/NAME"`: a
        model in the Hugging Face Hub layout (ours, from `smlp_jax.save_pretrained`, or
        timm's for Mixer and ConvMixer), read through the hub cache with its weights.
        Its config.json is untrusted: checked for types and the declared ranges, and the
        model it describes measured abstractly first; parameters plus the largest
        activation of one image above `$SMLP_JAX_MAX_MODEL_GB` (default 8) are refused
        (`smlp_jax.models.size`).
      pretrained: official weights to load: a path (`.pth`/`.pth.tar`/`.pt`, `.npz`,
        `.safetensors`), a mapping from official key names to arrays, True (the model's
        official file, found where timm and torch.hub keep downloads: see
        `find_pretrained`), or False / None (fresh initialisation).
      num_classes: size of the classifier head (None: 1000, or the hub model's; another
        count than the hub model's gives a fresh head); 0: no head, the model returns its
        pooled features `(B, num_features)` (with `pretrained`, the official weights'
        head is dropped).
      image_size: input side length (None: the size of the model's official weights,
        `pretrained_cfg(name).image_size`); models whose token mixing is tied to the grid
        reject any other input size with a clear error.
      resample_to_grid: load `pretrained` weights made for another image size into a
        model whose token mixing is tied to the grid, by resampling those weights
        (`smlp_jax.convert.resample`); otherwise such weights are refused.
      rngs: `nnx.Rngs` or an integer seed (default 0) for parameters and dropout.
      dtype: computation dtype (parameters stay float32).
      **overrides: the family's hyperparameters (official names); they win over the
        variant's values. Each has a declared type and range
        (`smlp_jax.models.hyperparameter_ranges(name)`); a value outside it is a
        `HyperparameterError` naming it and the range.

    Returns:
      The nnx module, in train mode (call `.eval()` for inference).
    """
    if name.startswith(hub.PREFIX):
        return _from_hub(name, pretrained, num_classes, image_size, rngs, dtype, overrides)
    if num_classes is None:
        num_classes = 1000
    if image_size is None:
        image_size = _default_image_size(name)
    elif not isinstance(image_size, int) or isinstance(image_size, bool) or image_size <= 0:
        raise ValueError(f"image_size={image_size!r}: give a positive int (or None).")
    if pretrained is True:
        pretrained = find_pretrained(name)
    elif pretrained is False:
        pretrained = None
    if isinstance(pretrained, str | os.PathLike):
        # Read (and checked: `checkpoint_io`) before the model is built, so that a missing,
        # damaged or crafted file is one line at once, not after the build. An .npz only its
        # headers now: `load_pretrained` checks their shapes against the model, then reads.
        if os.fspath(pretrained).lower().endswith(".npz") and os.path.isfile(pretrained):
            check_npz(pretrained, WeightsFileError)
        else:
            pretrained = read_weights(pretrained)
    # timm's habit: num_classes=0 with weights is the weights' network without its head.
    headless = num_classes == 0 and pretrained is not None
    if headless:
        cfg = get_entry(name).pretrained_cfg
        num_classes = cfg.num_classes if cfg is not None else 1000
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
    if headless:
        model.reset_classifier(0)
    return model


def _default_image_size(name: str) -> int:
    cfg = get_entry(name).pretrained_cfg
    return cfg.image_size if cfg is not None else 224


def weights_dirs() -> list[Path]:
    """Where `pretrained=True` looks for a model's official file, in order:
    `$SMLP_JAX_WEIGHTS`, then torch.hub's download folder (`$TORCH_HOME/hub/checkpoints`,
    by default `~/.cache/torch/hub/checkpoints`, where timm and torch.hub save files)."""
    dirs = []
    if os.environ.get("SMLP_JAX_WEIGHTS"):
        dirs.append(Path(os.environ["SMLP_JAX_WEIGHTS"]).expanduser())
    torch_home = os.environ.get("TORCH_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", "~/.cache"), "torch"
    )
    dirs.append(Path(torch_home).expanduser() / "hub" / "checkpoints")
    return dirs


def find_pretrained(name: str) -> str:
    """The path of `name`'s official weights on this machine (for `pretrained=True`).

    Weights on the Hugging Face Hub (ConvMixer's timm copies) are read through the hub
    cache (`huggingface_hub`; downloaded unless `HF_HUB_OFFLINE=1`); every other official
    file must already be in one of `weights_dirs()` under its official name. Raises a
    `FileNotFoundError` that says where to get the file and where to put it.
    """
    cfg = get_entry(name).pretrained_cfg
    if cfg is None or not cfg.url:
        where = f" (see {cfg.release})" if cfg is not None and cfg.release else ""
        raise FileNotFoundError(
            f"{name} has no published official weights{where}: pass pretrained=<file> "
            "with your own, or list_models(pretrained=True) for the models that have them."
        )
    if cfg.hf_hub_id:
        return hub.cached_file(cfg.hf_hub_id, cfg.file_name or "model.safetensors")
    dirs = weights_dirs()
    for folder in dirs:
        if (folder / cfg.file_name).is_file():
            return str(folder / cfg.file_name)
    raise FileNotFoundError(
        f"pretrained=True: {cfg.file_name} for {name} is not in "
        f"{' or '.join(str(d) for d in dirs)}. Download it from {cfg.url} (listed at "
        f"{cfg.release}) into {dirs[-1]} (or $SMLP_JAX_WEIGHTS), or pass pretrained=<file>."
    )


def _from_hub(name, pretrained, num_classes, image_size, rngs, dtype, overrides) -> nnx.Module:
    if pretrained not in (None, True, False):
        raise ValueError(f"{name} brings its own weights; pretrained={pretrained!r} is not used.")
    found = hub.read_hub_config(name)
    args = {**found.model_args, **overrides}
    if image_size is not None:
        args["image_size"] = image_size
    # config.json is untrusted input: its values are checked against the declared ranges
    # and the model it describes is measured abstractly, before anything is allocated.
    try:
        check_model_size(found.name, num_classes=found.num_classes, what=found.source, **args)
    except HyperparameterError as err:
        raise hub.HubError(f"{found.source}: {hub.CONFIG_FILE}: {err}") from None
    weights = hub.read_hub_weights(found) if pretrained is not False else None
    model = make_model(found.name, num_classes=found.num_classes, rngs=rngs, dtype=dtype, **args)
    if weights is not None:
        if found.weights_layout == "smlp_jax":
            assign_weights(name, variable_rules(model), weights)
        else:
            load_pretrained(model, weights, family=get_entry(found.name).family, model_name=name)
    if num_classes is not None and num_classes != found.num_classes:
        model.reset_classifier(num_classes, rngs=0 if rngs is None else rngs)
    return model
