"""Models in the Hugging Face Hub layout: a folder (or hub repository) with `config.json`
and `model.safetensors`, read through the hub's local cache.

Two layouts are read:

* ours, written by `smlp_jax.save_pretrained`: `config.json` holds `architecture` (a
  registered name), `num_classes`, `model_args` (every hyperparameter, `image_size`
  included), `pretrained_cfg` and `smlp_jax.weights_layout`: `"official"` (the family's
  official state-dict keys and shapes, so the official code loads the same file) or
  `"smlp_jax"` (our variable paths, for families without an official layout);
* timm's (`timm/<model>.<tag>`, for the families timm has: MLP-Mixer and ConvMixer):
  `architecture` is timm's model name and the weights are timm's state dict, the layout
  our Mixer and ConvMixer converters read.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

from smlp_jax.convert.checkpoint_io import WeightsFileError, read_weights
from smlp_jax.models import official_args
from smlp_jax.models.registry import get_entry, list_models

PREFIX = "hf-hub:"
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"

# timm's names of the models we have (timm models/mlp_mixer.py, convmixer.py).
TIMM_ARCHITECTURES = {
    **{f"mixer_{v}_224": f"mixer_{v}" for v in ("s32", "s16", "b32", "b16", "l32", "l16")},
    "convmixer_1536_20": "convmixer_1536_20",
    "convmixer_768_32": "convmixer_768_32",
    "convmixer_1024_20_ks9_p14": "convmixer_1024_20",
}
# What timm's implementation of a family computes differently from our default.
TIMM_MODEL_ARGS = {"mixer": {"gelu_approximate": False}}  # timm: exact erf GELU


def timm_model_args(family: str, args: dict[str, Any]) -> dict[str, Any]:
    """timm's constructor arguments of a family -> ours (`official_args.translate`: e.g.
    Mixer's `embed_dim` / `mlp_ratio`; ConvMixer's `act_layer` is our `activation`)."""
    args = dict(args)
    if family == "convmixer" and "act_layer" in args:
        args["activation"] = str(args.pop("act_layer")).lower().removeprefix("nn.")
    if args.pop("global_pool", "avg") != "avg":
        raise HubError("timm's global_pool other than 'avg' has no equivalent here.")
    args.pop("num_classes", None)  # config.json's own num_classes is read
    return official_args.translate(family, args)


class HubError(WeightsFileError):
    """A hub model that cannot be read: missing files, an unknown architecture."""


@dataclasses.dataclass(frozen=True)
class HubModel:
    """What a hub folder describes: build `name` with `num_classes`, `model_args`, then
    load `weights` in `weights_layout` ("official" or "smlp_jax")."""

    name: str
    num_classes: int
    model_args: dict[str, Any]
    weights: dict[str, Any]
    weights_layout: str
    source: str


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").upper() in {"1", "ON", "YES", "TRUE"}


def _cache_dir() -> str | None:
    # Read at call time: huggingface_hub reads these once, when it is first imported.
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    if os.environ.get("HF_HOME"):
        return os.path.join(os.environ["HF_HOME"], "hub")
    return None


def cached_file(repo_id: str, filename: str) -> str:
    """The local path of `filename` of hub model `repo_id`: from the hub cache, else
    downloaded (unless `HF_HUB_OFFLINE=1`). Raises `HubError` saying what to do."""
    import huggingface_hub  # lazy: only hub users pay for its import
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

    kwargs = dict(repo_id=repo_id, filename=filename, cache_dir=_cache_dir())
    try:
        return huggingface_hub.hf_hub_download(**kwargs, local_files_only=True)
    except LocalEntryNotFoundError:
        if _offline():
            raise HubError(
                f"hf-hub:{repo_id}: {filename} is not in the hub cache "
                f"({_cache_dir() or huggingface_hub.constants.HF_HUB_CACHE}) and "
                f"HF_HUB_OFFLINE is set: run `huggingface-cli download {repo_id}` where "
                "there is a network (or copy that cache here)."
            ) from None
    try:
        return huggingface_hub.hf_hub_download(**kwargs)
    except LocalEntryNotFoundError:  # the Hub could not be reached
        raise HubError(
            f"hf-hub:{repo_id}: could not get {filename}: the Hub is not reachable and the "
            "file is not in the hub cache (download it where there is a network: "
            f"`huggingface-cli download {repo_id}`)."
        ) from None
    except EntryNotFoundError:
        raise HubError(f"hf-hub:{repo_id} has no {filename}.") from None
    except Exception as err:  # authentication, an unknown repository
        raise HubError(
            f"hf-hub:{repo_id}: could not get {filename} ({type(err).__name__}: "
            f"{str(err).splitlines()[0] if str(err) else ''})."
        ) from None


def _file(source: str, filename: str) -> str:
    if Path(source).is_dir():
        path = Path(source) / filename
        if not path.is_file():
            raise HubError(
                f"{source} has no {filename}: a hub model folder holds {CONFIG_FILE} and "
                f"{WEIGHTS_FILE} (smlp_jax.save_pretrained writes both)."
            )
        return str(path)
    return cached_file(source, filename)


def read_hub_model(source: str) -> HubModel:
    """Reads a hub model: `source` is a local folder or a repository id `ORG/NAME`
    (with or without the `hf-hub:` prefix)."""
    source = source.removeprefix(PREFIX)
    with open(_file(source, CONFIG_FILE)) as f:
        try:
            config = json.load(f)
        except json.JSONDecodeError as err:
            raise HubError(f"{source}: {CONFIG_FILE} is not valid JSON ({err}).") from None
    architecture = config.get("architecture")
    ours = "smlp_jax" in config
    if ours:
        name, model_args = architecture, dict(config.get("model_args") or {})
        layout = config["smlp_jax"].get("weights_layout", "official")
        get_entry(name)  # an unknown name: the registry's error, with close matches
    elif architecture in TIMM_ARCHITECTURES:
        name, layout = TIMM_ARCHITECTURES[architecture], "official"
        size = (config.get("pretrained_cfg") or {}).get("input_size", [3, 224, 224])[-1]
        family = get_entry(name).family
        model_args = {
            **TIMM_MODEL_ARGS.get(family, {}),
            **timm_model_args(family, config.get("model_args") or {}),
            "image_size": size,
        }
    else:
        known = ", ".join(sorted(TIMM_ARCHITECTURES))
        raise HubError(
            f"{source}: architecture {architecture!r} is not a model smlp_jax has (ours: "
            f"{', '.join(list_models())}; timm's we read: {known})."
        )
    num_classes = int(config.get("num_classes", model_args.pop("num_classes", 1000)))
    model_args.pop("num_classes", None)
    weights = read_weights(_file(source, WEIGHTS_FILE))
    return HubModel(name, num_classes, model_args, weights, layout, source)
