"""A 9000 x 9000 image through `predict`'s decoding: time and peak RSS, full-size decode and
resample against the reduced decoding `predict` uses (`transforms.reduced_resize`), and the
whole `predict` command.

    python benchmarks/large_image.py [--model mixer_s16] [--out DIR]

Builds the images with numpy + Pillow in DIR (a one-colour PNG of 258 kB, as issue 35's
236 kB file; a photo-like PNG; a JPEG of it), then runs each measurement in a process of its
own so peak RSS is that measurement's: `EvalTransform(cfg, 224)(data)` (full size, as eval in
training) and `EvalTransform(cfg, 224)(data, reducing_gap=PREDICT_REDUCING_GAP)` (predict's),
then `python -m smlp_jax.tools.predict IMAGE --model MODEL` end to end. Prints one JSON line
per measurement.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

SIDE = 9000

_TRANSFORM = """
import json, resource, sys, time
from smlp_jax.data.config import default_input_config
from smlp_jax.data.transforms import PREDICT_REDUCING_GAP, EvalTransform
transform = EvalTransform(dict(default_input_config("imagenet")), 224)
data = open(sys.argv[1], "rb").read()
gap = PREDICT_REDUCING_GAP if sys.argv[2] == "reduced" else None
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
transform(data, reducing_gap=gap, max_pixels=None)
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps(dict(seconds=round(seconds, 3), peak_rss_mb=round(peak / 1024),
                      added_rss_mb=round((peak - before) / 1024))))
"""

_PREDICT = """
import json, resource, runpy, sys, time
start = time.perf_counter()
sys.argv = ["predict", *sys.argv[1:]]
try:
    runpy.run_module("smlp_jax.tools.predict", run_name="__main__")
except SystemExit as done:
    assert not done.code, done.code
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps(dict(seconds=round(seconds, 2), peak_rss_mb=round(peak / 1024))))
"""


def make_images(folder: Path) -> list[Path]:
    flat = folder / "flat.png"
    Image.new("RGB", (SIDE, SIDE), (10, 120, 200)).save(flat)
    rng = np.random.default_rng(0)
    coarse = Image.fromarray(rng.integers(0, 256, (30, 30, 3), dtype=np.uint8))
    photo = coarse.resize((SIDE, SIDE), Image.BICUBIC)
    photo.save(folder / "photo.png")
    photo.save(folder / "photo.jpg", quality=90)
    return [flat, folder / "photo.png", folder / "photo.jpg"]


def _last_json(command: list[str]) -> dict:
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="mixer_s16")
    parser.add_argument("--out", help="where the images go (default: a temporary folder)")
    args = parser.parse_args()
    folder = Path(args.out or tempfile.mkdtemp(prefix="large_image_"))
    folder.mkdir(parents=True, exist_ok=True)
    for image in make_images(folder):
        size_kb = round(image.stat().st_size / 1000)
        for how in ("full", "reduced"):
            result = _last_json([sys.executable, "-c", _TRANSFORM, str(image), how])
            print(json.dumps(dict(image=image.name, kB=size_kb, decode=how, **result)))
        command = [str(image), "--model", args.model, "--num-classes", "10"]
        result = _last_json([sys.executable, "-c", _PREDICT, *command])
        print(json.dumps(dict(image=image.name, kB=size_kb, predict=args.model, **result)))


if __name__ == "__main__":
    main()
