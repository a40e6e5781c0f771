"""JPEG decoders compared: Pillow (the pipeline's) against simplejpeg, pixels and speed.

Both wrap libjpeg-turbo; the question is whether another binding gives the same pixels
faster. On generated photo-like JPEGs (`input_pipeline.make_jpeg_folder`: ImageNet-like
sizes, quality 90) it decodes each image
  - whole: Pillow `Image.open(...).convert("RGB")` -> numpy, against
    `simplejpeg.decode_jpeg(colorspace="RGB")` (accurate IDCT, fancy upsampling: Pillow's
    defaults);
  - at a reduced DCT scale (1/2, 1/4, 1/8: what the pipeline's `jpeg_draft` asks for when a
    crop is shrunk enough): Pillow `draft("RGB", size)` against simplejpeg's
    `min_width`/`min_height`, which picks the smallest scale at least that size;
and reports whether the arrays are equal (max abs difference, share of equal values) and
the best-of-`--repeats` time per image in one thread.

    python benchmarks/jpeg_decoders.py [--images 48] [--repeats 5]

simplejpeg is not a requirement: `pip install simplejpeg` to run this.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
import time

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import input_pipeline  # noqa: E402  (the generated JPEG folder)


def _pillow(blob: bytes, scale: int) -> np.ndarray:
    img = Image.open(io.BytesIO(blob))
    if scale > 1:
        img.draft("RGB", (img.width // scale, img.height // scale))
    return np.asarray(img.convert("RGB"))


def _simplejpeg(blob: bytes, scale: int) -> np.ndarray:
    import simplejpeg

    if scale == 1:
        return simplejpeg.decode_jpeg(blob, colorspace="RGB")
    height, width = simplejpeg.decode_jpeg_header(blob)[:2]
    return simplejpeg.decode_jpeg(
        blob, colorspace="RGB", min_width=width // scale, min_height=height // scale
    )


def _best_ms(fn, blobs, scale, repeats) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for blob in blobs:
            fn(blob, scale)
        best = min(best, (time.perf_counter() - start) / len(blobs))
    return 1000 * best


def compare(blobs: list[bytes], repeats: int) -> list[dict]:
    rows = []
    for scale in (1, 2, 4, 8):
        diffs, equal, total, shapes_differ = 0, 0, 0, 0
        for blob in blobs:
            a, b = _pillow(blob, scale), _simplejpeg(blob, scale)
            if a.shape != b.shape:
                shapes_differ += 1
                continue
            d = np.abs(a.astype(np.int16) - b.astype(np.int16))
            diffs = max(diffs, int(d.max()))
            equal += int((d == 0).sum())
            total += d.size
        rows.append(
            {
                "scale": f"1/{scale}",
                "shapes_differ": shapes_differ,
                "max_abs_diff": diffs,
                "equal_share": equal / total if total else float("nan"),
                "pillow_ms": _best_ms(_pillow, blobs, scale, repeats),
                "simplejpeg_ms": _best_ms(_simplejpeg, blobs, scale, repeats),
            }
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=48)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    try:
        import simplejpeg
    except ImportError:
        print("simplejpeg is not installed: pip install simplejpeg", file=sys.stderr)
        return 1
    import PIL

    with tempfile.TemporaryDirectory() as root:
        input_pipeline.make_jpeg_folder(root, args.images)
        files = sorted(
            os.path.join(d, f) for d, _, fs in os.walk(os.path.join(root, "train")) for f in fs
        )
        blobs = [open(f, "rb").read() for f in files]  # noqa: SIM115
    print(f"Pillow {PIL.__version__}, simplejpeg {simplejpeg.__version__}; {len(blobs)} JPEGs")
    print("| DCT scale | shapes differ | max abs diff | equal values | Pillow ms | simplejpeg ms |")
    print("|--|--:|--:|--:|--:|--:|")
    for r in compare(blobs, args.repeats):
        print(
            f"| {r['scale']} | {r['shapes_differ']} | {r['max_abs_diff']} | "
            f"{100 * r['equal_share']:.3f}% | {r['pillow_ms']:.2f} | {r['simplejpeg_ms']:.2f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
