"""Reading official weight files safely into `{official_key: np.ndarray}`.

Checkpoints are untrusted input: `.pth` files go through `torch.load(weights_only=True)`
with only `argparse.Namespace` allowed beyond plain containers and tensors (the SPACH and
DeiT-style training scripts store their args that way), and `.npz` through
`np.load(allow_pickle=False)` after every array's declared shape is checked against the
bytes the file holds (`smlp_jax.models.npz`: a crafted header cannot ask for terabytes).
Loading weights never runs pickled code.
"""

from __future__ import annotations

import argparse
import os
import pickle
import zipfile
from collections.abc import Mapping
from typing import Any

import numpy as np

from smlp_jax.errors import UserError
from smlp_jax.models.npz import read_npz

# Where training scripts nest the weights inside a checkpoint, in order of preference.
_NESTED_KEYS = ("model", "state_dict", "model_ema", "params")
_TORCH_SUFFIXES = (".pth", ".pt", ".tar", ".bin", ".ckpt")


class WeightsFileError(UserError, ValueError):
    """A weights file that is missing, unreadable, or of an unsupported kind."""


def _to_numpy(value: Any) -> np.ndarray:
    if isinstance(value, np.ndarray):
        return value
    if hasattr(value, "detach"):  # a torch tensor
        tensor = value.detach().cpu()
        if str(tensor.dtype) == "torch.bfloat16":
            tensor = tensor.float()
        return tensor.numpy()
    return np.asarray(value)


def _load_torch(path: str) -> Any:
    try:
        import torch  # lazy: heavy and optional, needed only for PyTorch files
    except ImportError as e:
        raise WeightsFileError(
            f"reading {path} needs PyTorch: pip install torch==2.13.0 "
            "(or pass the weights as an .npz file / a mapping of arrays)"
        ) from e
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise WeightsFileError(
            f"refused to load {path}: it holds objects other than tensors and plain "
            f"containers, and loading it would run pickled code ({e})"
        ) from e
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as e:
        raise WeightsFileError(f"could not read {path} (corrupt or truncated?): {e}") from e


def _load_file(path: str) -> Mapping[str, Any]:
    if not os.path.exists(path):
        raise WeightsFileError(f"weights file {path} does not exist")
    lower = path.lower()
    if lower.endswith(".npz"):
        # Each array's declared shape checked against the file's bytes before reading.
        return read_npz(path, WeightsFileError)
    if lower.endswith(".safetensors"):
        try:
            from safetensors.numpy import load_file  # lazy: optional, for .safetensors only
        except ImportError as e:
            raise WeightsFileError(f"reading {path} needs: pip install safetensors") from e
        try:
            return load_file(path)
        except Exception as e:  # safetensors raises its own error types
            raise WeightsFileError(f"could not read {path}: {e}") from e
    if lower.endswith(_TORCH_SUFFIXES):
        return _load_torch(path)
    raise WeightsFileError(
        f"do not know how to read {path}: expected .pth/.pt/.pth.tar/.bin, .npz or .safetensors"
    )


def _flax_tree_flattened(tree: Mapping[str, Any]) -> Mapping[str, Any]:
    """A Flax parameter tree as the vit_jax `.npz` has it: nested dicts (or a `params/`
    prefix, as big_vision's `.npz` checkpoints write with their optimiser state beside)
    -> flat `"a/b/kernel"` keys. Trees with PyTorch-style dotted names are left alone (a
    nested torch checkpoint needs `checkpoint_key`)."""
    if any(k.startswith("params/") for k in tree):
        tree = {k.removeprefix("params/"): v for k, v in tree.items() if k.startswith("params/")}
    if not any(isinstance(v, Mapping) for v in tree.values()):
        return tree

    def flatten(node: Mapping[str, Any], prefix: str, out: dict) -> dict:
        for key, value in node.items():
            if isinstance(value, Mapping):
                flatten(value, f"{prefix}{key}/", out)
            else:
                out[f"{prefix}{key}"] = value
        return out

    flat = flatten(tree, "", {})
    return tree if any("." in k for k in flat) else flat


def read_weights(
    source: str | os.PathLike | Mapping[str, Any], *, checkpoint_key: str | None = None
) -> dict[str, np.ndarray]:
    """Returns the flat official state dict `{key: array}` held by `source`.

    Args:
      source: a path or an in-memory mapping. Training checkpoints that nest the
        weights (`{'model': ..., 'model_ema': ..., 'optimizer': ...}`) are unwrapped.
      checkpoint_key: which nested entry to use (e.g. `'model_ema'`); by default the
        first of 'model', 'state_dict', 'model_ema', 'params' that is present.
    """
    tree = source if isinstance(source, Mapping) else _load_file(os.fspath(source))
    if checkpoint_key is not None:
        if checkpoint_key not in tree:
            raise WeightsFileError(
                f"checkpoint has no entry {checkpoint_key!r}; it has {sorted(tree)[:10]}"
            )
        tree = tree[checkpoint_key]
    else:
        for key in _NESTED_KEYS:
            if key in tree and isinstance(tree[key], Mapping):
                tree = tree[key]
                break
    tree = _flax_tree_flattened(tree)
    flat: dict[str, np.ndarray] = {}
    for key, value in tree.items():
        if isinstance(value, Mapping):
            raise WeightsFileError(
                f"entry {key!r} is a nested mapping, not an array: pass checkpoint_key to "
                "pick the state dict inside the checkpoint"
            )
        # Weights saved from DistributedDataParallel carry a 'module.' prefix.
        flat[key.removeprefix("module.")] = _to_numpy(value)
    return flat
