"""Where a train step's GPU time goes: a `jax.profiler` trace's kernels, by kind.

    python benchmarks/trace_account.py benchmarks/results/peer_check/trace/smlpnet_b_plain \\
        benchmarks/results/peer_check/trace/smlpnet_b --steps 3

Reads each folder's `*.trace.json.gz` (what `jax.profiler.trace` writes beside the xplane;
benchmarks/peer_check.py profiles `--trace-models` that way) and prints one column per
folder: milliseconds per step by kind, summed over the device's streams, and the idle gaps.

Kinds, by kernel name (XLA GPU names its fusions by what they compute; cuBLAS and cuDNN
kernels by library):
  gemm         cuBLAS/cuBLASLt/CUTLASS and Triton GEMMs (gemm, xmma, cutlass, matmul, dot)
  convolution  cuDNN convolutions (conv, cudnn, implicit_gemm... named with conv)
  transpose    transposes and copies (transpose, copy, memcpy, memset)
  reduction    fusions rooted in a reduction (reduce, reduction): norm statistics, sums
  elementwise  the other fusions (loop, fusion, ...)
  other        anything else (custom calls, collectives)
  idle         the time in the device's busy span (first kernel start to last kernel end)
               when none of its streams runs a kernel: launch gaps, host waits
Per step: the totals over `--steps` (the steps the trace covers).
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
from collections.abc import Iterable
from pathlib import Path

KINDS = ("gemm", "convolution", "transpose", "reduction", "elementwise", "other", "idle")
_RULES = (
    ("other", re.compile(r"nccl|all_reduce|all_gather|reduce_scatter|all_to_all", re.I)),
    ("convolution", re.compile(r"conv|cudnn", re.I)),
    ("gemm", re.compile(r"gemm|xmma|cutlass|matmul|\bdot|cublas|triton_.*dot", re.I)),
    ("transpose", re.compile(r"transpose|copy|memcpy|memset", re.I)),
    ("reduction", re.compile(r"reduc", re.I)),
    ("elementwise", re.compile(r"fusion|loop|elementwise|broadcast|convert", re.I)),
)


def kind_of(name: str) -> str:
    for kind, pattern in _RULES:
        if pattern.search(name):
            return kind
    return "other"


def load_events(folder: str | Path) -> list[dict]:
    """The trace events of the newest `*.trace.json.gz` under `folder`."""
    files = sorted(Path(folder).rglob("*.trace.json.gz"), key=lambda p: p.stat().st_mtime)
    if not files:
        raise FileNotFoundError(f"no *.trace.json.gz under {folder} (a jax.profiler trace)")
    with gzip.open(files[-1], "rt") as f:
        return json.load(f)["traceEvents"]


def device_kernels(events: Iterable[dict], device: str = "GPU") -> list[dict]:
    """Complete ('X') events on the processes whose name contains `device`, from their
    "Stream" threads when they have any (a GPU's process also has derived "XLA Ops" and
    "XLA Modules" lines over the same kernels, which would count them twice)."""
    events = list(events)
    meta = [e for e in events if e.get("ph") == "M"]
    pids = {
        e["pid"]
        for e in meta
        if e.get("name") == "process_name"
        and device.lower() in str(e.get("args", {}).get("name", "")).lower()
    }
    streams = {
        (e["pid"], e.get("tid"))
        for e in meta
        if e.get("name") == "thread_name"
        and e["pid"] in pids
        and str(e.get("args", {}).get("name", "")).startswith("Stream")
    }
    kernels = [e for e in events if e.get("ph") == "X" and e.get("pid") in pids]
    if streams:
        kernels = [e for e in kernels if (e["pid"], e.get("tid")) in streams]
    return kernels


def _busy_us(intervals: list[tuple[float, float]]) -> float:
    """Length of the union of [start, end) intervals."""
    busy, end = 0.0, float("-inf")
    for start, stop in sorted(intervals):
        if stop <= end:
            continue
        busy += stop - max(start, end)
        end = stop
    return busy


def account(kernels: list[dict], steps: int = 1) -> dict[str, float]:
    """Milliseconds per step by kind (and `idle`, `total`: the busy span) of `kernels`."""
    per_kind = dict.fromkeys(KINDS, 0.0)
    if not kernels:
        return {**per_kind, "total": 0.0}
    for e in kernels:
        per_kind[kind_of(e["name"])] += e["dur"] / 1e3
    intervals = [(e["ts"], e["ts"] + e["dur"]) for e in kernels]
    span = max(b for _, b in intervals) - min(a for a, _ in intervals)
    per_kind["idle"] = (span - _busy_us(intervals)) / 1e3
    per_kind["total"] = span / 1e3
    return {k: v / steps for k, v in per_kind.items()}


def markdown(columns: dict[str, dict[str, float]]) -> str:
    names = list(columns)
    lines = [
        "| kind | " + " | ".join(f"{n} ms/step" for n in names) + " |",
        "|---|" + "--:|" * len(names),
    ]
    for kind in (*KINDS, "total"):
        cells = " | ".join(f"{columns[n][kind]:.2f}" for n in names)
        lines.append(f"| {kind} | {cells} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", nargs="+", help="jax.profiler trace folders")
    parser.add_argument("--steps", type=int, default=3, help="train steps in each trace")
    parser.add_argument("--device", default="GPU", help="process-name substring (GPU, TPU)")
    args = parser.parse_args(argv)
    columns = {
        Path(folder).name: account(device_kernels(load_events(folder), args.device), args.steps)
        for folder in args.folders
    }
    print(markdown(columns))
    return columns


if __name__ == "__main__":
    main()
