"""Depthwise convolution implementations side by side: time and train-step memory.

The program: a stack of `--depth` residual blocks `x -> x + relu(dwconv_k(x))` on a
`(batch, size, size, channels)` input (default 8 x 32 x 32 x 768: ConvMixer-768/32's
activations at 224 px, batch 8), for each kernel size k. Per implementation:

  fwd ms     the jitted forward, median of `--repeats` calls after one warm-up
  train ms   value and gradient w.r.t. the input and every kernel, jitted, likewise
  XLA MiB    temporaries of the compiled train step (`compiled.memory_analysis()`)
  max err    largest |kernel gradient - the first implementation's| / its max |.|: a check

Implementations:
  shift      `depthwise.shifted_conv2d`: k*k shifted multiply-adds with a hand-written VJP
             (what `DepthwiseConv(impl="auto")` runs on CPU)
  shift_unchunked  the same, its kernel gradient one tap at a time over the whole batch
             (`chunk_bytes` unbounded: the form before the seventh round of
             benchmarks/README.md)
  shift_unstored   the same, its output not stored (`xla_cpu.options(depthwise_output=False)`:
             XLA CPU may recompute it in each consumer; the form before the seventh round)
  autodiff   the same shifted sum differentiated by JAX (`custom_vjp=False`): the model's
             form until the VJP (XLA stores one shifted input copy per tap for the backward)
  xla        `depthwise.xla_conv2d`, `lax.conv_general_dilated(feature_group_count=C)`
             (what "auto" runs off CPU)
  torch      `nn.Conv2d(groups=C)` eager on NCHW, forward under `inference_mode` and
             `backward()` for train (only when torch is installed; no XLA memory column)

  python benchmarks/depthwise.py [--kernel-sizes 3 7 9] [--impls shift autodiff xla torch]

Depth 1 by default: with nothing between two depthwise convolutions (depth >= 2) XLA CPU
fuses the first into the second's loop and the 2-layer k=9 forward measured ~10x a single
layer's (0.9-1.0 s vs 0.09 s), a pattern no model here has (a BatchNorm or matmul sits
between their depthwise convolutions).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from throughput import machine_header  # noqa: E402

from smlp_jax.models import depthwise, xla_cpu  # noqa: E402

# impl -> (convolution, the xla_cpu switches it is traced under)
JAX_IMPLS = {
    "shift": (depthwise.shifted_conv2d, {}),
    # the forms before the seventh round of benchmarks/README.md
    "shift_unchunked": (
        lambda x, k: depthwise.shifted_conv2d(x, k, chunk_bytes=1 << 62),
        {},
    ),
    "shift_unstored": (depthwise.shifted_conv2d, {"depthwise_output": False}),
    "autodiff": (lambda x, k: depthwise.shifted_conv2d(x, k, custom_vjp=False), {}),
    "xla": (depthwise.xla_conv2d, {}),
}


def _median_ms(fn, repeats: int) -> float:
    """Median wall time of `fn()` (JAX results are waited for; torch runs eagerly)."""
    jax.block_until_ready(fn())  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def jax_row(impl: str, x, kernels, repeats: int):
    conv, switches = JAX_IMPLS[impl]

    def forward(kernels, x):
        for kernel in kernels:
            x = x + jax.nn.relu(conv(x, kernel))
        return x

    def loss(kernels, x):
        return jnp.mean(forward(kernels, x) ** 2)

    with xla_cpu.options(**switches):  # read when traced, so only lowering needs it
        fwd = jax.jit(forward).lower(kernels, x).compile()
        train = jax.jit(jax.value_and_grad(loss, argnums=(0, 1))).lower(kernels, x).compile()
    mib = train.memory_analysis().temp_size_in_bytes / 2**20
    fwd_ms = _median_ms(lambda: fwd(kernels, x), repeats)
    train_ms = _median_ms(lambda: train(kernels, x), repeats)
    grads = np.stack([np.asarray(g) for g in train(kernels, x)[1][0]])
    return fwd_ms, train_ms, mib, grads


def torch_row(x, kernels, repeats: int):
    import torch

    xt = torch.from_numpy(np.asarray(x).transpose(0, 3, 1, 2).copy())
    weights = [
        torch.from_numpy(np.asarray(k).transpose(2, 0, 1)[:, None].copy()).requires_grad_()
        for k in kernels
    ]
    k = kernels[0].shape[0]
    pad = "same" if k % 2 else [(k - 1) // 2, k // 2]  # even k: extra pixel after, as ours

    def forward(x):
        for w in weights:
            xin = x if isinstance(pad, str) else torch.nn.functional.pad(x, pad * 2)
            y = torch.nn.functional.conv2d(
                xin, w, padding=pad if isinstance(pad, str) else 0, groups=x.shape[1]
            )
            x = x + torch.relu(y)
        return x

    def infer():
        with torch.inference_mode():
            forward(xt)

    def train():
        for w in weights:
            w.grad = None
        xg = xt.clone().requires_grad_()
        (forward(xg) ** 2).mean().backward()

    fwd_ms, train_ms = _median_ms(infer, repeats), _median_ms(train, repeats)
    grads = np.stack([w.grad[:, 0].numpy().transpose(1, 2, 0) for w in weights])
    return fwd_ms, train_ms, None, grads


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--kernel-sizes", type=int, nargs="+", default=[3, 7])
    p.add_argument("--impls", nargs="+", default=["shift", "autodiff", "xla", "torch"])
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--channels", type=int, default=768)
    p.add_argument("--depth", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)
    unknown = set(args.impls) - {*JAX_IMPLS, "torch"}
    if unknown:
        p.error(f"unknown --impls {sorted(unknown)}; choose from {[*JAX_IMPLS, 'torch']}")
    for key, value in machine_header().items():
        print(f"# {key}: {value}")
    print(
        f"# stack of {args.depth} x (x + relu(dwconv(x))), input "
        f"({args.batch}, {args.size}, {args.size}, {args.channels}), float32"
    )
    print("| k | impl | fwd ms | train ms | XLA train MiB | max err (kernel grad) |")
    print("|---|---|---|---|---|---|")
    rows = []
    for k in args.kernel_sizes:
        keys = jax.random.split(jax.random.PRNGKey(k), args.depth + 1)
        x = jax.random.normal(keys[0], (args.batch, args.size, args.size, args.channels))
        kernels = [
            jax.random.normal(key, (k, k, args.channels)) / k for key in keys[1:]
        ]  # ~unit gain per layer, so the gradients stay O(1) through the stack
        reference = None
        for impl in args.impls:
            try:
                if impl == "torch":
                    fwd_ms, train_ms, mib, grads = torch_row(x, kernels, args.repeats)
                else:
                    fwd_ms, train_ms, mib, grads = jax_row(impl, x, kernels, args.repeats)
            except ImportError:
                print(f"| {k} | {impl} | torch not installed | | | |")
                continue
            except Exception as err:  # noqa: BLE001 - e.g. out of memory: report, go on
                print(f"| {k} | {impl} | failed: {str(err).splitlines()[0][:80]} | | | |")
                continue
            if reference is None:
                reference = grads
            err = float(np.max(np.abs(grads - reference)) / np.max(np.abs(reference)))
            mib_text = "-" if mib is None else f"{mib:.0f}"
            print(f"| {k} | {impl} | {fwd_ms:.1f} | {train_ms:.1f} | {mib_text} | {err:.1e} |")
            sys.stdout.flush()
            row = dict(k=k, impl=impl, fwd_ms=fwd_ms, train_ms=train_ms, xla_mib=mib, err=err)
            rows.append(row)
    return rows


if __name__ == "__main__":
    from smlp_jax.tools import hugepages

    # As main.py trains (smlp_jax/tools/hugepages.py); the torch row shares the process,
    # so it runs under the tunable too (its model train step measured ~5% slower with it).
    hugepages.reexec_with_hugepages()
    main()
