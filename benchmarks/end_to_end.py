"""End to end: `main.py` with the full sMLPNet recipe on a folder of ImageNet-like JPEGs.

What a user sees is the slower of the input and the step. This generates a folder of
photo-like JPEGs with sizes drawn like ImageNet's (500x375 and its neighbours; one in ten
above 1000 px), then trains sMLPNet (`configs/smlpnet.py:t`, the official recipe: RandAugment,
random erasing, Mixup/CutMix) for a few steps with each input plan (`input.on_device`: "",
"augment", "resize_and_augment") and each worker count, and reads the run's own
metrics.jsonl: img/s and the input wait (the share of time the loop waited for batches),
leaving out the first log window (compilation). "step alone" is img/s / (1 - wait): what
the step would give with a free input. "train step" is the run's console line on how its
step became ready: compiled, or loaded from the compilation cache a row before filled.

    python benchmarks/end_to_end.py [--workers 0 1 2] [--steps 8] [--batch 32] [--images 400]
    python benchmarks/end_to_end.py --tiny      # a smoke run: small model, 64 px
    python benchmarks/end_to_end.py --modes "" augment     # some input plans only
    python benchmarks/end_to_end.py --workers 0 -1 --budget 200     # -1: the default count

`--workers -1` is `config.input.num_workers`'s default (chosen from the usable cores; the
row names the count it chose). With `--budget`, a row that would start after that many
seconds is recorded as skipped (the prepared GPU run, benchmarks/accelerator_check.sh).

Each row is one `main.py` process; the JAX compilation cache is kept in the output folder so
the rows after the first skip most of the compiling.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
import input_pipeline  # noqa: E402  (ImageNet-like sizes)

from smlp_jax.data import config as data_config  # noqa: E402

LARGE = ((1200, 900), (900, 1200), (1600, 1067), (1024, 768))  # one image in ten
MODES = ("", "augment", "resize_and_augment")
READY = re.compile(
    r"train step ((?:compiled|loaded from the compilation cache) in ([0-9.]+)s \([^)]*\))"
)


def make_folder(root: str, num_images: int, num_classes: int = 4) -> None:
    """Photo-like JPEGs (quality 90), 90% at input_pipeline.SIZES, 10% above 1000 px, with a
    held-out tenth (the folder source's `val_fraction`)."""
    rng = np.random.default_rng(0)
    for i in range(num_images):
        sizes = LARGE if i % 10 == 9 else input_pipeline.SIZES
        width, height = sizes[(i // 10) % len(sizes)]
        coarse = rng.integers(0, 256, (height // 25 + 2, width // 25 + 2, 3), dtype=np.uint8)
        field = np.asarray(Image.fromarray(coarse).resize((width, height), Image.BICUBIC))
        pixels = np.clip(field.astype(np.int32) + rng.integers(-12, 13, field.shape), 0, 255)
        folder = os.path.join(root, f"class_{i % num_classes}")
        os.makedirs(folder, exist_ok=True)
        Image.fromarray(pixels.astype(np.uint8)).save(
            os.path.join(folder, f"{i:05d}.jpg"), quality=90
        )


def run(root: str, out: Path, on_device: str, workers: int, args) -> dict:
    """One main.py run; -> its row (img/s, input wait, step alone, wall seconds)."""
    workdir = out / f"run_{on_device or 'host'}_{workers}"
    flags = {
        "dataset": f"folder:{root}",
        "batch_size": args.batch,
        "eval_batch_size": args.batch,
        "total_steps": args.steps,
        "log_every": max(1, args.steps // 4),
        "eval_every": 0,
        "checkpoint_every": 0,
        "input.num_workers": workers,
        "input.on_device": on_device,
        "input.resize_max": 1024 if on_device == "resize_and_augment" else 640,
        # The recipe's repeated augmentation splits each batch over SPACH's 8 GPUs; one
        # replica here (the cost per image is the same).
        "input.repeated_aug_replicas": 1,
    }
    if args.tiny:
        # DeiT's repeated-augmentation sampler counts epochs in multiples of 256 images.
        flags.update(
            {
                "image_size": 64,
                "model_kwargs.dim": 16,
                "model_kwargs.depths": (1, 1, 1, 1),
                "input.repeated_aug": 0,
            }
        )
    command = [
        sys.executable,
        str(REPO / "main.py"),
        "--config=" + str(REPO / "configs" / "smlpnet.py") + ":t",
        f"--workdir={workdir}",
        *(f"--config.{k}={v}" for k, v in flags.items()),
    ]
    env = dict(os.environ, JAX_COMPILATION_CACHE_DIR=str(out / "jax_cache"))
    start = time.perf_counter()
    result = subprocess.run(command, env=env, capture_output=True, text=True, cwd=REPO)
    wall = time.perf_counter() - start
    if workers == -1:  # the default count, as the run chose it (data/config.py)
        workers = f"-1 ({data_config.worker_count({'num_workers': -1})})"
    if result.returncode != 0:
        return {"on_device": on_device or "none", "workers": workers, "error": result.stderr[-500:]}
    # The console's "train step compiled in 33.4s (tracing ...)" or "loaded from the
    # compilation cache in ...": the rows after the first that run the same step (another
    # worker count) show what the cache saves a second run.
    ready = READY.search(result.stdout)
    records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if "train/img_per_sec" in r][1:]  # after the compiling window
    rate = float(np.mean([r["train/img_per_sec"] for r in train])) if train else float("nan")
    wait = float(np.mean([r["train/input_wait"] for r in train])) if train else float("nan")
    return {
        "on_device": on_device or "none",
        "workers": workers,
        "img_per_s": rate,
        "input_wait": wait,
        "step_alone_img_per_s": rate / max(1e-9, 1 - wait),
        "wall_s": wall,
        "train_step_ready": ready.group(1) if ready else None,
        "train_step_ready_s": float(ready.group(2)) if ready else None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--images", type=int, default=400)
    parser.add_argument("--modes", nargs="+", default=list(MODES), help="input.on_device values")
    parser.add_argument("--tiny", action="store_true", help="small model at 64 px (smoke run)")
    parser.add_argument("--out", default=None, help="folder for runs and results (a temp dir)")
    parser.add_argument("--budget", type=float, default=None, help="seconds; later rows skipped")
    args = parser.parse_args(argv)
    out = Path(args.out or tempfile.mkdtemp(prefix="end_to_end_"))
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as root:
        make_folder(root, args.images)
        print(
            "| input.on_device | workers | img/s | input wait | step alone img/s | wall s | "
            "train step |"
        )
        print("|--|--:|--:|--:|--:|--:|--|", flush=True)
        for workers in args.workers:
            for on_device in args.modes:
                if args.budget is not None and time.perf_counter() - start > args.budget:
                    row = {"on_device": on_device or "none", "workers": workers, "skipped": True}
                else:
                    row = run(root, out, on_device, workers, args)
                rows.append(row)
                (out / "end_to_end.json").write_text(json.dumps(rows, indent=1))  # every row
                workers = row["workers"]
                if row.get("skipped"):
                    print(f"| {row['on_device']} | {workers} | skipped (past --budget) |")
                    continue
                if "error" in row:
                    print(f"| {row['on_device']} | {workers} | error: {row['error'][-200:]!r} |")
                    continue
                print(
                    f"| {row['on_device']} | {workers} | {row['img_per_s']:.1f} | "
                    f"{100 * row['input_wait']:.0f}% | {row['step_alone_img_per_s']:.1f} | "
                    f"{row['wall_s']:.0f} | {row['train_step_ready'] or '-'} |",
                    flush=True,
                )
    return 1 if any("error" in r for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
