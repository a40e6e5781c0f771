"""What the host allocator costs XLA:CPU's train step: page faults, system time, speed, memory.

XLA:CPU allocates a jitted step's temporaries in one block at every call and frees it at
the end; with glibc's default that block is `mmap`ed and `munmap`ed every step, so the
kernel faults it in and zeroes it again. For each allocator setting, one child process
(the setting must be in place before jax starts) runs a library user's sMLPNet-T train
step (`throughput.JaxBench`: AdamW, donated state) `--steps` times after two of warm-up
and reports the median step, minor page faults and system CPU seconds per step
(`getrusage`), the peak RSS and the compiled step's XLA memory:

  glibc          glibc's default
  hugetlb        GLIBC_TUNABLES=glibc.malloc.hugetlb=1 (what main.py sets)
  glibc-kept     mallopt(M_ARENA_MAX, 1), (M_MMAP_MAX, 0), (M_TRIM_THRESHOLD, -1) before
                 jax is imported: freed blocks stay in glibc's heap (not used by main.py:
                 the heap grows, benchmarks/README.md)
  jemalloc       LD_PRELOAD=libjemalloc.so.2, MALLOC_CONF=dirty_decay_ms:-1,muzzy_decay_ms:-1
                 (main.py with SMLP_JAX_JEMALLOC=1), where installed
  tcmalloc       LD_PRELOAD=libtcmalloc_minimal.so.4, where installed

    python benchmarks/page_faults.py --batch 8 --steps 10 --rounds 2
    python benchmarks/page_faults.py --tiny     # seconds: the CPU smoke test

The table is in benchmarks/README.md ("The step's temporaries, faulted in again every
step").
"""

from __future__ import annotations

import argparse
import ctypes.util
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _load_hugepages():
    """smlp_jax/tools/hugepages.py by its path (standard library only): importing the
    package would import jax before a child's `glibc-kept` setting is in place."""
    path = REPO / "smlp_jax" / "tools" / "hugepages.py"
    spec = importlib.util.spec_from_file_location("_page_faults_hugepages", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


hugepages = _load_hugepages()

SETTINGS = ("glibc", "hugetlb", "glibc-kept", "jemalloc", "tcmalloc")


def setting_env(name: str) -> dict[str, str] | str:
    """The environment changes of a setting, or why it cannot run here."""
    if name == "glibc":
        return {}
    if name == "hugetlb":  # main.py's settings, from the module that makes them
        return {"GLIBC_TUNABLES": hugepages.tunables_with_hugepages("")}
    if name == "glibc-kept":
        return {"PAGE_FAULTS_KEEP": "1"}
    if name == "jemalloc":
        found = hugepages.find_jemalloc()
        return "jemalloc is not installed" if found is None else hugepages.with_jemalloc({}, found)
    found = ctypes.util.find_library("tcmalloc_minimal")
    return "tcmalloc is not installed" if found is None else {"LD_PRELOAD": found}


def _keep_freed_memory() -> None:
    """glibc: one arena, no mmap, no trim (the `glibc-kept` setting), before jax starts."""
    libc = ctypes.CDLL(None)
    for param, value in ((-8, 1), (-4, 0), (-1, -1)):  # M_ARENA_MAX, M_MMAP_MAX, M_TRIM_THRESHOLD
        if not libc.mallopt(param, value):
            raise SystemExit(f"mallopt({param}, {value}) refused")


def child(args: argparse.Namespace) -> dict:
    """One setting's row, measured in this process (the setting is already in place)."""
    if os.environ.get("PAGE_FAULTS_KEEP") == "1":
        _keep_freed_memory()
    import resource
    import statistics
    import time

    sys.path.insert(0, str(REPO / "benchmarks"))
    import throughput

    _, hp = throughput.hyperparameters(args.model, args.tiny)
    size = throughput.TINY_IMAGE_SIZE if args.tiny else 224
    bench = throughput.JaxBench(args.model, hp, size, args.batch, 10 if args.tiny else 1000)
    bench.compile(train=True, forward_too=False)
    for _ in range(2):
        bench.run_train()
    before = resource.getrusage(resource.RUSAGE_SELF)
    times = []
    for _ in range(args.steps):
        start = time.perf_counter()
        bench.run_train()
        times.append(time.perf_counter() - start)
    after = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "step_ms": 1e3 * statistics.median(times),
        "faults_per_step": (after.ru_minflt - before.ru_minflt) / args.steps,
        "system_s_per_step": (after.ru_stime - before.ru_stime) / args.steps,
        "peak_rss_mib": after.ru_maxrss / 1024,
        "xla_mib": bench.xla_train_mib,
    }


def run_setting(name: str, args: argparse.Namespace) -> dict:
    env_or_reason = setting_env(name)
    if isinstance(env_or_reason, str):
        return {"setting": name, "skipped": env_or_reason}
    env = {k: v for k, v in os.environ.items() if k not in ("GLIBC_TUNABLES", "LD_PRELOAD")}
    env.update(env_or_reason)
    env["SMLP_JAX_HUGEPAGES"] = "0"  # the harness's own re-exec would change the setting
    env["PYTHONPATH"] = str(REPO)
    command = [sys.executable, __file__, "--child", "--model", args.model]
    command += ["--batch", str(args.batch), "--steps", str(args.steps)]
    command += ["--tiny"] if args.tiny else []
    out = subprocess.run(command, env=env, capture_output=True, text=True, timeout=3600)
    if out.returncode != 0:
        return {"setting": name, "failed": out.stderr.strip().splitlines()[-1:]}
    row = json.loads(out.stdout.strip().splitlines()[-1])
    return {"setting": name, **row}


def table(rows: list[dict]) -> str:
    lines = [
        "| setting | step ms | minor faults / step | system s / step | peak RSS MiB | XLA MiB |",
        "|---|--:|--:|--:|--:|--:|",
    ]
    for r in rows:
        if "step_ms" not in r:
            lines.append(f"| {r['setting']} | {r.get('skipped') or r.get('failed')} | | | | |")
            continue
        lines.append(
            f"| {r['setting']} | {r['step_ms']:,.0f} | {r['faults_per_step']:,.0f} | "
            f"{r['system_s_per_step']:.3f} | {r['peak_rss_mib']:,.0f} | {r['xla_mib']:,.0f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smlpnet_t")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=1, help="each setting this many times")
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=SETTINGS)
    parser.add_argument("--tiny", action="store_true", help="a tiny model at 32 px (smoke run)")
    parser.add_argument("--json", help="also write the rows here")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args)))
        return 0
    rows = []
    for _ in range(args.rounds):
        for name in args.settings:
            rows.append(run_setting(name, args))
            print(json.dumps(rows[-1]), flush=True)
    print(table(rows))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
