"""A prepared copy against its originals: host CPU ms per image of the train input, and bytes.

Generates `end_to_end.make_folder`'s photo-like JPEGs (ImageNet-like sizes, one in ten above
1000 px), writes their prepared copy (`smlp_jax.data.prepared.write_copy`: longer side
capped at `--max-side`, JPEG `--quality`), then times in one thread, best of `--repeats`
passes, CPU time per image of
  1. the host recipe (decode + RandomResizedCrop 224 + flip + RandAugment + normalise +
     erasing), and
  2. the host part of `input.on_device="resize_and_augment"` (decode + pad), the originals
     padded to their largest side (1600) and the copy to `--max-side`, as the input plan
     pads each (the canvas sized to the data),
on the originals and on the copy. Usage:

  python benchmarks/prepared_data.py [--images 100] [--max-side 512] [--quality 90]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import end_to_end  # noqa: E402  (the generated folder)

from smlp_jax import data  # noqa: E402
from smlp_jax.data import prepared, transforms  # noqa: E402


def _files(root: str) -> list[str]:
    return sorted(
        os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs if f.endswith(".jpg")
    )


def cpu_ms_per_image(paths: list[str], cfg: dict, repeats: int) -> float:
    """Best-of-`repeats` thread CPU ms per image of the train transform of `cfg` at 224."""
    transform = transforms.TrainTransform(cfg, 224)
    blobs = [open(p, "rb").read() for p in paths]
    passes = []
    for r in range(repeats):
        start = time.thread_time()
        for i, blob in enumerate(blobs):
            transform(blob, np.random.default_rng((r, i)))
        passes.append(1000 * (time.thread_time() - start) / len(blobs))
    return min(passes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--max-side", type=int, default=512)
    parser.add_argument("--quality", type=int, default=90)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        source, copy = os.path.join(tmp, "source"), os.path.join(tmp, "copy")
        end_to_end.make_folder(source, args.images)
        start = time.perf_counter()
        info = prepared.write_copy(source, copy, args.max_side, args.quality)
        print(f"prepared {args.images} images in {time.perf_counter() - start:.1f} s: "
              f"{info['splits']}; load average {os.getloadavg()[0]:.1f}")  # fmt: skip
        largest = max(max(side) for side in end_to_end.LARGE)
        host = data.default_input_config().to_dict()
        resize = dict(host, on_device="resize_and_augment")
        print("| host work per image (CPU ms, one thread) | originals | prepared | ratio |")
        print("|---|--:|--:|--:|")
        for name, original_cfg, copy_cfg in (
            ("host recipe", host, host),
            (
                "device resize: decode + pad",
                dict(resize, resize_max=largest),
                dict(resize, resize_max=args.max_side),
            ),
        ):
            before = cpu_ms_per_image(_files(source), original_cfg, args.repeats)
            after = cpu_ms_per_image(_files(copy), copy_cfg, args.repeats)
            print(f"| {name} | {before:.2f} | {after:.2f} | {before / after:.2f}x |")
        megabytes = [sum(os.path.getsize(p) for p in _files(r)) / 1e6 for r in (source, copy)]
        print(f"| bytes on disk (MB) | {megabytes[0]:.1f} | {megabytes[1]:.1f} | "
              f"{megabytes[0] / megabytes[1]:.2f}x |")  # fmt: skip


if __name__ == "__main__":
    main()
