"""Writes tests/fixtures/schedules_official.npz: the learning rate of every epoch (or
update) of each family's official schedule, from the OFFICIAL scheduler classes at the
versions the official repos pin, stepped as each official training loop steps them.

- `vip`: houqb/VisionPermutator (timm 0.4.5's train.py): `create_scheduler(args, opt)`
  with the README command's settings; the loop runs the returned 310 epochs and calls
  `lr_scheduler.step(epoch + 1, metric)` after each.
- `dynamixer`: ziyuwwang/DynaMixer (timm 0.4.12's train.py): the same loop, its settings.
- `hire_mlp`: ggjy/Hire-Wave-MLP.pytorch's train.py (DeiT-style): `create_scheduler`
  from the timm copy it bundles (0.4.13, never released on PyPI: timm 0.4.12 here, whose
  scheduler files are the same release line), `lr_scheduler.step(epoch)` at the end of
  each of the 310 epochs; lr 5e-4 x 2048 / 512 (Hire-MLP-T).
- `as_mlp`: svip-lab/AS-MLP (Swin's lr_scheduler.py + main.py, timm 0.3.2):
  CosineLRScheduler(t_initial=300 n, warmup_t=20 n, t_in_epochs=False) over n updates an
  epoch (n = `AS_MLP_STEPS` here, to keep the fixture small), `step_update(epoch * n +
  idx)` after update idx; lrs 5e-4 / 5e-7 / 5e-6 times 1024 / 512.
- `raft_mlp`: okojoalg/raft-mlp's libs/train.py (pytorch-ignite 0.4.4):
  ConcatScheduler(LinearCyclicalScheduler(0 -> lr, cycle 2 x 5 n),
  CosineAnnealingScheduler(lr -> 1e-5, cycle 300 n), durations [5 n]), called at the
  start of every iteration of the 305 epochs (n = `RAFT_STEPS`).

Each key `<family>/lr` holds the lr each epoch (vip, dynamixer, hire_mlp) or each update
(as_mlp, raft_mlp) ran at; `<family>/steps_per_epoch` the n used.

Set up (once, beside the recipe fixture's pins; schedulers need no torchvision):
    .venv-ref/bin/pip install --no-deps --target .venv-ref/pins/timm-0.4.5 timm==0.4.5
    .venv-ref/bin/pip install --no-deps --target .venv-ref/pins/timm-0.4.12 timm==0.4.12
    .venv-ref/bin/pip install --no-deps --target .venv-ref/pins/ignite-0.4.4 \
        pytorch-ignite==0.4.4
Run:  .venv-ref/bin/python reference/make_schedule_fixture.py   (part of `make fixtures`)
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import types

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
PINS = os.environ.get("SMLP_PINS", os.path.join(HERE, "..", ".venv-ref", "pins"))
OUT = os.path.join(HERE, "..", "tests", "fixtures", "schedules_official.npz")
AS_MLP_STEPS = 5
RAFT_STEPS = 7


def pinned_timm(version: str):
    """timm `version`'s scheduler package, from its pin directory. Only `timm.scheduler`
    is loaded (it needs torch alone): a bare `timm` package stands in for timm's
    `__init__`, whose model registry cannot be imported twice in one process."""
    for name in [m for m in sys.modules if m == "timm" or m.startswith("timm.")]:
        del sys.modules[name]
    root = os.path.join(PINS, f"timm-{version}", "timm")
    package = types.ModuleType("timm")
    package.__path__ = [root]
    sys.modules["timm"] = package
    scope = {}
    with open(os.path.join(root, "version.py")) as f:
        exec(f.read(), scope)
    assert scope["__version__"] == version, f"need timm {version} in {root}"
    return importlib.import_module("timm.scheduler")


def optimizer(lr: float) -> torch.optim.Optimizer:
    return torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=lr)


def timm_args(**settings) -> argparse.Namespace:
    """timm train.py's argparse defaults for what create_scheduler reads, then `settings`."""
    args = dict(
        sched="cosine", epochs=300, lr_noise=None, lr_noise_pct=0.67, lr_noise_std=1.0,
        lr_cycle_mul=1.0, lr_cycle_limit=1, min_lr=1e-5, decay_rate=0.1, warmup_lr=1e-6,
        warmup_epochs=20, cooldown_epochs=10, decay_epochs=30, patience_epochs=10, seed=42,
    )  # fmt: skip
    args.update(settings)
    return argparse.Namespace(**args)


def per_epoch(version: str, lr: float, *, lag: int, **settings) -> np.ndarray:
    """The lr of each epoch the loop runs; `lag` 0 steps with epoch + 1 (timm's train.py),
    1 with epoch (DeiT-style main.py)."""
    scheduler = pinned_timm(version)
    opt = optimizer(lr)
    sched, num_epochs = scheduler.create_scheduler(timm_args(**settings), opt)
    lrs = []
    for epoch in range(num_epochs):
        lrs.append(opt.param_groups[0]["lr"])
        sched.step(epoch + 1 - lag)
    return np.array(lrs, np.float64)


def as_mlp() -> np.ndarray:
    scheduler = pinned_timm("0.3.2")
    scale = 128 * 8 / 512.0  # main.py: each lr times batch x world size / 512
    n = AS_MLP_STEPS
    opt = optimizer(5e-4 * scale)
    sched = scheduler.CosineLRScheduler(
        opt, t_initial=int(300 * n), t_mul=1.0, lr_min=5e-6 * scale,
        warmup_lr_init=5e-7 * scale, warmup_t=int(20 * n), cycle_limit=1, t_in_epochs=False,
    )  # fmt: skip
    lrs = []
    for epoch in range(300):
        for idx in range(n):
            lrs.append(opt.param_groups[0]["lr"])  # the lr this update runs at
            sched.step_update(epoch * n + idx)
    return np.array(lrs, np.float64)


def raft_mlp() -> np.ndarray:
    sys.path.insert(0, os.path.join(PINS, "ignite-0.4.4"))
    param_scheduler = importlib.import_module("ignite.contrib.handlers.param_scheduler")
    n, lr = RAFT_STEPS, 2e-3
    opt = optimizer(lr)
    warmup = param_scheduler.LinearCyclicalScheduler(
        opt, "lr", start_value=0.0, end_value=lr, cycle_size=2 * n * 5
    )
    cosine = param_scheduler.CosineAnnealingScheduler(
        opt, "lr", start_value=lr, end_value=1e-5, cycle_size=n * (305 - 5)
    )
    sched = param_scheduler.ConcatScheduler(schedulers=[warmup, cosine], durations=[n * 5])
    lrs = []
    for _ in range(305 * n):
        sched(None)  # Events.ITERATION_STARTED
        lrs.append(opt.param_groups[0]["lr"])
    return np.array(lrs, np.float64)


def main() -> None:
    out = {
        "vip/lr": per_epoch("0.4.5", 2e-3, lag=0),
        "dynamixer/lr": per_epoch("0.4.12", 2e-3, lag=0),
        "hire_mlp/lr": per_epoch("0.4.12", 5e-4 * 256 * 8 / 512.0, lag=1, warmup_epochs=20),
        "as_mlp/lr": as_mlp(),
        "as_mlp/steps_per_epoch": np.int64(AS_MLP_STEPS),
        "raft_mlp/lr": raft_mlp(),
        "raft_mlp/steps_per_epoch": np.int64(RAFT_STEPS),
    }
    for key in ("vip", "dynamixer", "hire_mlp"):
        assert len(out[f"{key}/lr"]) == 310, (key, len(out[f"{key}/lr"]))
    np.savez_compressed(OUT, **out)
    print(f"wrote {OUT}: " + ", ".join(f"{k} {np.shape(v)}" for k, v in out.items()))


if __name__ == "__main__":
    main()
