"""One prepared accelerator check: train-step throughput and MFU, the depthwise convolution's
paths, the device augmentation; writes a JSON and a markdown table.

    bash benchmarks/accelerator_check.sh            # on a GPU/TPU: after the peer check
    python benchmarks/accelerator_check.py --tiny   # CPU smoke test (CI): tiny models

Sections, cheapest first: the depthwise 3x3 convolution of the accelerators' path (XLA's
grouped convolution) against the CPU's (the shifted sum, computed on the CPU): max abs
difference of the forward; the jitted device augmentation of 224 crops (images/s); train
steps (full size: sMLPNet-T and -B at batch 128, Mixer-B/16 at 128 and ConvMixer-768/32
at 64 in bfloat16, then sMLPNet-T and -B in float32), each the best of 5 timed steps
after compiling, MFU = the train step's model FLOPs x steps/s over the device's peak
(`smlp_jax.train.mfu`); the grain input pipeline's images/s from a folder of 500x375-like
JPEGs with host augmentation, device augmentation, and device augmentation and resize
(benchmarks/input_pipeline.py). The JSON and
the table (`--out` .json, .md) are written again after every row, so a run cut off by
its time limit keeps what it measured; rows past `--budget` seconds are skipped, and a
row that fails records its error and the check goes on.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

import flax
import jax
import jax.numpy as jnp
import numpy as np
from absl import flags

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import input_pipeline  # noqa: E402
from throughput import TINY_IMAGE_SIZE, JaxBench, hyperparameters  # noqa: E402

from smlp_jax import data  # noqa: E402
from smlp_jax.models import depthwise  # noqa: E402
from smlp_jax.train import mfu  # noqa: E402

FULL = (
    ("smlpnet_t", 128, "bfloat16"),
    ("smlpnet_b", 128, "bfloat16"),
    ("mixer_b16", 128, "bfloat16"),
    ("convmixer_768_32", 64, "bfloat16"),
    ("smlpnet_t", 128, "float32"),
    ("smlpnet_b", 128, "float32"),
)
TINY = (("smlpnet_t", 4, "float32"), ("mixer_b16", 4, "float32"))
# (JPEGs, batch, timed batches, worker counts) of the input pipeline section.
PIPELINE_FULL = (256, 64, 24, (0, 8))
PIPELINE_TINY = (8, 4, 2, (0,))
MODES = data.input_plan.ON_DEVICE  # config.input.on_device: "", "augment", "resize_and_augment"


def train_row(name: str, batch: int, dtype: str, tiny: bool, steps: int) -> dict:
    _, hp = hyperparameters(name, tiny)
    size = TINY_IMAGE_SIZE if tiny else 224
    bench = JaxBench(name, {**hp, "dtype": jnp.dtype(dtype)}, size, batch, 1000)
    bench.compile(forward_too=False)
    flops = mfu.step_flops(bench.train_fn, bench.train_state, bench.images, bench.labels)
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
    cfg = dict(data.default_input_config().to_dict(), on_device="augment")
    augment = jax.jit(data.DeviceAugment(cfg, size))
    crops = jnp.asarray(np.random.default_rng(0).integers(0, 256, (batch, size, size, 3), np.uint8))
    augment(jax.random.key(0), crops).block_until_ready()
    times = []
    for i in range(3):
        start = time.perf_counter()
        augment(jax.random.key(i + 1), crops).block_until_ready()
        times.append(time.perf_counter() - start)
    return {"batch": batch, "image_size": size, "img_per_s": batch / min(times)}


def pipeline_rows(tiny: bool) -> list[dict]:
    """Images/s of the grain train pipeline (file read, decode, crop, the rest of the recipe
    on the host or not, batching) for each worker count, host and device augmentation."""
    images, batch, batches, workers = PIPELINE_TINY if tiny else PIPELINE_FULL
    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()  # grain's worker processes read absl flags
    rows, platforms = [], os.environ.get("JAX_PLATFORMS")
    os.environ["JAX_PLATFORMS"] = "cpu"  # grain's workers import jax: not on the accelerator
    try:
        with tempfile.TemporaryDirectory() as root:
            input_pipeline.make_jpeg_folder(root, images)
            for count in workers:
                for on_device in MODES:
                    rate = input_pipeline.time_pipeline(root, count, batch, batches, 1, on_device)
                    rows.append({"workers": count, "on_device": on_device or "none",
                                 "batch": batch, "img_per_s": rate})  # fmt: skip
    finally:
        if platforms is None:
            os.environ.pop("JAX_PLATFORMS")
        else:
            os.environ["JAX_PLATFORMS"] = platforms
    return rows


def markdown(result: dict) -> str:
    lines = [
        f"{result['device']} ({result['date']})",
        "",
        "| model | batch | dtype | step ms | img/s | train GFLOPs/step | MFU |",
        "|---|--:|---|--:|--:|--:|--:|",
    ]
    for r in result["train"]:
        if "error" in r:
            lines.append(f"| {r['model']} | {r['batch']} | {r['dtype']} | {r['error']} |||||")
            continue
        flops = "-" if r["train_gflops_per_step"] is None else f"{r['train_gflops_per_step']:.3g}"
        util = "-" if r["mfu"] is None else f"{r['mfu']:.1%}"
        lines.append(
            f"| {r['model']} | {r['batch']} | {r['dtype']} | {r['step_ms']:.1f} | "
            f"{r['img_per_s']:.0f} | {flops} | {util} |"
        )
    dw, aug = result.get("depthwise"), result.get("augment")
    lines.append("")
    if dw and "error" not in dw:
        lines.append(
            f"depthwise 3x3 {dw['shape']}: XLA grouped conv here vs CPU shifted sum, max abs "
            f"diff {dw['max_abs_diff']:.2e}"
        )
    if aug and "error" not in aug:
        lines.append(
            f"device augmentation, batch {aug['batch']} of {aug['image_size']} crops: "
            f"{aug['img_per_s']:.0f} img/s"
        )
    rows = result.get("pipeline") or []
    if rows and "error" not in rows[0]:
        lines += ["", "| input pipeline workers | on_device | img/s |", "|--:|--|--:|"]
        lines += [f"| {r['workers']} | {r['on_device']} | {r['img_per_s']:.0f} |" for r in rows]
    errors = [
        f"{k}: {v['error']}" for k, v in result.items() if isinstance(v, dict) and "error" in v
    ]
    errors += [f"pipeline: {rows[0]['error']}"] if rows and "error" in rows[0] else []
    lines += [f"error in {e}" for e in errors]
    return "\n".join(lines)


def _attempt(section, *args):
    """`section(*args)`, or {"error": its one-line message} (an OOM, a missing backend)."""
    try:
        return section(*args)
    except Exception as err:  # noqa: BLE001 - one failed row must not lose the others
        return {"error": f"{type(err).__name__}: {str(err).splitlines()[0][:200]}"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="tiny models (CPU smoke test)")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--out", default="accelerator_check", help="path stem of .json/.md")
    parser.add_argument("--budget", type=float, default=420.0, help="seconds; later rows skip")
    args = parser.parse_args(argv)
    start = time.monotonic()
    device = jax.devices()[0]
    result = {
        "device": f"{jax.device_count()} x {device.device_kind} ({device.platform})",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "versions": {"jax": jax.__version__, "flax": flax.__version__},
        "train": [],
    }

    def save(section: str) -> None:
        with open(args.out + ".json", "w") as f:
            json.dump(result, f, indent=1)
        with open(args.out + ".md", "w") as f:
            f.write(markdown(result) + "\n")
        print(f"[{time.monotonic() - start:5.0f} s] {section} done", file=sys.stderr, flush=True)

    result["depthwise"] = _attempt(depthwise_row, args.tiny)
    save("depthwise")
    result["augment"] = _attempt(augment_row, args.tiny)
    save("augment")
    for name, batch, dtype in TINY if args.tiny else FULL:
        if time.monotonic() - start > args.budget:
            row = {"error": f"skipped: past the {args.budget:.0f} s budget"}
        else:
            row = _attempt(train_row, name, batch, dtype, args.tiny, args.steps)
        result["train"].append({"model": name, "batch": batch, "dtype": dtype, **row})
        save(f"{name} {dtype}")
    pipeline = _attempt(pipeline_rows, args.tiny)
    result["pipeline"] = [pipeline] if isinstance(pipeline, dict) else pipeline
    save("pipeline")
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
