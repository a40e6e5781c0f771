"""Where a CPU train step's time goes: a `config.profile` trace's XLA ops, by source line.

    python benchmarks/cpu_trace_ops.py WORKDIR/profile \\
        [--hlo DIR/module_*.jit_train_step.cpu_after_optimizations.txt]

Reads the newest `perfetto_trace.json.gz` under `WORKDIR/profile` (what `config.profile`
writes, smlp_jax/train/profiling.py) and prints: the traced span; the time the main thread
spent in `next()` (waiting for its next batch: the input pipeline), the XLA CPU thunks'
time on the compute threads, and the XLA ops by time, summed over the traced steps. With
`--hlo` (the compiled train step's text from the same compile: run with
`XLA_FLAGS=--xla_dump_to=DIR --config.compilation_cache_dir=`, so the step is compiled and
dumped in that process) each op is named by the innermost `smlp_jax` source line that made
it and the JAX op (`op_name` metadata), and the ops are summed by model function too.
"""

from __future__ import annotations

import argparse
import collections
import gzip
import json
import re
from pathlib import Path

SKIP = ("ThunkExecutor", "SlinkyThreadPool", "end: ", "H2D")


def load_trace(profile_dir: Path) -> list[dict]:
    traces = sorted(profile_dir.glob("**/perfetto_trace.json.gz"))
    if not traces:
        raise SystemExit(f"no perfetto_trace.json.gz under {profile_dir}")
    with gzip.open(traces[-1]) as f:
        return json.load(f)["traceEvents"]


def hlo_sources(path: Path) -> dict[str, tuple[str, str]]:
    """{instruction name: (JAX op_name, innermost smlp_jax 'file:line function')} from a
    dumped HLO module's text and its stack-frame tables."""
    text = path.read_text()
    tables: dict[str, dict[int, str]] = {}
    current = None
    for line in text.splitlines():
        if line in ("FileNames", "FunctionNames", "FileLocations", "StackFrames"):
            current, tables[line] = line, {}
        elif current and re.match(r"^\d+ ", line):
            index, rest = line.split(" ", 1)
            tables[current][int(index)] = rest
        elif line.strip():
            current = None
    files = {k: v.strip('"') for k, v in tables.get("FileNames", {}).items()}
    functions = {k: v.strip('"') for k, v in tables.get("FunctionNames", {}).items()}
    fields = re.compile(r"(\w+)=(\S+)")
    locations = {k: dict(fields.findall(v)) for k, v in tables.get("FileLocations", {}).items()}
    frames = {
        k: dict(fields.findall(v.strip("{}"))) for k, v in tables.get("StackFrames", {}).items()
    }

    def innermost(frame: int) -> str:
        seen = set()
        while frame in frames and frame not in seen:
            seen.add(frame)
            loc = locations[int(frames[frame]["file_location_id"])]
            name = files[int(loc["file_name_id"])]
            if "/smlp_jax/" in name:
                where = name.split("/smlp_jax/")[1]
                return f"{where}:{loc['line']} {functions[int(loc['function_name_id'])]}"
            frame = int(frames[frame]["parent_frame_id"])
        return "(outside smlp_jax)"

    pattern = (
        r'^\s*(?:ROOT )?%([\w.\-]+) = .*?metadata=\{op_name="([^"]*)"(?: stack_frame_id=(\d+))?'
    )
    return {
        m.group(1): (
            m.group(2).removeprefix("jit(train_step)/"),
            innermost(int(m.group(3))) if m.group(3) else "(outside smlp_jax)",
        )
        for m in re.finditer(pattern, text, re.M)
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("profile_dir", type=Path)
    parser.add_argument("--hlo", type=Path, help="the dumped train step after optimisations")
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args()
    events = load_trace(args.profile_dir)
    threads = {
        (e["pid"], e["tid"]): e["args"]["name"]
        for e in events
        if e.get("ph") == "M" and e["name"] == "thread_name"
    }
    spans = [e for e in events if e.get("ph") == "X"]
    span = (max(e["ts"] + e["dur"] for e in spans) - min(e["ts"] for e in spans)) / 1e3

    def thread(e: dict) -> str:
        return threads.get((e["pid"], e["tid"]), "")

    waiting = sum(
        e["dur"] for e in spans if thread(e) == "main.py" and e["name"] == "$builtins next"
    )
    thunks = sum(
        e["dur"]
        for e in spans
        if thread(e).startswith("tf_XLAEigen") and e["name"] == "ThunkExecutor::Execute"
    )
    ops = [e for e in spans if thread(e).startswith("tf_XLA") and not e["name"].startswith(SKIP)]
    total = sum(e["dur"] for e in ops) / 1e3
    print(
        f"traced {span:.0f} ms; main thread waiting for its next batch {waiting / 1e3:.0f} ms; "
        f"XLA thunks on the compute threads {thunks / 1e3:.0f} ms; XLA ops {total:.0f} ms"
    )
    sources = hlo_sources(args.hlo) if args.hlo else {}
    by_key: dict[str, float] = collections.defaultdict(float)
    by_function: dict[str, float] = collections.defaultdict(float)
    for e in ops:
        ms = e["dur"] / 1e3
        if sources:
            op_name, where = sources.get(e["name"], ("?", "(not in the dump)"))
            by_key[f"{where} | {op_name[:60]}"] += ms
            function = where if where.startswith("(") else where.split(":")[0]
            by_function[
                function + ("" if where.startswith("(") else " " + where.split(" ")[-1])
            ] += ms
        else:
            by_key[re.sub(r"\.\d+$", "", e["name"])] += ms
    for title, table in (("ops", by_key), ("model functions", by_function)):
        if not table:
            continue
        print(f"--- {title} by time (summed over the traced steps and threads)")
        for key, ms in sorted(table.items(), key=lambda kv: -kv[1])[: args.top]:
            print(f"{ms:8.1f} ms {100 * ms / total:5.1f}%  {key}")


if __name__ == "__main__":
    main()
