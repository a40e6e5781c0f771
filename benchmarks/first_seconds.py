"""The first seconds: `create_model` and `predict` per family, code trees side by side.

For each model, in fresh processes (nothing compiled or cached beforehand; no persistent
compilation cache), and for each code tree given (e.g. the commit before a change and the
working tree), interleaved model by model so that both see the same machine load:
  - create: seconds of `smlp_jax.create_model(name)` after `import smlp_jax` (with the
    parameters materialised), and the import itself;
  - predict: wall seconds of the whole `python -m smlp_jax.tools.predict --model NAME
    IMAGE` process (import, build, one forward on a 512x384 PNG, top-5 printed).

    python benchmarks/first_seconds.py --tree before=/path/to/old/checkout --tree after=.
    python benchmarks/first_seconds.py --tree after=. --all --no-predict   # every model

Rows go to `--out` (JSON lines) as they are measured, and a markdown table is printed.
`--tiny` runs one tiny model per tree (the CPU smoke test of this script).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

# One registered variant per family: the smallest, or the one a user meets first.
FAMILY_MODELS = (
    "smlpnet_t",
    "mixer_s16",
    "convmixer_768_32",
    "dynamixer_s",
    "vip_s7",
    "asmlp_t",
    "hiremlp_t",
    "raftmlp_s",
    "sparse_mlp_s",
)

_CREATE = """
import json, sys, time
t0 = time.perf_counter()
import jax, smlp_jax
from flax import nnx
t1 = time.perf_counter()
kwargs = json.loads(sys.argv[2])
model = smlp_jax.create_model(sys.argv[1], **kwargs)
jax.block_until_ready(nnx.state(model))
t2 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "create_s": t2 - t1}))
"""


def _env(tree: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.path.abspath(tree)
    env["JAX_PLATFORMS"] = "cpu"
    env["JAX_COMPILATION_CACHE_DIR"] = ""  # nothing persisted between processes
    env.pop("XLA_FLAGS", None)
    return env


def _create(tree: str, name: str, kwargs: dict) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", _CREATE, name, json.dumps(kwargs)],
        env=_env(tree),
        cwd=tree,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def _predict(tree: str, name: str, image: str, kwargs: dict) -> float:
    extra = []
    if "image_size" in kwargs:
        extra = ["--image-size", str(kwargs["image_size"])]
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "smlp_jax.tools.predict", "--model", name, *extra, image],
        env=_env(tree),
        cwd=tree,
        capture_output=True,
        text=True,
        check=True,
    )
    return time.perf_counter() - start


def _photo(folder: str) -> str:
    """A 512x384 RGB PNG (smooth gradients plus noise; what it shows does not matter)."""
    import numpy as np
    from PIL import Image

    y, x = np.mgrid[0:384, 0:512]
    noise = np.random.default_rng(0).integers(0, 40, (384, 512, 3))
    rgb = np.stack([x / 2, y / 1.5, (x + y) / 3.5], axis=-1) % 216 + noise
    path = os.path.join(folder, "photo.png")
    Image.fromarray(rgb.astype(np.uint8)).save(path)
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tree", action="append", required=True, help="LABEL=PATH")
    parser.add_argument("--models", nargs="*", default=list(FAMILY_MODELS))
    parser.add_argument("--all", action="store_true", help="every registered model")
    parser.add_argument("--no-predict", action="store_true")
    parser.add_argument("--out", default="first_seconds.jsonl")
    parser.add_argument("--tiny", action="store_true", help="one tiny model (smoke test)")
    args = parser.parse_args(argv)
    trees = dict(t.split("=", 1) for t in args.tree)
    models, kwargs = args.models, {}
    if args.all:
        sys.path.insert(0, os.path.abspath(next(iter(trees.values()))))
        import smlp_jax

        models = smlp_jax.list_models()
    if args.tiny:
        models = ["smlpnet_t"]
        kwargs = dict(dim=8, depths=(1, 1, 1, 1), image_size=32, num_classes=3)
    rows = []
    with tempfile.TemporaryDirectory() as tmp, open(args.out, "a") as out:
        image = _photo(tmp)
        for name in models:
            for label, tree in trees.items():
                row = {"model": name, "tree": label, **_create(tree, name, kwargs)}
                if not args.no_predict:
                    row["predict_s"] = _predict(tree, name, image, kwargs)
                row["when"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
                rows.append(row)
                out.write(json.dumps(row) + "\n")
                out.flush()
                print(json.dumps(row), flush=True)
    labels = list(trees)
    head = " | ".join(f"create s ({t})" for t in labels)
    if not args.no_predict:
        head += " | " + " | ".join(f"predict s ({t})" for t in labels)
    print(f"\n| model | {head} |\n|---|" + "---:|" * (head.count("|") + 1))
    for name in models:
        by = {r["tree"]: r for r in rows if r["model"] == name}
        cells = [f"{by[t]['create_s']:.1f}" for t in labels]
        if not args.no_predict:
            cells += [f"{by[t]['predict_s']:.1f}" for t in labels]
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
