"""Input pipeline throughput: images/s of the full 224 train recipe from a folder of JPEGs.

Generates a folder of photo-like JPEGs at ImageNet-like sizes (500x375, 375x500, 500x333,
...; quality 90), then measures
  1. the per-example transform alone in one thread (decode + RandomResizedCrop + flip +
     RandAugment rand-m9-mstd0.5-inc1 + normalise + random erasing), by stage;
  2. the host side of `input.on_device="augment"` (decode + RandomResizedCrop to uint8)
     and of `"resize_and_augment"` (decode + pad alone); the device side:
     the jitted flip + RandAugment + normalise + erasing of a batch of 32 224 crops
     (`data.DeviceAugment`) and the jitted crop resize (`data.resize_batch`), against an
     sMLPNet-T train step at batch 32 on the same device (`--no-train-step` skips that: a
     minute or more on a CPU);
  3. the whole grain pipeline (file read, transforms, batching, worker processes) for each
     worker count: host augmentation, device augmentation, and device augmentation and
     resize.
and prints tables. Targets (issue 21): host CPU <= 1.5 ms per image with device
augmentation; the device-side augmentation <= 10% of the train step. Usage:

  python benchmarks/input_pipeline.py [--workers 0 1 2] [--images 96] [--batches 12]

`--shared-memory both --rounds N` times the pipeline with `input.shared_memory` off and on
in alternating order, N rounds, and prints medians (`--pipeline-only`: that table alone).

An sMLPNet-T train step consumes thousands of 224 images per second on a modern GPU, so the
"per worker" column says how many host cores one accelerator needs.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import flags
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from smlp_jax import data  # noqa: E402
from smlp_jax.data import transforms  # noqa: E402

SIZES = ((500, 375), (375, 500), (500, 333), (500, 400), (640, 480), (333, 500))


def make_jpeg_folder(root: str, num_images: int, num_classes: int = 4) -> None:
    """Photo-like JPEGs: smooth colour fields plus fine noise, so decoding cost is realistic."""
    rng = np.random.default_rng(0)
    for i in range(num_images):
        width, height = SIZES[i % len(SIZES)]
        coarse = rng.integers(0, 256, (height // 25 + 2, width // 25 + 2, 3), dtype=np.uint8)
        field = np.asarray(Image.fromarray(coarse).resize((width, height), Image.BICUBIC))
        noise = rng.integers(-12, 13, field.shape)
        pixels = np.clip(field.astype(np.int32) + noise, 0, 255).astype(np.uint8)
        folder = os.path.join(root, "train", f"class_{i % num_classes}")
        os.makedirs(folder, exist_ok=True)
        Image.fromarray(pixels).save(os.path.join(folder, f"{i:05d}.jpg"), quality=90)


def time_stages(root: str, repeats: int) -> list[tuple[str, float, float]]:
    """(stage, wall ms, CPU ms) per image, one thread, the default imagenet recipe. CPU time
    is what the work costs a core; on a shared machine wall time also counts waiting."""
    cfg = data.default_input_config().to_dict()
    files = sorted(
        os.path.join(d, f) for d, _, fs in os.walk(os.path.join(root, "train")) for f in fs
    )
    blobs = [open(f, "rb").read() for f in files]
    full = transforms.TrainTransform(cfg, 224)
    no_ra = transforms.TrainTransform(dict(cfg, randaugment="", re_prob=0.0, hflip=0.0), 224)
    crop = transforms.TrainTransform(dict(cfg, on_device="augment"), 224)
    decode = transforms.TrainTransform(dict(cfg, on_device="resize_and_augment"), 224)
    stages = []
    for name, fn in (
        ("decode + RandomResizedCrop 224 + normalise", no_ra),
        ("host: full recipe (+ flip, RandAugment, erasing)", full),
        ("device: host part, decode + crop to uint8", crop),
        ("device resize too: host part, decode + pad", decode),
    ):
        start, start_cpu = time.perf_counter(), time.thread_time()
        for r in range(repeats):
            for i, blob in enumerate(blobs):
                fn(blob, np.random.default_rng((r, i)))
        count = repeats * len(blobs)
        wall = 1000 * (time.perf_counter() - start) / count
        stages.append((name, wall, 1000 * (time.thread_time() - start_cpu) / count))
    return stages


def _best_ms(fn, *args, calls: int = 5) -> float:
    jax.block_until_ready(fn(*args))  # compile
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return 1000 * min(times)


def time_device_side(batch: int, train_step: bool) -> tuple[float, float, float | None]:
    """(ms per batch of the jitted device augmentation, of the jitted crop resize from
    500x375 images padded to `resize_max`, ms per sMLPNet-T train step) at 224 on the
    default device; best of 5 (3 for the step) calls after compiling."""
    cfg = dict(data.default_input_config().to_dict(), on_device="augment")
    augment = jax.jit(data.DeviceAugment(cfg, 224))
    rng = np.random.default_rng(0)
    crops = jnp.asarray(rng.integers(0, 256, (batch, 224, 224, 3), dtype=np.uint8))
    augment_ms = _best_ms(augment, jax.random.key(0), crops)
    padded = int(cfg["resize_max"])
    images = jnp.asarray(rng.integers(0, 256, (batch, padded, padded, 3), dtype=np.uint8))
    boxes = jnp.asarray([(40.0, 30.0, 440.0, 330.0)] * batch, jnp.float32)
    sizes = jnp.asarray([(375, 500)] * batch, jnp.int32)
    resize = jax.jit(data.resize_batch, static_argnums=(3, 4))
    resize_ms = _best_ms(resize, images, boxes, sizes, 224, "bicubic")
    step_ms = None
    if train_step:
        from throughput import JaxBench, hyperparameters

        bench = JaxBench("smlpnet_t", hyperparameters("smlpnet_t", False)[1], 224, batch, 1000)
        bench.compile()
        bench.run_train()
        steps = []
        for _ in range(3):
            start = time.perf_counter()
            bench.run_train()
            steps.append(time.perf_counter() - start)
        step_ms = 1000 * min(steps)
    return augment_ms, resize_ms, step_ms


def time_pipeline(
    root: str,
    workers: int,
    batch: int,
    batches: int,
    threads: int,
    on_device: str = "",
    shared_memory: bool = True,
) -> float:
    """Images/s of create_train_iterator after a warm-up batch (worker start-up excluded);
    `shared_memory`: `input.shared_memory` (workers stack batches into shared memory)."""
    config = ml_collections.ConfigDict(
        dict(dataset=f"folder:{root}", data_dir=None, image_size=224, batch_size=batch,
             eval_batch_size=batch, seed=0)
    )  # fmt: skip
    config.input = data.default_input_config()
    config.input.num_workers = workers
    config.input.num_threads = threads
    config.input.on_device = on_device
    config.input.shared_memory = shared_memory
    iterator = data.create_train_iterator(config, process_index=0, process_count=1)
    next(iterator)
    start = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    rate = batches * batch / (time.perf_counter() - start)
    iterator.close()  # stop read-ahead before the folder is deleted
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--images", type=int, default=96)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--batches", type=int, default=12)
    parser.add_argument("--threads", type=int, default=1, help="threads per worker")
    parser.add_argument("--repeats", type=int, default=2, help="passes for the stage timing")
    parser.add_argument("--no-train-step", action="store_true", help="skip the train step")
    parser.add_argument(
        "--shared-memory",
        choices=("on", "off", "both"),
        default="on",
        help="input.shared_memory for worker processes; both: off and on interleaved",
    )
    parser.add_argument("--rounds", type=int, default=1, help="pipeline rounds (medians)")
    parser.add_argument("--pipeline-only", action="store_true", help="only the grain table")
    args = parser.parse_args()
    flags.FLAGS.mark_as_parsed()  # grain worker processes read absl flags
    with tempfile.TemporaryDirectory() as root:
        make_jpeg_folder(root, args.images)
        print(f"{args.images} JPEGs of sizes {sorted(set(SIZES))}, cpus: {os.cpu_count()}, "
              f"load average: {os.getloadavg()[0]:.1f}")  # fmt: skip
        if not args.pipeline_only:
            print_stages_and_device_side(root, args)
        print_pipeline(root, args)


def print_pipeline(root: str, args: argparse.Namespace) -> None:
    """The grain table: img/s per worker count and placement, the median of `--rounds`
    rounds; with `--shared-memory both`, off and on alternate, and which goes first too, so
    that a shared machine's load falls on both alike."""
    settings = {"on": (True,), "off": (False,), "both": (False, True)}[args.shared_memory]
    rates: dict[tuple, list[float]] = {}
    for round_ in range(args.rounds):
        for workers in args.workers:
            for on_device in data.input_plan.ON_DEVICE:
                order = settings if round_ % 2 == 0 else settings[::-1]
                for shared in order if workers else order[:1]:
                    rate = time_pipeline(
                        root, workers, args.batch, args.batches, args.threads, on_device, shared
                    )
                    rates.setdefault((workers, on_device, shared), []).append(rate)
                    print(f"  round {round_}: {workers} workers, {on_device or 'none'}, "
                          f"shared memory {shared}: {rate:.0f} img/s, "
                          f"load {os.getloadavg()[0]:.1f}", flush=True)  # fmt: skip
    print(f"\ngrain pipeline, batch {args.batch}, {args.threads} thread(s) per worker, "
          f"median of {args.rounds} round(s):")  # fmt: skip
    print("| workers | on_device | shared memory | img/s | img/s per worker process | rounds |")
    print("|--:|--|--|--:|--:|--|")
    for (workers, on_device, shared), values in rates.items():
        rate = float(np.median(values))
        shm = ("on" if shared else "off") if workers else "-"
        every = ", ".join(f"{v:.0f}" for v in values)
        print(f"| {workers} | {on_device or 'none'} | {shm} | {rate:.0f} | "
              f"{rate / max(workers, 1):.0f} | {every} |")  # fmt: skip


def print_stages_and_device_side(root: str, args: argparse.Namespace) -> None:
    """The per-example stage table and the device-side table."""
    print("\nper-example transform, one thread:")
    print(f"| {'stage':<50} | wall ms/img | img/s | CPU ms/img | img/CPU-s |")
    print(f"|{'-' * 52}|------------:|------:|-----------:|----------:|")
    for name, wall, cpu in time_stages(root, args.repeats):
        rates = f"{1000 / wall:5.0f} | {cpu:10.2f} | {1000 / cpu:9.0f}"
        print(f"| {name:<50} | {wall:11.2f} | {rates} |")
    augment_ms, resize_ms, step_ms = time_device_side(args.batch, not args.no_train_step)
    device = jax.devices()[0].device_kind
    print(f"\ndevice side ({device}), batch {args.batch} of 224 crops:")
    print("| device augmentation ms/batch | crop resize ms/batch | sMLPNet-T train step ms "
          "| fraction (augmentation / + resize) |")  # fmt: skip
    print("|--:|--:|--:|--:|")
    fraction = "-"
    if step_ms:
        fraction = f"{augment_ms / step_ms:.1%} / {(augment_ms + resize_ms) / step_ms:.1%}"
    step = f"{step_ms:.0f}" if step_ms else "-"
    print(f"| {augment_ms:.1f} | {resize_ms:.1f} | {step} | {fraction} |", flush=True)


if __name__ == "__main__":
    main()
