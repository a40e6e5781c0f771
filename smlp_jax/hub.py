"""Models out to the Hugging Face Hub layout: `save_pretrained` and `push_to_hub`.

    smlp_jax.save_pretrained(model, "smlpnet_demo")      # a folder, offline
    model = smlp_jax.create_model("hf-hub:ORG/NAME")     # or a local folder: see below
    smlp_jax.push_to_hub(model, "ORG/NAME")              # uploads that folder

The folder holds `config.json` (architecture, hyperparameters, pretrained configuration),
`model.safetensors` (the family's official state dict where it has one, so the official
code and timm read the same file; our variable paths for Sparse-MLP) and a model card
`README.md` written from what is measured on the model itself (parameters, MACs) and
what the repository proves (the parity check its converter names in `PARITY`), plus
the training run when given. `smlp_jax.convert.hub` reads the folder back.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import jax
import numpy as np
from flax import nnx

from smlp_jax.convert.assign import WeightsMismatchError
from smlp_jax.convert.converters import converter
from smlp_jax.convert.export import export_state_dict, write_state_dict
from smlp_jax.convert.hub import CONFIG_FILE, WEIGHTS_FILE
from smlp_jax.models.macs import macs_of
from smlp_jax.models.registry import ModelSpec, get_entry, pretrained_cfg
from smlp_jax.version import __version__

CARD_FILE = "README.md"


def _spec(model: nnx.Module) -> ModelSpec:
    spec = getattr(model, "model_spec", None)
    if spec is None:
        raise ValueError(
            "save_pretrained needs a model built by smlp_jax.create_model (it records the "
            "registered name and hyperparameters in model.model_spec)."
        )
    return spec


def hub_config(
    model: nnx.Module, weights_layout: str, preprocessing: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The `config.json` of `model`; `preprocessing` (mean, std, crop_pct, interpolation:
    how the weights were trained and evaluated) replaces the family's official one."""
    spec = _spec(model)
    entry = get_entry(spec.name)
    cfg = dataclasses.asdict(pretrained_cfg(spec.name))
    cfg.update(input_size=[3, spec.image_size, spec.image_size], num_classes=spec.num_classes)
    cfg.update(
        {k: list(v) if isinstance(v, tuple) else v for k, v in (preprocessing or {}).items()}
    )
    return {
        "architecture": spec.name,
        "num_classes": spec.num_classes,
        "model_args": {**spec.kwargs(), "image_size": spec.image_size},
        "pretrained_cfg": cfg,
        "smlp_jax": {
            "version": __version__,
            "family": entry.family,
            "weights_layout": weights_layout,
        },
    }


def _weights(model: nnx.Module) -> tuple[dict[str, np.ndarray], str]:
    try:
        return export_state_dict(model, "official"), "official"
    except WeightsMismatchError:  # no official layout (Sparse-MLP)
        return export_state_dict(model, "smlp_jax"), "smlp_jax"


def model_card(
    model: nnx.Module,
    weights_layout: str,
    *,
    macs: int | None = None,
    training: dict[str, Any] | None = None,
    repo_id: str | None = None,
    preprocessing: dict[str, Any] | None = None,
) -> str:
    """The model card: YAML front matter and what is measured or proven, nothing else;
    `preprocessing` as in `hub_config`."""
    spec = _spec(model)
    entry, cfg = get_entry(spec.name), pretrained_cfg(spec.name)
    if preprocessing:
        cfg = dataclasses.replace(cfg, **preprocessing)
    params = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(nnx.state(model, nnx.Param)))
    size = spec.image_size
    lines = [
        "---",
        "library_name: smlp_jax",
        "tags: [image-classification, jax, flax, smlp_jax, " + entry.family + "]",
        f"license: {cfg.license.lower() if cfg.license else 'other'}",
        "---",
        "",
        f"# {spec.name}",
        "",
        f"A {entry.family} model for smlp_jax (JAX/Flax nnx), {spec.num_classes} classes, "
        f"{size}x{size} input.",
        "",
        "## Model",
        "",
        f"- Parameters: {params:,}",
    ]
    if macs is not None:
        lines.append(
            f"- MACs (batch 1, {size}x{size}, matmuls and convolutions): {macs / 1e9:.3f} G"
        )
    hyper = ", ".join(f"{k}={v!r}" for k, v in spec.hyperparameters)
    lines += [
        f"- Hyperparameters: {hyper}",
        f"- Input: {size}x{size} RGB, [0, 1] pixels normalised with mean {list(cfg.mean)} and "
        f"std {list(cfg.std)}; evaluated after a {cfg.interpolation} resize and a "
        f"{cfg.crop_pct} centre crop.",
        "",
        "## Weights",
        "",
    ]
    if weights_layout == "official":
        # The family's converter says how its layout is checked (`PARITY`).
        parity = converter(entry.family).PARITY
        proof = f" The layout is proven in smlp_jax against {parity}." if parity else ""
        origin = cfg.release or cfg.source
        lines.append(
            f"`{WEIGHTS_FILE}` is in the official layout of {entry.family} ({origin}): the "
            "official PyTorch code loads it with `load_state_dict(strict=True)` and gives the "
            f"same logits as smlp_jax.{proof}"
        )
    else:
        lines.append(
            f"`{WEIGHTS_FILE}` is keyed by smlp_jax's variable paths ({entry.family} has no "
            "official code to share a layout with)."
        )
    lines += ["", "## Training", ""]
    if training:
        lines += [f"- {k}: {v}" for k, v in training.items()]
    else:
        lines.append("Not recorded with these weights.")
    lines += [
        "",
        "## Use",
        "",
        "```python",
        "import smlp_jax",
        f'model = smlp_jax.create_model("hf-hub:{repo_id or "ORG/NAME"}")',
        "model.eval()",
        f"logits = model(images)  # (B, {size}, {size}, 3) float32 NHWC -> (B, {spec.num_classes})",
        "```",
        "",
    ]
    return "\n".join(lines)


def save_pretrained(
    model: nnx.Module,
    directory: str | os.PathLike,
    *,
    training: dict[str, Any] | None = None,
    macs: bool = True,
    repo_id: str | None = None,
    preprocessing: dict[str, Any] | None = None,
) -> Path:
    """Writes `model` (built by `create_model`) as a Hub folder: config.json,
    model.safetensors and README.md. `training` (e.g. the config, dataset and final eval
    of the run) goes into the model card; `preprocessing` (mean, std, crop_pct,
    interpolation) is how the weights were trained, when not the family's official
    recipe (`tools.trained.run_preprocessing` of a run); `macs=False` skips counting MACs
    (a trace of the forward). Returns the folder."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state, layout = _weights(model)
    write_state_dict(state, directory / WEIGHTS_FILE)
    config = hub_config(model, layout, preprocessing)
    (directory / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
    card = model_card(
        model,
        layout,
        macs=macs_of(model) if macs else None,
        training=training,
        repo_id=repo_id,
        preprocessing=preprocessing,
    )
    (directory / CARD_FILE).write_text(card)
    return directory


def push_to_hub(
    model: nnx.Module,
    repo_id: str,
    *,
    private: bool = False,
    token: str | None = None,
    commit_message: str = "Upload smlp_jax model",
    training: dict[str, Any] | None = None,
    api: Any = None,
    preprocessing: dict[str, Any] | None = None,
) -> str:
    """`save_pretrained` into a temporary folder, then `huggingface_hub` creates the
    repository (if needed) and uploads the folder. Returns the commit URL. A thin
    wrapper: the tests check what it hands `huggingface_hub` (through `api`), never the
    network."""
    if api is None:
        import huggingface_hub  # lazy: only uploads need it

        api = huggingface_hub.HfApi(token=token)
    with tempfile.TemporaryDirectory() as tmp:
        save_pretrained(model, tmp, training=training, repo_id=repo_id, preprocessing=preprocessing)
        api.create_repo(repo_id, private=private, exist_ok=True)
        return str(
            api.upload_folder(repo_id=repo_id, folder_path=tmp, commit_message=commit_message)
        )
