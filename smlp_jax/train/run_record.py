"""The run record: what a run is, saved with every checkpoint it writes.

`checkpoints/<step>/record/run.json` holds, as plain JSON:

    format          1
    config          the resolved config as the run used it (every key, tuples as lists)
    model           {"name", "hyperparameters" (every one, as built), "image_size",
                     "num_classes", "class_names" (when the dataset names its labels)}
    preprocessing   what the run fed its eval images: mean, std, crop_pct, interpolation,
                    input_size (`run_preprocessing`)
    data            dataset, splits, image counts
    input_plan      where the train input's work runs and what the host sends per example
    recipe          the training recipe at a glance (steps, batch, optimiser, lr, schedule...)
    versions        python and the libraries the run used
    resumes         each resume that changed a setting: {"step", "changes": {key: [old, new]}}
    wandb           {"id", "project"}: the Weights & Biases run this run logs to (only with
                    config.wandb on; a resume keeps it, so W&B continues the same run)

The step's own metrics sit beside it in `meta/meta.json`. Tools rebuild the run from the
record alone (`read` + `config_of`: `--checkpoint WORKDIR`, no `--config`); a resume compares
the config it was given with the record (`check_resume`): a change to what the run means is
refused in one line unless `config.allow_changes` names it, and harmless ones (`HARMLESS`:
how often to log, evaluate and save, workers, device layout) are allowed and noted.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import os
import platform
import warnings
from pathlib import Path
from typing import Any

import ml_collections

from smlp_jax.models import registry
from smlp_jax.train.errors import ConfigError
from smlp_jax.train.state import model_kwargs

FORMAT = 1
ITEM = "record"  # the checkpoint item (folder) it is saved as
FILE = "run.json"

# Keys a resume may change without changing what the run computes (a key, or a prefix
# ending in "."): when and how often to log, evaluate and save, input loading, the device
# layout, where the data lives, and keys only read at step 0 or by other modes.
HARMLESS = (
    "log_every",
    "eval_every",
    "checkpoint_every",
    "keep_checkpoints",
    "async_checkpoint",
    "compilation_cache_dir",
    "remat",  # the same values, recomputed in the backward instead of kept
    "input.num_workers",
    "input.num_threads",
    "input.prefetch",
    "input.shared_memory",
    "mesh.",
    "sharding",
    "fsdp_min_size",
    "eval_batch_size",
    "data_dir",
    "init_from",
    "init_resample_to_grid",
    "init_head",  # like init_from, read only at step 0
    "probe.",
    "evals.",
    "eval_only",
    "best_metric",
    "allow_changes",
    "profile",
    "wandb.",
)

_VERSIONED = ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "grain", "numpy", "smlp_jax")


class RunRecordError(ConfigError):
    """A run record that is missing where it is required, unreadable, or contradicted."""


class RunRecordWarning(UserWarning):
    """A damaged run record was passed over for an older step's."""


# --- config <-> JSON ----------------------------------------------------------------------


def plain(config: Any) -> Any:
    """A config (or any nesting of dicts, tuples and scalars) as JSON would store it."""
    if isinstance(config, ml_collections.ConfigDict):
        config = config.to_dict()
    return json.loads(json.dumps(config))


def _tuples(value: Any) -> Any:
    """JSON's lists back to the tuples the configs use (no config value is a list)."""
    if isinstance(value, dict):
        return {k: _tuples(v) for k, v in value.items()}
    if isinstance(value, list):
        return tuple(_tuples(v) for v in value)
    return value


def config_of(record: dict[str, Any]) -> ml_collections.ConfigDict:
    """The run's config, rebuilt from its record (equal to the config the run used)."""
    return ml_collections.ConfigDict(_tuples(record["config"]))


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"optimizer": {"lr": 1}} -> {"optimizer.lr": 1}."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


# --- what the record holds ---------------------------------------------------------------


def run_preprocessing(config: Any) -> dict[str, Any]:
    """How the run fed its eval images: mean, std, crop_pct and the eval resize filter (as
    `smlp_jax.data.transforms` picks it: `eval_interpolation`, else the train filter, and
    bicubic for "random"). Exports write this, not the family's official preprocessing."""
    cfg = dict(config.input)
    name = cfg.get("eval_interpolation", "") or cfg["interpolation"]
    return dict(
        mean=tuple(cfg["mean"]),
        std=tuple(cfg["std"]),
        crop_pct=cfg["crop_pct"],
        interpolation="bicubic" if name == "random" else name,
    )


def _versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in _VERSIONED:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return found


def make(config: Any, info: Any, plan: Any = None) -> dict[str, Any]:
    """The record of a run of `config` on the dataset `info` (`data.DatasetInfo`), whose
    input plan (`data.input_plan`) is `plan` (kept as `input_plan` when given)."""
    hyperparameters = {**registry.hyperparameters(config.model), **model_kwargs(config)}
    return {
        "format": FORMAT,
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "config": plain(config),
        "model": plain(
            {
                "name": config.model,
                "hyperparameters": hyperparameters,
                "image_size": int(config.image_size),
                "num_classes": int(info.num_classes),
                "class_names": list(info.class_names),
            }
        ),
        "preprocessing": plain(
            {**run_preprocessing(config), "input_size": [3, config.image_size, config.image_size]}
        ),
        "data": {
            "dataset": config.dataset,
            "train_split": config.input.train_split,
            "eval_split": config.input.eval_split,
            "num_train": int(info.num_train),
            "num_eval": int(info.num_eval),
        },
        "recipe": plain(
            {
                "total_steps": config.total_steps,
                "total_epochs": config.total_epochs,
                "batch_size": config.batch_size,
                "optimizer": config.optimizer.name,
                "lr": config.optimizer.lr,
                "lr_base_batch": config.optimizer.lr_base_batch,
                "weight_decay": config.optimizer.weight_decay,
                "schedule": config.optimizer.schedule,
                "loss": config.loss,
                "dtype": config.dtype,
                "seed": config.seed,
            }
        ),
        "input_plan": plan.describe() if plan is not None else None,
        "versions": _versions(),
        "resumes": [],
    }


# --- reading ------------------------------------------------------------------------------


def _step_dirs(path: Path) -> list[Path]:
    """Committed step folders under a workdir, its checkpoints/ or a step itself, newest first."""
    if (path / ITEM).is_dir() or path.name.isdigit():
        return [path]
    folder = path / "checkpoints" if (path / "checkpoints").is_dir() else path
    steps = (
        [p for p in folder.iterdir() if p.is_dir() and p.name.isdigit()] if folder.is_dir() else []
    )
    return sorted(steps, key=lambda p: int(p.name), reverse=True)


def _decoded(file: Path) -> dict[str, Any]:
    """The record in `file`; ValueError saying why it is not one (OSError: unreadable)."""
    try:
        record = json.loads(file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"not JSON ({err})") from None
    if (
        not isinstance(record, dict)
        or record.get("format") != FORMAT
        or not isinstance(record.get("config"), dict)
        or not isinstance(record.get("model"), dict)
        or not isinstance(record["model"].get("num_classes"), int)
    ):
        raise ValueError(f"not a run record of format {FORMAT} (an object with config and model)")
    return record


def read(path: str | Path) -> tuple[dict[str, Any], Path] | None:
    """(the record, its step folder) of the newest step under `path` (a workdir, its
    checkpoints/ or one step) that has a good one; None for a run made before records existed.

    A record is a side file: a damaged one never blocks a resume or a tool; it is passed
    over with one `RunRecordWarning` for the next older step's. One the OS will not let us
    read is a `RunRecordError` naming it (it may well be fine).
    """
    for step_dir in _step_dirs(Path(path)):
        file = step_dir / ITEM / FILE
        try:
            if not file.is_file():
                continue
            return _decoded(file), step_dir
        except OSError as err:
            raise RunRecordError(
                f"could not read the run record {file}: {os.strerror(err.errno or 0)}."
            ) from None
        except ValueError as err:
            warnings.warn(
                f"{file} is damaged ({err}); using the record of an older step.",
                RunRecordWarning,
                stacklevel=2,
            )
    return None


def step_metrics(step_dir: Path) -> dict[str, float]:
    """The metrics saved with a step (its eval, when it evaluated); {} if none."""
    try:
        meta = json.loads((step_dir / "meta" / "meta.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    metrics = meta.get("metrics") if isinstance(meta, dict) else None
    return metrics if isinstance(metrics, dict) else {}


# --- comparing ----------------------------------------------------------------------------


def differences(old: dict[str, Any], new: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """{dotted key: (old value, new value)} for keys of `old` whose value `new` changes
    (compared as JSON). Keys new to `new` are not differences: a record written by an
    older version lacks them, and their defaults keep the old behaviour."""
    old_flat, new_flat = flatten(plain(old)), flatten(plain(new))
    return {k: (v, new_flat.get(k)) for k, v in old_flat.items() if new_flat.get(k, v) != v}


def _matches(key: str, names: tuple[str, ...] | list[str]) -> bool:
    return any(key == n or (n.endswith(".") and key.startswith(n)) for n in names)


def _allowed(allow_changes: str) -> list[str]:
    names = [n.strip() for n in str(allow_changes or "").split(",") if n.strip()]
    # "optimizer" allows every optimizer.* key, as "optimizer." does.
    return names + [n + "." for n in names if not n.endswith(".")]


def _describe(changes: dict[str, tuple[Any, Any]]) -> str:
    return ", ".join(f"{k} {json.dumps(a)} -> {json.dumps(b)}" for k, (a, b) in changes.items())


def check_resume(stored: dict[str, Any], config: Any, step: int) -> dict[str, tuple[Any, Any]]:
    """Compares `config` with the `stored` record of the run it would resume at `step`.

    Returns every changed key (old, new) when the resume may go on: the harmless ones
    (`HARMLESS`) and those `config.allow_changes` names ("all" allows any). Raises a
    one-line `RunRecordError` listing the others.
    """
    changes = differences(stored["config"], plain(config))
    changes.pop("allow_changes", None)  # the permission itself is not a setting of the run
    allowed = _allowed(config.get("allow_changes", ""))
    refused = {
        k: v
        for k, v in changes.items()
        if not _matches(k, HARMLESS) and "all" not in allowed and not _matches(k, allowed)
    }
    if refused:
        keys = ",".join(refused)
        raise RunRecordError(
            f"this workdir holds a run (at step {step}) with other settings: "
            f"{_describe(refused)}. Resuming would change what that run means: use a new "
            f"--workdir, or resume anyway with --config.allow_changes={keys}."
        )
    return changes


def describe_allowed(changes: dict[str, tuple[Any, Any]]) -> str:
    """The console line for a resume with allowed changes."""
    return f"resuming with changed settings: {_describe(changes)}"


def resumed(stored: dict[str, Any], fresh: dict[str, Any], step: int, changes) -> dict:
    """The record to save from now on: `fresh` (this run's config), keeping the first run's
    creation time, the history of resumes with this one's changes added, and the W&B run."""
    history = list(stored.get("resumes", []))
    if changes:
        history.append({"step": int(step), "changes": {k: list(v) for k, v in changes.items()}})
    kept = {"wandb": stored["wandb"]} if stored.get("wandb") else {}  # the same W&B run
    return {
        **fresh,
        **kept,
        "created": stored.get("created", fresh["created"]),
        "resumes": history,
    }


_MODEL_KEYS = ("model", "model_kwargs", "image_size")


def model_changes(record: dict[str, Any], config: Any) -> str:
    """How `config`'s model differs from the recorded run's: the model name, its
    hyperparameters and the image size ("" when they are the same)."""
    fresh = plain(config)
    return _describe(
        differences(
            {k: record["config"].get(k) for k in _MODEL_KEYS},
            {k: fresh.get(k) for k in _MODEL_KEYS},
        )
    )


def check_tool_config(record: dict[str, Any], config: Any, where: str) -> None:
    """A `--config` given to a tool beside a run's record must describe the same model:
    the model name, its hyperparameters and the image size (other keys may differ)."""
    changes = model_changes(record, config)
    if changes:
        raise RunRecordError(
            f"--config describes another model than the run in {where} trained: "
            f"{changes}. Leave out --config (the run record has the run's), or fix it."
        )
