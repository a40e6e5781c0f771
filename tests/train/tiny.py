"""A tiny sMLPNet run on the demo digits (16x16, two stages), shared by the trainer tests.

`tiny_overrides()` is the single source: in-process tests apply it to the `demo` config
(`tiny_config`), subprocess tests pass it to main.py as `--config.<key>=<value>` flags
(`tiny_flags`), so both kinds of run train exactly the same thing.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]


def tiny_overrides(data_dir: str, **changes: Any) -> dict[str, Any]:
    overrides = {
        "data_dir": data_dir,
        "model_kwargs.dim": 32,
        "model_kwargs.depths": (1, 1),
        "image_size": 16,
        "batch_size": 64,
        "eval_batch_size": 200,
        "input.eval_split": "test[:400]",
        "total_steps": 12,
        "optimizer.lr": 5e-3,
        "optimizer.lr_base_batch": 0,
        "optimizer.warmup_steps": 2,
        "log_every": 1,
        "eval_every": 0,
        "checkpoint_every": 4,
        # In this process, whatever the machine's cores (the default -1 chooses from them).
        "input.num_workers": 0,
    }
    overrides.update(changes)
    return overrides


def apply_overrides(config, overrides: dict[str, Any]):
    """Sets dotted keys (`"optimizer.lr"`) as `--config.<key>=` flags would; on a locked
    config a misspelt key fails. Returns `config`."""
    for key, value in overrides.items():
        node = config
        *parents, leaf = key.split(".")
        for name in parents:
            node = node[name]
        node[leaf] = value
    return config


def official_config(family: str, variant: str):
    """`configs/<family>.py:<variant>` (an official recipe), locked."""
    sys.path.insert(0, str(REPO))
    return importlib.import_module(f"configs.{family}").get_config(variant)


def demo_config(family: str, overrides: dict[str, Any]):
    """`configs/<family>.py:demo` with `overrides` applied (locked: a typo here fails)."""
    sys.path.insert(0, str(REPO))
    config = importlib.import_module(f"configs.{family}").get_config("demo")
    return apply_overrides(config, overrides)


def tiny_config(data_dir: str, **changes: Any):
    """The sMLPNet `demo` config with `tiny_overrides` applied."""
    return demo_config("smlpnet", tiny_overrides(data_dir, **changes))


def tiny_flags(data_dir: str, **changes: Any) -> list[str]:
    return [f"--config.{k}={v}" for k, v in tiny_overrides(data_dir, **changes).items()]


def main_command(workdir: str | os.PathLike, data_dir: str, *extra: str, **changes) -> list[str]:
    return [
        sys.executable,
        str(REPO / "main.py"),
        "--config=" + str(REPO / "configs" / "smlpnet.py") + ":demo",
        f"--workdir={workdir}",
        *tiny_flags(data_dir, **changes),
        *extra,
    ]


# Cheaper XLA compilation: these programs run a few steps, so compile time dominates.
# XLA CPU's fusion emitters (MLIR) cost most of what is left at optimisation level 0: with
# them off the tiny config's programs compile in 1.0-1.2 s instead of 2.4-2.6 s, and a step
# runs in 18 ms instead of 14, which the suite's runs (at most 120 steps) never pay back.
FAST_COMPILE = (
    "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true "
    "--xla_cpu_use_fusion_emitters=false"
)


def subprocess_env(devices: int = 1, cache_dir: str | None = None) -> dict[str, str]:
    """Environment of a child run: CPU, `devices` fake devices, fast compiles, and a
    persistent compilation cache shared by the children of one test."""
    env = dict(os.environ)
    env["JAX_PLATFORMS"] = "cpu"
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices} {FAST_COMPILE}"
    if cache_dir:
        env["JAX_COMPILATION_CACHE_DIR"] = cache_dir
        env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
        env["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "0"
    env["PYTHONPATH"] = str(REPO)
    return env


def run_main(workdir, data_dir, *extra, devices: int = 1, timeout: float = 300, **changes):
    return subprocess.run(
        main_command(workdir, data_dir, *extra, **changes),
        env=subprocess_env(devices),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
    )


def read_metrics(workdir: str | os.PathLike) -> list[dict]:
    import json

    lines = (Path(workdir) / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def train_losses(workdir: str | os.PathLike) -> dict[int, float]:
    return {m["step"]: m["train/loss"] for m in read_metrics(workdir) if "train/loss" in m}


def grey_class_folder(root, classes=("dark", "mid", "light"), per_class=6):
    """A `folder:` dataset of 3 classes (grey level = class), with train/ and val/."""
    from PIL import Image

    for label, name in enumerate(classes):
        for split, count in (("train", per_class), ("val", 2)):
            (root / split / name).mkdir(parents=True)
            for i in range(count):
                grey = 40 + 80 * label + i
                Image.new("L", (20, 20), grey).save(root / split / name / f"{i}.png")
    return root
