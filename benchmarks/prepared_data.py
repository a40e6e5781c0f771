"""A prepared copy against its originals: host CPU ms per image and bytes, or what the model sees.

Default mode: generates `end_to_end.make_folder`'s photo-like JPEGs (ImageNet-like sizes, one
in ten above 1000 px), writes their prepared copy (`smlp_jax.data.prepared.write_copy`:
longer side capped at `--max-side`, JPEG `--quality`), then times in one thread, best of
`--repeats` passes, CPU time per image of
  1. the host recipe (decode + RandomResizedCrop 224 + flip + RandAugment + normalise +
     erasing), and
  2. the host part of `input.on_device="resize_and_augment"` (decode + pad), the originals
     padded to their largest side (1600) and the copy to `--max-side`, as the input plan
     pads each (the canvas sized to the data),
on the originals and on the copy.

`--photos` mode, what the model sees from the copy against from the originals:
scikit-image's sample photos (`PHOTOS`, shipped in its wheel; not a project requirement:
`pip install scikit-image`) are written as lossless PNG and as JPEG quality 95 originals
(`--originals`), one class folder per photo as the folder source expects, and copied by
`write_copy` at each of `--qualities` with the cap `--max-side` and a smaller one,
`--small-side` (most sample photos are at most 512 px: a 512 cap only re-encodes them, or
copies a JPEG). For every photo it compares the uint8 224x224 images (before normalisation)
that the model would get from the original and from the copy, through the library's own
functions with `configs/smlpnet.py`'s input settings:
  - eval: `transforms.EvalTransform` (short side to floor(224 / crop_pct 0.875) = 256,
    bicubic, centre crop 224), its normalisation left out;
  - train crops: `transforms.crop_resize` (the RandomResizedCrop's crop + bicubic resize,
    JPEG draft decoding as in training) of the same fixed box given as fractions of the
    image (`CROPS`: 25% and 8%, the RandomResizedCrop's smallest, of its area), so both
    sides show the same content; flip, RandAugment and erasing would act on both alike.
It reports the mean absolute difference (0-255 levels), PSNR (dB) and the share of pixels
with a channel more than 2 levels off, per photo and pooled (all photos' pixels), and what
`write_copy` did to each photo (resized / re-encoded / copied). Usage:

  python benchmarks/prepared_data.py [--images 100] [--max-side 512] [--quality 90]
  python benchmarks/prepared_data.py --photos [--max-side 512] [--small-side 256]
      [--qualities 90 95] [--originals png jpeg] [--out photos.json]
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
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


# --photos: scikit-image's sample photos (colour and grey photographs; its drawings, text
# pages, binary masks and synthetic images left out). The motorcycle is stereo_motorcycle's
# left view. rocket, hubble_deep_field and retina ship as JPEGs: their "lossless" PNG
# originals hold already-decoded JPEG pixels.
PHOTOS = (
    "astronaut",
    "camera",
    "chelsea",
    "coffee",
    "coins",
    "clock",
    "moon",
    "rocket",
    "motorcycle",
    "hubble_deep_field",
    "immunohistochemistry",
    "retina",
    "cell",
    "brick",
    "grass",
    "gravel",
)
ORIGINAL_JPEG_QUALITY = 95  # the JPEG originals: a camera's or a dataset's usual quality
IMAGE_SIZE = 224  # configs/smlpnet.py's
# Train crops, (left, top, right, bottom) as fractions of the image's width and height, off
# centre: a quarter of the area, and 8% (0.283^2), the smallest a RandomResizedCrop
# (scale 0.08-1) takes, where the original's extra resolution could matter most.
CROPS = {"crop 25%": (0.2, 0.3, 0.7, 0.8), "crop 8%": (0.45, 0.2, 0.733, 0.483)}
SUFFIX = {"png": ".png", "jpeg": ".jpg"}
ACTIONS = ("resized", "re-encoded", "copied")  # what write_copy does to an image


def _sample_photos() -> tuple[str, dict[str, np.ndarray]]:
    """(scikit-image's version, {name: uint8 (H, W) or (H, W, 3)}); exits with one line
    without scikit-image."""
    try:
        import skimage
        from skimage import data as samples
    except ImportError:
        sys.exit("--photos needs scikit-image's sample photos: pip install scikit-image")
    photos = {}
    for name in PHOTOS:
        image = samples.stereo_motorcycle()[0] if name == "motorcycle" else getattr(samples, name)()
        if image.dtype != np.uint8:
            raise ValueError(f"skimage.data.{name}: {image.dtype}, expected uint8")
        photos[name] = image
    return skimage.__version__, photos


def _write_originals(photos: dict[str, np.ndarray], root: str, kind: str) -> None:
    """`root/<photo>/<photo>.png|.jpg`: one class per photo, as the folder source reads it."""
    from PIL import Image

    for name, image in photos.items():
        os.makedirs(os.path.join(root, name))
        path = os.path.join(root, name, name + SUFFIX[kind])
        if kind == "png":
            Image.fromarray(image).save(path)
        else:
            Image.fromarray(image).save(path, quality=ORIGINAL_JPEG_QUALITY)


def _views(blob: bytes, cfg: dict) -> dict[str, np.ndarray]:
    """{"eval" and each of CROPS: the uint8 (224, 224, 3) image the model would get}, through
    the library's transforms with the recipe's input settings `cfg`."""
    evaluate = transforms.EvalTransform(cfg, IMAGE_SIZE)
    # Its own resize and centre crop, stopped before normalisation (its last step): the uint8
    # crop, compared in 0-255 levels, not in std units.
    evaluate.normalize = lambda img: np.asarray(img, np.uint8)
    views = {"eval": evaluate(blob)}
    resample = transforms.INTERPOLATIONS[cfg["interpolation"]]  # bicubic in the recipe
    for name, fractions in CROPS.items():
        img = transforms.open_image(blob)
        width, height = img.size
        # Float boxes (Pillow resamples a sub-pixel box): the same content in both images,
        # where `rrc_box` would round each to whole pixels of its own size.
        box = tuple(f * side for f, side in zip(fractions, (width, height, width, height)))
        size = (IMAGE_SIZE, IMAGE_SIZE)
        views[name] = np.asarray(
            transforms.crop_resize(img, box, size, resample, cfg["jpeg_draft"]), np.uint8
        )
    return views


def _difference(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    diff = np.abs(a.astype(np.int32) - b.astype(np.int32))
    return {
        "mad": float(diff.mean()),
        "mse": float(np.square(diff, dtype=np.float64).mean()),
        "over2": float((diff.max(axis=-1) > 2).mean()),  # pixels: any channel
    }


def _compare(photos: dict, originals: dict, copy: str, kind: str, cfg: dict) -> list[dict]:
    """Per photo: what `write_copy` did, the sizes and bytes, and the difference of each view
    (`_views`) of its copy in folder `copy` from that of the original in `originals`
    ({name: (bytes, views)})."""
    rows = []
    for name, image in photos.items():
        blob, views = originals[name]
        copied = name + SUFFIX[kind]  # write_copy keeps a JPEG's name, adds .jpg to others
        if not copied.lower().endswith(prepared.JPEG_SUFFIXES):
            copied += ".jpg"
        with open(os.path.join(copy, name, copied), "rb") as f:
            copy_blob = f.read()
        copy_size = transforms.open_image(copy_blob).size
        if copy_blob == blob:
            action = "copied"
        elif copy_size != (image.shape[1], image.shape[0]):
            action = "resized"
        else:
            action = "re-encoded"
        copy_views = _views(copy_blob, cfg)
        row = {
            "photo": name,
            "size": [image.shape[1], image.shape[0]],
            "copy_size": list(copy_size),
            "action": action,
            "original_bytes": len(blob),
            "copy_bytes": len(copy_blob),
        }
        row.update({view: _difference(views[view], copy_views[view]) for view in views})
        rows.append(row)
    return rows


def _psnr(mse: float) -> float:
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


def _pooled(rows: list[dict]) -> dict[str, dict[str, float]]:
    """Per view, the differences over all photos' pixels (every view is 224x224x3)."""
    return {
        view: {key: float(np.mean([r[view][key] for r in rows])) for key in ("mad", "mse", "over2")}
        for view in ("eval", *CROPS)
    }


def _cells(metrics: dict[str, dict[str, float]]) -> str:
    cells = []
    for view in ("eval", *CROPS):
        m = metrics[view]
        psnr = _psnr(m["mse"])
        cells += [f"{m['mad']:.2f}", "exact" if math.isinf(psnr) else f"{psnr:.1f}",
                  f"{100 * m['over2']:.1f}%"]  # fmt: skip
    return " | ".join(cells)


def _header(first: list[str]) -> str:
    metrics = [f"{view} {m}" for view in ("eval", *CROPS) for m in ("MAD", "PSNR", ">2 lv")]
    rule = "|" + "---|" * len(first) + "--:|" * len(metrics)
    return "| " + " | ".join(first + metrics) + " |\n" + rule


def photos_mode(args: argparse.Namespace) -> None:
    version, photos = _sample_photos()
    from configs import smlpnet  # lazy: ml_collections; the timing mode does not need it

    config = smlpnet.get_config("t")
    cfg = config.input.to_dict()
    assert config.image_size == IMAGE_SIZE
    caps = [args.max_side] + [s for s in (args.small_side,) if s and s != args.max_side]
    started = datetime.datetime.now(datetime.timezone.utc)
    print(f"{len(photos)} skimage {version} sample photos, {started:%Y-%m-%d %H:%M} UTC; "
          f"eval: crop_pct {cfg['crop_pct']} {cfg['eval_interpolation']}; train crops "
          f"{cfg['interpolation']}, jpeg_draft {cfg['jpeg_draft']}")  # fmt: skip
    print()
    print("| photo | size | mode |\n|---|--:|---|")
    for name, image in photos.items():
        print(f"| {name} | {image.shape[1]}x{image.shape[0]} | "
              f"{'RGB' if image.ndim == 3 else 'grey'} |")  # fmt: skip
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for kind in args.originals:
            source = os.path.join(tmp, f"originals_{kind}")
            _write_originals(photos, source, kind)
            originals = {}
            for name in photos:
                with open(os.path.join(source, name, name + SUFFIX[kind]), "rb") as f:
                    blob = f.read()
                originals[name] = (blob, _views(blob, cfg))
            for cap in caps:
                table = []
                for quality in args.qualities:
                    copy = os.path.join(tmp, f"copy_{kind}_{cap}_{quality}")
                    info = prepared.write_copy(source, copy, cap, quality)
                    rows = _compare(photos, originals, copy, kind, cfg)
                    counts = {a: sum(r["action"] == a for r in rows) for a in ACTIONS}
                    # write_copy's own count of what it did agrees with what we read back.
                    assert all(info["splits"]["train"][a] == n for a, n in counts.items()), info
                    pooled = _pooled(rows)
                    run = {"originals": kind, "max_side": cap, "quality": quality}
                    runs.append({**run, "counts": counts, "overall": pooled, "photos": rows})
                    table.append((quality, rows, counts, pooled))
                original = "PNG" if kind == "png" else f"JPEG q{ORIGINAL_JPEG_QUALITY}"
                print(f"\n{original} originals, --max-side {cap}:\n")
                print(_header(["photo", "size", "action", "quality"]))
                for quality, rows, counts, pooled in table:
                    for row in rows:
                        size = "x".join(map(str, row["size"]))
                        if row["action"] == "resized":
                            size += " -> " + "x".join(map(str, row["copy_size"]))
                        print(f"| {row['photo']} | {size} | {row['action']} | {quality} | "
                              f"{_cells(row)} |")  # fmt: skip
                    done = ", ".join(f"{n} {a}" for a, n in counts.items() if n)
                    print(f"| **all {len(rows)}** | | {done} | {quality} | {_cells(pooled)} |")
    print("\nOverall (all photos' pixels pooled):\n")
    print(_header(["originals", "max side", "quality", "resized / re-encoded / copied", "MB"]))
    for run in runs:
        original = "PNG" if run["originals"] == "png" else f"JPEG q{ORIGINAL_JPEG_QUALITY}"
        done = " / ".join(str(run["counts"][a]) for a in ACTIONS)
        megabytes = [
            sum(r[k] for r in run["photos"]) / 1e6 for k in ("original_bytes", "copy_bytes")
        ]
        print(f"| {original} | {run['max_side']} | {run['quality']} | {done} | "
              f"{megabytes[0]:.2f} -> {megabytes[1]:.2f} | {_cells(run['overall'])} |")  # fmt: skip
    if args.out:
        for run in runs:  # PSNR of each: infinite (written null) where the pixels are equal
            for metrics in [run["overall"], *run["photos"]]:
                for view in ("eval", *CROPS):
                    psnr = _psnr(metrics[view]["mse"])
                    metrics[view]["psnr"] = None if math.isinf(psnr) else psnr
        result = {
            "command": " ".join([os.path.basename(sys.executable), *sys.argv]),
            "started_utc": started.isoformat(timespec="seconds"),
            "skimage": version,
            "image_size": IMAGE_SIZE,
            "input": {
                k: cfg[k] for k in ("crop_pct", "eval_interpolation", "interpolation", "jpeg_draft")
            },
            "original_jpeg_quality": ORIGINAL_JPEG_QUALITY,
            "crops": CROPS,
            "runs": runs,
        }
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)
        print(f"\nwrote {args.out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--max-side", type=int, default=512)
    parser.add_argument("--quality", type=int, default=90)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--photos", action="store_true", help="compare the views of skimage's sample photos"
    )
    parser.add_argument(
        "--small-side",
        type=int,
        default=256,
        help="--photos: a second, smaller cap (0: none); most sample photos are at most 512 "
        "px, which --max-side 512 only re-encodes",
    )
    parser.add_argument(
        "--qualities", type=int, nargs="+", default=[90, 95], help="--photos: the copies' JPEG"
    )
    parser.add_argument(
        "--originals",
        nargs="+",
        choices=tuple(SUFFIX),
        default=["png", "jpeg"],
        help=f"--photos: write them as PNG and/or JPEG quality {ORIGINAL_JPEG_QUALITY}",
    )
    parser.add_argument("--out", default=None, help="--photos: write the results as JSON here")
    args = parser.parse_args()
    if args.photos:
        photos_mode(args)
        return
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
