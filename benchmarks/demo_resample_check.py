"""Why `configs/smlpnet.py:finetune_demo` starts at chance: the demo checkpoint at 64 px.

    python benchmarks/demo_resample_check.py [--checkpoint workdirs/demo]

Loads `make demo`'s 32-px checkpoint as `--mode=eval` does for `demo` and for
`finetune_demo` (64 px, `init_resample_to_grid`) and prints: (1) whether the 64-px start
holds exactly `axial_kernel` / `axial_bias` of the checkpoint's grid-tied arrays and every
other array and BatchNorm statistic unchanged; (2) per axial layer, how far linear
interpolation and the exact 2x block map (`kron(K, ones((2, 2))) / 2`) are from the 32-px
layer on a 2x nearest-upsampled input; (3) top-1 on the 1,000 held-out digits: the 32-px
model, the 64-px one on 64-px digits and on 32-px digits upsampled 2x, with BatchNorm on
batch statistics, with the block map instead of interpolation, and a fresh 64-px model.
Results: docs/training.md#fine-tune.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import jax
import numpy as np
from flax import nnx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from configs import smlpnet  # noqa: E402
from smlp_jax import data  # noqa: E402
from smlp_jax.convert.resample import axial_bias, axial_kernel  # noqa: E402
from smlp_jax.train import state as train_state  # noqa: E402
from smlp_jax.train import trainer  # noqa: E402
from smlp_jax.train.sharding import path_name  # noqa: E402


def leaves(tree) -> dict[str, np.ndarray]:
    return {path_name(p): np.asarray(v) for p, v in jax.tree_util.tree_flatten_with_path(tree)[0]}


def config_for(name: str, checkpoint: str):
    config = smlpnet.get_config(name)
    with config.unlocked():
        config.init_from = checkpoint
    return config


def start_state(config) -> dict:
    setup = trainer.build(config)
    return trainer.weights_to_evaluate(config, "", setup, "eval")[0]


def model_with(config, state: dict) -> nnx.Module:
    model = train_state.build_model(config, 10, 0)
    _, params, _, rest = nnx.split(model, nnx.Param, nnx.RngState, ...)
    nnx.replace_by_pure_dict(params, jax.device_get(state["params"]))
    nnx.replace_by_pure_dict(rest, jax.device_get(state["model_state"]))
    nnx.update(model, params, rest)
    return model


def eval_digits(config) -> tuple[np.ndarray, np.ndarray]:
    images, labels = [], []
    for batch in data.create_eval_iterator(config):
        keep = np.asarray(batch.get("mask", np.ones(len(batch["label"]), bool)), bool)
        images.append(np.asarray(batch["image"])[keep])
        labels.append(np.asarray(batch["label"])[keep])
    return np.concatenate(images), np.concatenate(labels)


def top1(model: nnx.Module, images: np.ndarray, labels: np.ndarray, batch_stats=False) -> str:
    model.train() if batch_stats else model.eval()
    forward = nnx.jit(lambda m, x: m(x))
    preds = np.concatenate(
        [
            np.asarray(forward(model, images[i : i + 200])).argmax(-1)
            for i in range(0, len(images), 200)
        ]
    )
    counts = np.bincount(preds, minlength=10)
    return f"{100 * (preds == labels).mean():.1f}% (predictions per class {counts.tolist()})"


def upsampled(images: np.ndarray) -> np.ndarray:
    return np.repeat(np.repeat(images, 2, axis=1), 2, axis=2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", default=str(REPO / "workdirs" / "demo"))
    args = parser.parse_args()
    c32, c64 = config_for("demo", args.checkpoint), config_for("finetune_demo", args.checkpoint)
    s32, s64 = start_state(c32), start_state(c64)
    p32, p64 = leaves(s32["params"]), leaves(s64["params"])
    changed = []
    for name, value in p64.items():
        if value.shape == p32[name].shape:
            if not np.array_equal(value, p32[name]):
                changed.append(name)
            continue
        resample = axial_kernel if name.endswith("kernel") else axial_bias
        error = np.abs(value - resample(p32[name], value.shape)).max()
        print(f"{name} {p32[name].shape} -> {value.shape}: max |start - resampled| {error:.1e}")
    print("arrays of the same shape that differ from the checkpoint:", changed or "none")
    stats32, stats64 = leaves(s32["model_state"]), leaves(s64["model_state"])
    print(
        "BatchNorm statistics unchanged:",
        all(np.array_equal(stats64[k], stats32[k]) for k in stats32),
    )

    rng = np.random.default_rng(0)
    for name in (n for n in p32 if n.endswith("mix_w/kernel") and p32[n].shape[0] > 1):
        kernel = p32[name]
        n = kernel.shape[0]
        x = rng.normal(size=(64, n)).astype(np.float32)
        want = np.repeat(x @ kernel, 2, axis=1)
        x2 = np.repeat(x, 2, axis=1)
        linear = x2 @ axial_kernel(kernel, (2 * n, 2 * n))
        block = x2 @ (np.kron(kernel, np.ones((2, 2), np.float32)) / 2)
        rel = [np.linalg.norm(y - want) / np.linalg.norm(want) for y in (linear, block)]
        print(f"{name} (n={n}): relative error, linear {rel[0]:.3f}, block {rel[1]:.1e}")

    x32, labels = eval_digits(c32)
    x64, labels64 = eval_digits(c64)
    assert (labels == labels64).all()
    m32, m64 = model_with(c32, s32), model_with(c64, s64)
    print("32-px model, 32-px digits:", top1(m32, x32, labels))
    print("64-px start, 64-px digits:", top1(m64, x64, labels))
    print("64-px start, 32-px digits upsampled 2x:", top1(m64, upsampled(x32), labels))
    print("64-px start, BatchNorm on batch statistics:", top1(m64, x64, labels, batch_stats=True))
    blocks = {}
    for name, value in p64.items():
        old = p32[name]
        factor = value.shape[0] // old.shape[0]
        if value.shape == old.shape:
            blocks[name] = value
        elif value.ndim == 2:
            blocks[name] = np.kron(old, np.ones((factor, factor), np.float32)) / factor
        else:
            blocks[name] = np.repeat(old, factor)
    block_state = dict(s64)
    block_state["params"] = jax.tree_util.tree_map_with_path(
        lambda path, _: blocks[path_name(path)], s64["params"]
    )
    m_block = model_with(c64, block_state)
    print("64 px, block map, 64-px digits:", top1(m_block, x64, labels))
    print("64 px, block map, 32-px digits upsampled 2x:", top1(m_block, upsampled(x32), labels))
    print("64 px, fresh initialisation:", top1(train_state.build_model(c64, 10, 0), x64, labels))


if __name__ == "__main__":
    main()
