"""The hardware floor of a train step: its model FLOPs and the fewest HBM bytes a well-fused
step moves, against each chip's peak, counted on the step's jaxpr (nothing is compiled or
allocated, so full-size models run on a CPU in seconds).

    python benchmarks/roofline.py                       # the four models of the GPU checks
    python benchmarks/roofline.py --models smlpnet_b --batch 128 --step-ms smlpnet_b=80.5

The step is the trainer's: forward, backward (the loss of saved_activations.train_loss)
and AdamW, bfloat16 compute, float32 parameters, traced with the accelerator's forms
(`models.backend.forms(platform="gpu")`: XLA's grouped convolution, the lean VJPs, the
sMLP fuse as three matmuls).

- FLOPs: 2 x the multiply-accumulates of its matmuls and convolutions (`models.macs`).
- Minimal bytes ("GEMM-boundary" traffic): every matmul and convolution of the forward
  and the backward reads its operands from HBM and writes its result once, in the dtype
  the step computes them in; everything else (norms, GELU, residual adds, casts,
  statistics, the recomputation of lean VJPs) is taken to be fused into them for free.
  Plus AdamW: per float32 parameter the gradient is written and p, g, m, v read and p, m,
  v written, 8 x 4 bytes. A real step moves more (XLA fuses elementwise work into some
  GEMMs, not all; a statistic needs its own pass), so this is a floor, not an estimate.
- Floor time per chip: max(FLOPs / peak, bytes / bandwidth) (the roofline), and
  FLOPs / peak + bytes / bandwidth (no overlap of the two) beside it. Peaks: the dense
  bf16 figures of `smlp_jax.train.mfu.PEAKS`; bandwidth: the data sheets' HBM figures
  (`BANDWIDTH`).
- `--step-ms model=ms` (a step measured at that batch on the chip `--measured-on`, e.g.
  by benchmarks/accelerator_check.py) adds its ratio to that chip's floor.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from typing import Any

import jax
import jax.numpy as jnp

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import saved_activations  # noqa: E402

from smlp_jax.models import backend, macs  # noqa: E402
from smlp_jax.train import mfu  # noqa: E402

# HBM bandwidth, bytes/s, by chip (NVIDIA data sheets, SXM).
BANDWIDTH = {"h100": 3.35e12, "h200": 4.8e12}
MODELS = (("smlpnet_t", 128), ("smlpnet_b", 128), ("mixer_b16", 128), ("convmixer_768_32", 64))
ADAMW_BYTES_PER_PARAM = 8 * 4
GEMMS = ("dot_general", "conv_general_dilated")


def _nbytes(aval) -> int:
    return math.prod(aval.shape) * jnp.dtype(aval.dtype).itemsize


def gemm_boundary_bytes(jaxpr) -> int:
    """Operand + result bytes of every matmul and convolution in `jaxpr` and inside it."""
    total = 0
    for eqn in jaxpr.eqns:
        if eqn.primitive.name in GEMMS:
            total += sum(_nbytes(v.aval) for v in eqn.invars) + _nbytes(eqn.outvars[0].aval)
        for sub in macs._sub_jaxprs(eqn):
            total += gemm_boundary_bytes(sub)
    return total


def grad_work(loss_fn: Any, args: tuple) -> dict:
    """Parameter count, model FLOPs and GEMM-boundary bytes of `jax.grad(loss_fn)` at the
    abstract `args` (parameters first), counted on its jaxpr. AdamW's update adds no
    matmul: its bytes are `ADAMW_BYTES_PER_PARAM` per parameter, added by the caller."""
    jaxpr = jax.make_jaxpr(jax.grad(loss_fn))(*args).jaxpr
    return {
        "params": sum(math.prod(p.shape) for p in jax.tree.leaves(args[0])),
        "flops": 2 * macs.count_macs(jaxpr),
        "gemm_bytes": gemm_boundary_bytes(jaxpr),
    }


def floor(name: str, batch: int, image_size: int = 224, **model_args: Any) -> dict:
    """FLOPs, minimal bytes and per-chip floor times of one train step (GPU forms)."""
    loss_fn, args = saved_activations.train_loss(
        name, image_size=image_size, batch=batch, **model_args
    )
    with backend.forms(platform="gpu"):
        work = grad_work(loss_fn, args)
    flops, n_params, activation_bytes = work["flops"], work["params"], work["gemm_bytes"]
    total = activation_bytes + ADAMW_BYTES_PER_PARAM * n_params
    row = {
        "model": name, "batch": batch, "image_size": image_size, "params": n_params,
        "tflops": flops / 1e12, "gemm_gb": activation_bytes / 1e9,
        "adamw_gb": ADAMW_BYTES_PER_PARAM * n_params / 1e9, "min_gb": total / 1e9,
    }  # fmt: skip
    for chip, bandwidth in BANDWIDTH.items():
        peak = dict(mfu.PEAKS)[chip]["bfloat16"]
        compute_ms, memory_ms = 1e3 * flops / peak, 1e3 * total / bandwidth
        row[chip] = {
            "compute_ms": compute_ms,
            "memory_ms": memory_ms,
            "floor_ms": max(compute_ms, memory_ms),
            "no_overlap_ms": compute_ms + memory_ms,
            "bound": "memory" if memory_ms > compute_ms else "compute",
        }
    return row


def markdown(rows: list[dict], measured: dict[str, float], chip: str = "h200") -> str:
    head = (
        "| model | batch | TFLOPs/step | min GB/step (GEMM I/O + AdamW) | "
        + " | ".join(f"{c.upper()} floor ms (compute / memory; bound)" for c in BANDWIDTH)
        + f" | measured ms ({chip.upper()}) | x its floor |"
    )
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        chips = " | ".join(
            f"{r[c]['floor_ms']:.1f} ({r[c]['compute_ms']:.1f} / {r[c]['memory_ms']:.1f}; "
            f"{r[c]['bound']})"
            for c in BANDWIDTH
        )
        step = measured.get(r["model"])
        ratio = f"{step / r[chip]['floor_ms']:.1f}x" if step else ""
        lines.append(
            f"| {r['model']} | {r['batch']} | {r['tflops']:.2f} | {r['min_gb']:.1f} "
            f"({r['gemm_gb']:.1f} + {r['adamw_gb']:.1f}) | {chips} | {step or ''} | {ratio} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", help="default: " + " ".join(m for m, _ in MODELS))
    parser.add_argument("--batch", type=int, help="default: 128 (ConvMixer-768/32: 64)")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--step-ms", nargs="*", default=[], metavar="MODEL=MS")
    parser.add_argument("--measured-on", default="h200", choices=sorted(BANDWIDTH))
    parser.add_argument("--json", help="also write the rows here")
    args = parser.parse_args(argv)
    batches = dict(MODELS)
    names = args.models or [m for m, _ in MODELS]
    rows = [floor(n, args.batch or batches.get(n, 128), args.image_size) for n in names]
    measured = {k: float(v) for k, v in (item.split("=", 1) for item in args.step_ms)}
    print(markdown(rows, measured, args.measured_on))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return rows


if __name__ == "__main__":
    main()
