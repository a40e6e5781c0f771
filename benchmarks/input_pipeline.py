"""Input pipeline throughput: images/s of the full 224 train recipe from a folder of JPEGs.

Generates a folder of photo-like JPEGs at ImageNet-like sizes (500x375, 375x500, 500x333,
...; quality 90), then measures
  1. the per-example transform alone in one thread (decode + RandomResizedCrop + flip +
     RandAugment rand-m9-mstd0.5-inc1 + normalise + random erasing), by stage;
  2. the whole grain pipeline (file read, transforms, batching, worker processes) for each
     worker count.
and prints a table. Usage:

  python benchmarks/input_pipeline.py [--workers 0 1 2] [--images 96] [--batches 12]

An sMLPNet-T train step consumes thousands of 224 images per second on a modern GPU, so the
"per worker" column says how many host cores one accelerator needs.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

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
    stages = []
    for name, fn in (
        ("decode + RandomResizedCrop 224 + normalise", no_ra),
        ("full recipe (+ flip, RandAugment, erasing)", full),
    ):
        start, start_cpu = time.perf_counter(), time.thread_time()
        for r in range(repeats):
            for i, blob in enumerate(blobs):
                fn(blob, np.random.default_rng((r, i)))
        count = repeats * len(blobs)
        wall = 1000 * (time.perf_counter() - start) / count
        stages.append((name, wall, 1000 * (time.thread_time() - start_cpu) / count))
    return stages


def time_pipeline(root: str, workers: int, batch: int, batches: int, threads: int) -> float:
    """Images/s of create_train_iterator after a warm-up batch (worker start-up excluded)."""
    config = ml_collections.ConfigDict(
        dict(dataset=f"folder:{root}", data_dir=None, image_size=224, batch_size=batch,
             eval_batch_size=batch, seed=0)
    )  # fmt: skip
    config.input = data.default_input_config()
    config.input.num_workers = workers
    config.input.num_threads = threads
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
    args = parser.parse_args()
    flags.FLAGS.mark_as_parsed()  # grain worker processes read absl flags
    with tempfile.TemporaryDirectory() as root:
        make_jpeg_folder(root, args.images)
        print(f"{args.images} JPEGs of sizes {sorted(set(SIZES))}, cpus: {os.cpu_count()}, "
              f"load average: {os.getloadavg()[0]:.1f}")  # fmt: skip
        print("\nper-example transform, one thread:")
        print(f"| {'stage':<45} | wall ms/img | img/s | CPU ms/img | img/CPU-s |")
        print(f"|{'-' * 47}|------------:|------:|-----------:|----------:|")
        for name, wall, cpu in time_stages(root, args.repeats):
            rates = f"{1000 / wall:5.0f} | {cpu:10.2f} | {1000 / cpu:9.0f}"
            print(f"| {name:<45} | {wall:11.2f} | {rates} |")
        print(f"\ngrain pipeline, batch {args.batch}, {args.threads} thread(s) per worker:")
        print("| workers | img/s | img/s per worker process |\n|--:|--:|--:|")
        for workers in args.workers:
            rate = time_pipeline(root, workers, args.batch, args.batches, args.threads)
            print(f"| {workers} | {rate:.0f} | {rate / max(workers, 1):.0f} |", flush=True)


if __name__ == "__main__":
    main()
