"""One prepared accelerator check: train-step throughput and MFU, the depthwise convolution's
paths, the device augmentation; writes a JSON and a markdown table.

    bash benchmarks/accelerator_check.sh            # on a GPU/TPU: full sizes (< 8 min)
    python benchmarks/accelerator_check.py --tiny   # CPU smoke test (CI): tiny models

Rows (full size): sMLPNet-T and -B at batch 128 in bfloat16 and float32, Mixer-B/16 at
128 and ConvMixer-768/32 at 64 (bfloat16), each the best of 5 timed steps after compiling;
MFU is XLA's train-step FLOPs x steps/s over the device's peak (`smlp_jax.train.mfu`).
Then the depthwise 3x3 convolution of the accelerators' path (XLA's grouped convolution)
against the CPU's (the shifted sum, computed on the CPU): max abs difference of the
forward; and the jitted device augmentation of 224 crops (images/s). The script prints
the table and writes `--out` (.json, .md).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from throughput import TINY_IMAGE_SIZE, JaxBench, hyperparameters  # noqa: E402

from smlp_jax import data  # noqa: E402
from smlp_jax.models import depthwise  # noqa: E402
from smlp_jax.train import mfu  # noqa: E402

FULL = (
    ("smlpnet_t", 128, "bfloat16"),
    ("smlpnet_t", 128, "float32"),
    ("smlpnet_b", 128, "bfloat16"),
    ("smlpnet_b", 128, "float32"),
    ("mixer_b16", 128, "bfloat16"),
    ("convmixer_768_32", 64, "bfloat16"),
)
TINY = (("smlpnet_t", 4, "float32"), ("mixer_b16", 4, "float32"))


def train_row(name: str, batch: int, dtype: str, tiny: bool, steps: int) -> dict:
    _, hp = hyperparameters(name, tiny)
    size = TINY_IMAGE_SIZE if tiny else 224
    bench = JaxBench(name, {**hp, "dtype": jnp.dtype(dtype)}, size, batch, 1000)
    bench.compile()
    cost = bench.step.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    flops = float(cost.get("flops", 0.0)) if cost else None
    bench.run_train()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        bench.run_train()
        times.append(time.perf_counter() - start)
    step_s = min(times)
    utilisation = mfu.utilisation(flops, 1.0 / step_s, mfu.total_peak(dtype))
    return {
        "model": name, "batch": batch, "dtype": dtype, "image_size": size,
        "step_ms": 1000 * step_s, "img_per_s": batch / step_s,
        "train_gflops_per_step": None if flops is None else flops / 1e9,
        "mfu": utilisation,
    }  # fmt: skip


def depthwise_row(tiny: bool) -> dict:
    """The accelerators' path (XLA's grouped convolution, `auto` off the CPU) on this device
    against the CPU path (the shifted sum) on the CPU, same inputs."""
    shape = (2, 14, 14, 32) if tiny else (32, 56, 56, 96)
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape, np.float32)
    kernel = rng.standard_normal((3, 3, shape[-1]), np.float32)
    got = np.asarray(jax.jit(depthwise.xla_conv2d)(x, kernel))
    with jax.default_device(jax.devices("cpu")[0]):
        want = np.asarray(jax.jit(depthwise.shifted_conv2d)(x, kernel))
    return {"shape": list(shape), "max_abs_diff": float(np.max(np.abs(got - want)))}


def augment_row(tiny: bool) -> dict:
    batch, size = (4, 32) if tiny else (256, 224)
    cfg = dict(data.default_input_config().to_dict(), augment_on="device")
    augment = jax.jit(data.DeviceAugment(cfg, size))
    crops = jnp.asarray(np.random.default_rng(0).integers(0, 256, (batch, size, size, 3), np.uint8))
    augment(jax.random.key(0), crops).block_until_ready()
    times = []
    for i in range(3):
        start = time.perf_counter()
        augment(jax.random.key(i + 1), crops).block_until_ready()
        times.append(time.perf_counter() - start)
    return {"batch": batch, "image_size": size, "img_per_s": batch / min(times)}


def markdown(result: dict) -> str:
    lines = [
        f"{result['device']} ({result['date']})",
        "",
        "| model | batch | dtype | step ms | img/s | train GFLOPs/step | MFU |",
        "|---|--:|---|--:|--:|--:|--:|",
    ]
    for r in result["train"]:
        flops = "-" if r["train_gflops_per_step"] is None else f"{r['train_gflops_per_step']:.3g}"
        util = "-" if r["mfu"] is None else f"{r['mfu']:.1%}"
        lines.append(
            f"| {r['model']} | {r['batch']} | {r['dtype']} | {r['step_ms']:.1f} | "
            f"{r['img_per_s']:.0f} | {flops} | {util} |"
        )
    dw, aug = result["depthwise"], result["augment"]
    lines += [
        "",
        f"depthwise 3x3 {dw['shape']}: XLA grouped conv here vs CPU shifted sum, max abs diff "
        f"{dw['max_abs_diff']:.2e}",
        f"device augmentation, batch {aug['batch']} of {aug['image_size']} crops: "
        f"{aug['img_per_s']:.0f} img/s",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="tiny models (CPU smoke test)")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--out", default="accelerator_check", help="path stem of .json/.md")
    args = parser.parse_args(argv)
    device = jax.devices()[0]
    result = {
        "device": f"{jax.device_count()} x {device.device_kind} ({device.platform})",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "train": [train_row(*row, args.tiny, args.steps) for row in (TINY if args.tiny else FULL)],
        "depthwise": depthwise_row(args.tiny),
        "augment": augment_row(args.tiny),
    }
    table = markdown(result)
    with open(args.out + ".json", "w") as f:
        json.dump(result, f, indent=1)
    with open(args.out + ".md", "w") as f:
        f.write(table + "\n")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
