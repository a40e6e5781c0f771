"""Where a CPU train step's time goes, JAX beside PyTorch: GEMMs against everything else.

A library user's train step (benchmarks/throughput.py's: optax / torch AdamW, float32,
random 224 images) of one model, profiled for a few steps in each library, each in its own
process: JAX with `jax.profiler` (the XLA CPU ops on its compute threads), PyTorch with
`torch.profiler` (each aten op's own CPU time). The ops are summed by kind:

- GEMM: XLA's `dot` ops and its YNNPACK/XNNPACK/oneDNN fusions (XLA CPU hands dots, with
  what it fuses into them, to these libraries); aten's mm/addmm/bmm/baddbmm (what `Linear`
  and `matmul` reach);
- convolution: XLA's `convolution`; aten's (mkldnn) convolution and its backward (for a
  model written with 1x1 convolutions, e.g. the official sMLPNet's axial mixes, fuse and
  stems, these are GEMMs too);
- copies and layout changes: XLA's `copy`/`transpose`/concatenate/slice ops, among them
  XLA CPU's `copy_*_fusion`s, elementwise loops (a GELU, its backward) that write their
  result in the layout the next dot wants; aten's copy_/clone/contiguous/cat;
- the rest: every other op (XLA's loop fusions and reductions: norms, GELU, the
  depthwise shifted sums, AdamW; aten's elementwise, norm and optimizer kernels).

Both are "time inside ops": XLA may run two ops at once on its two threads, and an op's
time includes its own inner threads, so the kinds are read as shares and as each library's
GEMM milliseconds a step, beside the step's wall time.

    .venv-ref/bin/python benchmarks/cpu_step_account.py --model smlpnet_t --batch 8
    python benchmarks/cpu_step_account.py --tiny --no-torch     # the smoke run (CI)
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
KINDS = ("GEMM", "convolution", "copies and layout changes", "the rest")

# XLA CPU op names (their base, without the ".N" suffix) by kind.
_XLA = (
    ("GEMM", re.compile(r"^(dot|.*onednn.*|.*[xy]nn.*|.*matmul.*|custom-call)$")),
    ("convolution", re.compile(r"^convolution")),
    (
        "copies and layout changes",
        re.compile(r"^(copy|transpose|concatenate|slice|dynamic-slice|pad)"),
    ),
)
# aten op names by kind (self CPU time).
_TORCH = (
    ("GEMM", re.compile(r"^aten::(mm|addmm|bmm|baddbmm|_addmm_activation|matmul)$")),
    ("convolution", re.compile(r"convolution")),
    ("copies and layout changes", re.compile(r"^aten::(copy_|clone|contiguous|cat|_to_copy)$")),
)
# XLA CPU trace events that are not ops (the executor, the thread pool, transfers), and
# control flow, whose span holds its body's ops (counted themselves).
_NOT_OPS = ("ThunkExecutor", "SlinkyThreadPool", "end: ", "H2D", "D2H", "while", "conditional")


def _kind(name: str, table) -> str:
    for kind, pattern in table:
        if pattern.search(name):
            return kind
    return "the rest"


def _account(times: dict[str, float], table) -> dict:
    """{op: ms a step} -> ms a step by kind, and the top ops."""
    by_kind = dict.fromkeys(KINDS, 0.0)
    for name, ms in times.items():
        by_kind[_kind(name, table)] += ms
    top = sorted(times.items(), key=lambda kv: -kv[1])[:8]
    return {"by_kind": by_kind, "top": [[n, round(ms, 2)] for n, ms in top]}


def _wall_seconds(step, steps: int) -> float:
    """Seconds a call of `step`, the mean of `steps` after two warm-up calls."""
    for _ in range(2):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - start) / steps


def jax_side(model: str, batch: int, steps: int, tiny: bool) -> dict:
    import jax

    sys.path.insert(0, str(REPO / "benchmarks"))
    import cpu_trace_ops  # its trace reader
    import throughput

    _, hp = throughput.hyperparameters(model, tiny)
    size = 32 if tiny else 224
    bench = throughput.JaxBench(model, hp, size, batch, 10 if tiny else 1000)
    bench.compile(train=True, forward_too=False)
    wall = _wall_seconds(bench.run_train, steps)
    with tempfile.TemporaryDirectory() as trace_dir:
        with jax.profiler.trace(trace_dir, create_perfetto_trace=True):
            for _ in range(steps):
                bench.run_train()
        events = cpu_trace_ops.load_trace(Path(trace_dir))
    threads = {
        (e["pid"], e["tid"]): e["args"]["name"]
        for e in events
        if e.get("ph") == "M" and e["name"] == "thread_name"
    }
    times: dict[str, float] = collections.defaultdict(float)
    for e in events:
        thread = threads.get((e.get("pid"), e.get("tid")), "")
        if (
            e.get("ph") == "X"
            and thread.startswith("tf_XLA")
            and not e["name"].startswith(_NOT_OPS)
        ):
            times[re.sub(r"\.\d+$", "", e["name"])] += e["dur"] / 1e3 / steps
    return {"step_ms": 1e3 * wall, **_account(times, _XLA)}


def torch_side(model: str, batch: int, steps: int, tiny: bool) -> dict:
    import torch

    sys.path.insert(0, str(REPO / "benchmarks"))
    sys.path.insert(0, str(REPO / "reference"))
    import throughput

    family, hp = throughput.hyperparameters(model, tiny)
    size = 32 if tiny else 224
    bench = throughput.TorchBench(family, hp, size, batch, 10 if tiny else 1000)
    wall = _wall_seconds(bench.run_train, steps)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            bench.run_train()
    times = {
        a.key: a.self_cpu_time_total / 1e3 / steps
        for a in prof.key_averages()
        if a.self_cpu_time_total > 0
    }
    return {"step_ms": 1e3 * wall, **_account(times, _TORCH)}


def _child(side: str, args: argparse.Namespace) -> dict:
    """One side in a process of its own (no shared thread pools, allocators or caches)."""
    command = [sys.executable, __file__, "--side", side, "--model", args.model]
    command += ["--batch", str(args.batch), "--steps", str(args.steps)]
    command += ["--tiny"] if args.tiny else []
    env = dict(os.environ, PYTHONPATH=str(REPO), SMLP_JAX_HUGEPAGES="0")
    out = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if out.returncode:
        raise SystemExit(f"{side} side failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def table(rows: dict[str, dict]) -> str:
    lines = [
        "| library | step ms (wall) | " + " | ".join(f"{k} ms" for k in KINDS) + " | op ms |",
        "|---|--:|" + "--:|" * len(KINDS) + "--:|",
    ]
    for name, row in rows.items():
        kinds = row["by_kind"]
        total = sum(kinds.values())
        cells = " | ".join(f"{kinds[k]:.0f} ({100 * kinds[k] / total:.0f}%)" for k in KINDS)
        lines.append(f"| {name} | {row['step_ms']:.0f} | {cells} | {total:.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="smlpnet_t")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--tiny", action="store_true", help="a tiny model at 32 px (smoke run)")
    parser.add_argument("--no-torch", action="store_true")
    parser.add_argument("--side", choices=("jax", "torch"), help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help="write the rows as JSON")
    args = parser.parse_args(argv)
    if args.side:
        side = jax_side if args.side == "jax" else torch_side
        print(json.dumps(side(args.model, args.batch, args.steps, args.tiny)))
        return 0
    rows = {"JAX": _child("jax", args)}
    if not args.no_torch:
        rows["PyTorch"] = _child("torch", args)
    print(f"{args.model}, batch {args.batch}, {args.steps} profiled steps, float32")
    print(table(rows))
    for name, row in rows.items():
        print(f"{name} top ops (ms a step): " + ", ".join(f"{n} {ms}" for n, ms in row["top"]))
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
