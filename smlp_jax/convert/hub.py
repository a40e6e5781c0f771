"""Models in the Hugging Face Hub layout: a folder (or hub repository) with `config.json`
and `model.safetensors`, read through the hub's local cache.

Two layouts are read:

* ours, written by `smlp_jax.save_pretrained`: `config.json` holds `architecture` (a
  registered name), `num_classes`, `model_args` (every hyperparameter, `image_size`
  included), `pretrained_cfg` and `smlp_jax.weights_layout`: `"official"` (the family's
  official state-dict keys and shapes, so the official code loads the same file) or
  `"smlp_jax"` (our variable paths, for families without an official layout);
* timm's (`timm/<model>.<tag>`, for the models timm has): `architecture` is timm's model
  name, the `timm_architecture` of one of our models' pretrained configurations (its
  family file declares it), and the weights are timm's state dict, the layout that
  family's converter reads.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from pathlib import Path
from typing import Any

from smlp_jax.convert.checkpoint_io import WeightsFileError, read_weights
from smlp_jax.models import official_args
from smlp_jax.models.registry import get_entry, list_models

PREFIX = "hf-hub:"
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
MAX_CONFIG_BYTES = 1_000_000  # a config.json is a few kB
# A Hub repository id: NAME or ORG/NAME (huggingface_hub's rule: letters, digits, '-',
# '_', '.'; no '--' or '..'; up to 96 characters a part).
_REPO_ID = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?")


def timm_architectures() -> dict[str, str]:
    """{timm's model name: our registered name} of every registered model whose pretrained
    configuration names its timm twin (`PretrainedCfg.timm_architecture`)."""
    return {
        cfg.timm_architecture: name
        for name in list_models()
        if (cfg := get_entry(name).pretrained_cfg) is not None and cfg.timm_architecture
    }


def timm_model_args(name: str, args: dict[str, Any]) -> dict[str, Any]:
    """timm's constructor arguments of the registered model `name` -> ours: what timm
    computes differently from our defaults (`PretrainedCfg.timm_model_args`), then `args`
    translated by `official_args.translate` (the family's own names: Mixer's `embed_dim` /
    `mlp_ratio`, ConvMixer's `act_layer`)."""
    entry = get_entry(name)
    args = dict(args)
    if args.pop("global_pool", "avg") != "avg":
        raise HubError("timm's global_pool other than 'avg' has no equivalent here.")
    args.pop("num_classes", None)  # config.json's own num_classes is read
    differs = dict(entry.pretrained_cfg.timm_model_args) if entry.pretrained_cfg else {}
    return {**differs, **official_args.translate(entry, args)}


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
                f"HF_HUB_OFFLINE is set: run `hf download {repo_id}` where "
                "there is a network (or copy that cache here)."
            ) from None
    try:
        return huggingface_hub.hf_hub_download(**kwargs)
    except LocalEntryNotFoundError:  # the Hub could not be reached
        raise HubError(
            f"hf-hub:{repo_id}: could not get {filename}: the Hub is not reachable and the "
            "file is not in the hub cache (download it where there is a network: "
            f"`hf download {repo_id}`)."
        ) from None
    except EntryNotFoundError:
        raise HubError(f"hf-hub:{repo_id} has no {filename}.") from None
    except Exception as err:  # authentication, an unknown repository
        raise HubError(
            f"hf-hub:{repo_id}: could not get {filename} ({type(err).__name__}: "
            f"{str(err).splitlines()[0] if str(err) else ''})."
        ) from None


def is_repo_id(source: str) -> bool:
    """Whether `source` is a valid Hub repository id, `NAME` or `ORG/NAME`."""
    parts = source.split("/")
    return (
        1 <= len(parts) <= 2
        and all(_REPO_ID.fullmatch(part) for part in parts)
        and ".." not in source
        and "--" not in source
    )


def _looks_like_path(source: str) -> bool:
    return (
        source.startswith((".", "/", "~"))
        or source.endswith("/")
        or "\\" in source
        or os.path.exists(source)
    )


def _file(source: str, filename: str) -> str:
    if Path(source).is_dir():
        path = Path(source) / filename
        if not path.is_file():
            raise HubError(
                f"{source} has no {filename}: a hub model folder holds {CONFIG_FILE} and "
                f"{WEIGHTS_FILE} (smlp_jax.save_pretrained writes both)."
            )
        return str(path)
    if _looks_like_path(source):
        raise HubError(
            f"{PREFIX}{source}: no such folder (a local hub model is a folder holding "
            f"{CONFIG_FILE} and {WEIGHTS_FILE}; a Hub model is named ORG/NAME)."
        )
    if not is_repo_id(source):
        raise HubError(
            f"{PREFIX}{source}: not a valid Hub name (ORG/NAME, of letters, digits, '-', '_' "
            "and '.') and no such folder."
        )
    return cached_file(source, filename)


def _config_error(source: str, message: str) -> HubError:
    return HubError(f"{source}: {CONFIG_FILE}: {message}")


def _read_config(source: str) -> dict[str, Any]:
    path = _file(source, CONFIG_FILE)
    if os.path.getsize(path) > MAX_CONFIG_BYTES:
        raise _config_error(
            source, f"{os.path.getsize(path):,} bytes; a hub model's config is a few kB."
        )
    with open(path, "rb") as f:
        try:
            config = json.loads(f.read().decode("utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise _config_error(source, f"not valid JSON ({err}).") from None
    if not isinstance(config, dict):
        raise _config_error(
            source,
            f"a JSON {type(config).__name__}, not an object with architecture, num_classes "
            "and model_args.",
        )
    return config


def _mapping(source: str, config: dict[str, Any], key: str) -> dict[str, Any]:
    """config[key] as a dict ({} when absent or null); anything else is refused."""
    value = config.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _config_error(
            source, f"{key} is a JSON {type(value).__name__}; it must be an object."
        )
    return dict(value)


def _class_count(source: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _config_error(source, f"num_classes={value!r} is not a class count (an int >= 0).")
    return value


def read_hub_config(source: str) -> HubModel:
    """What the hub model `source` describes (a local folder or a repository id
    `ORG/NAME`, with or without the `hf-hub:` prefix), its `config.json` checked for types;
    its weights not read yet (`weights` is {}: `read_hub_model` reads them). The
    hyperparameters' ranges are the registry's to check (`make_model`)."""
    source = source.removeprefix(PREFIX)
    config = _read_config(source)
    architecture = config.get("architecture")
    if not isinstance(architecture, str):
        raise _config_error(source, f"architecture={architecture!r} is not a model name.")
    ours = "smlp_jax" in config
    model_args = _mapping(source, config, "model_args")
    if ours:
        name = architecture
        layout = _mapping(source, config, "smlp_jax").get("weights_layout", "official")
        if layout not in ("official", "smlp_jax"):
            raise _config_error(
                source, f"weights_layout={layout!r}; it is 'official' or 'smlp_jax'."
            )
        get_entry(name)  # an unknown name: the registry's error, with close matches
    elif architecture in (timm := timm_architectures()):
        name, layout = timm[architecture], "official"
        input_size = _mapping(source, config, "pretrained_cfg").get("input_size", [3, 224, 224])
        if not isinstance(input_size, list) or not input_size:
            raise _config_error(source, f"input_size={input_size!r} is not [3, H, W].")
        try:
            translated = timm_model_args(name, model_args)
        except (TypeError, ValueError) as err:  # official_args' refusals, a bad mlp_ratio
            raise _config_error(source, f"model_args: {err}") from None
        model_args = {**translated, "image_size": input_size[-1]}
    else:
        known = ", ".join(sorted(timm))
        raise HubError(
            f"{source}: architecture {architecture!r} is not a model smlp_jax has (ours: "
            f"{', '.join(list_models())}; timm's we read: {known})."
        )
    num_classes = _class_count(
        source, config.get("num_classes", model_args.pop("num_classes", 1000))
    )
    model_args.pop("num_classes", None)
    return HubModel(name, num_classes, model_args, {}, layout, source)


def read_hub_weights(found: HubModel) -> dict[str, Any]:
    """The weights of the hub model `read_hub_config` described."""
    return read_weights(_file(found.source, WEIGHTS_FILE))


def read_hub_model(source: str) -> HubModel:
    """Reads a hub model, its weights included: `source` is a local folder or a
    repository id `ORG/NAME` (with or without the `hf-hub:` prefix)."""
    found = read_hub_config(source)
    return dataclasses.replace(found, weights=read_hub_weights(found))
