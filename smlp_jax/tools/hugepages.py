"""Transparent huge pages for glibc's allocator, by re-executing the process once.

Why: XLA:CPU allocates a jitted step's temporaries afresh on every call, and glibc serves
large allocations with `mmap` and returns them with `munmap` on free, so every train step
faults its whole working set in again, 4 KiB at a time. sMLPNet-T's train step at 224 px
took 2.1 M minor page faults per step at batch 32 (0.53 M at batch 8) on the development
machine. glibc's `glibc.malloc.hugetlb=1` tunable makes malloc advise transparent huge
pages (`madvise(MADV_HUGEPAGE)`) for the memory it maps, so each fault maps 2 MiB: 4.7 K
faults per step at batch 32, and the train step ran 1.72 -> 2.41 img/s (batch 32) and
2.2 -> 2.7 img/s (batch 8) (benchmarks/README.md, "Fifth round").

A tunable is read when the process starts, so `reexec_with_hugepages()` sets it and
replaces the process with a fresh run of the same command line (`os.execve`, same PID);
call it first thing in an entry point, best before jax is imported (`main.py` loads this
file by its path: importing the `smlp_jax` package would import jax first; the benchmark
scripts, which import it anyway, call it from their `__main__`). It does nothing (no
re-exec) when the environment already has the tunable (set to anything: the user's choice stands),
when `SMLP_JAX_HUGEPAGES=0`, off Linux/glibc, on glibc older than 2.35 (no such tunable),
when the kernel's transparent huge pages are `never`, or on an accelerator host (a GPU
or TPU that JAX will use: the page faults are XLA:CPU's, and there the host allocator is
not on the step's path). This module imports nothing outside the standard library, so
entry points can load it before the heavy imports.

A library user's own script gets the same by calling `reexec_with_hugepages()` first
thing, or by starting Python with `GLIBC_TUNABLES=glibc.malloc.hugetlb=1`.
"""

from __future__ import annotations

import glob
import importlib.util
import os
import platform
import sys
from collections.abc import Mapping

TUNABLE = "glibc.malloc.hugetlb"
OPT_OUT = "SMLP_JAX_HUGEPAGES"  # "0": never re-execute
THP_ENABLED = "/sys/kernel/mm/transparent_hugepage/enabled"


def thp_mode(path: str = THP_ENABLED) -> str | None:
    """The kernel's transparent-huge-page mode (`always`, `madvise`, `never`), or None."""
    try:
        with open(path) as f:
            text = f.read()
    except OSError:
        return None
    start, end = text.find("["), text.find("]")
    return text[start + 1 : end] if 0 <= start < end else None


def accelerator(environ: Mapping[str, str]) -> str | None:
    """The accelerator JAX will run on here ("gpu", "tpu", ...), found without importing
    jax: the first of `JAX_PLATFORMS` when set, else an installed GPU or TPU plugin whose
    device files exist; None for a CPU-only host."""
    platforms = environ.get("JAX_PLATFORMS", "") or environ.get("JAX_PLATFORM_NAME", "")
    if platforms.strip():
        first = platforms.split(",")[0].strip().lower()
        return None if first == "cpu" else first

    def installed(*names: str) -> bool:
        return any(importlib.util.find_spec(n) is not None for n in names)

    if glob.glob("/dev/nvidia[0-9]*") and installed("jax_cuda12_plugin", "jax_cuda13_plugin"):
        return "gpu"
    if glob.glob("/dev/kfd") and installed("jax_rocm60_plugin", "jax_rocm7_plugin"):
        return "gpu"
    if (glob.glob("/dev/accel[0-9]*") or glob.glob("/dev/vfio/[0-9]*")) and installed("libtpu"):
        return "tpu"
    return None


def why_not(
    environ: Mapping[str, str],
    *,
    system: str | None = None,
    libc: tuple[str, str] | None = None,
    thp: str | None = None,
    device: str | None = None,
) -> str | None:
    """None when the process should re-execute with the tunable, else the reason not to
    (`device`: what `accelerator` found)."""
    system = platform.system() if system is None else system
    libc = platform.libc_ver() if libc is None else libc
    if environ.get(OPT_OUT, "1") == "0":
        return f"{OPT_OUT}=0"
    if TUNABLE in environ.get("GLIBC_TUNABLES", ""):
        return f"GLIBC_TUNABLES already sets {TUNABLE}"
    if device is not None:
        return f"JAX runs on {device}: huge pages only help XLA:CPU"
    if system != "Linux" or libc[0] != "glibc":
        return "not Linux with glibc"
    try:
        version = tuple(int(p) for p in libc[1].split(".")[:2])
    except ValueError:
        return f"unparsed glibc version {libc[1]!r}"
    if version < (2, 35):
        return f"glibc {libc[1]} has no {TUNABLE} tunable (2.35+)"
    if thp not in ("always", "madvise"):
        return f"transparent huge pages are {thp or 'unavailable'}"
    return None


def tunables_with_hugepages(current: str) -> str:
    """`GLIBC_TUNABLES` with `glibc.malloc.hugetlb=1` appended (colon-separated)."""
    return ":".join(t for t in (current, f"{TUNABLE}=1") if t)


def reexec_with_hugepages() -> None:
    """Replaces this process with the same command line under `glibc.malloc.hugetlb=1`,
    unless `why_not` says otherwise (then returns, having done nothing)."""
    if why_not(os.environ, thp=thp_mode(), device=accelerator(os.environ)) is not None:
        return
    env = dict(os.environ)
    env["GLIBC_TUNABLES"] = tunables_with_hugepages(env.get("GLIBC_TUNABLES", ""))
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)


def status() -> str:
    """One line for logs and benchmark headers: whether this process runs with the tunable."""
    current = os.environ.get("GLIBC_TUNABLES", "")
    if f"{TUNABLE}=1" in current.split(":"):
        return f"{TUNABLE}=1 (transparent huge pages: {thp_mode()})"
    reason = why_not(os.environ, thp=thp_mode(), device=accelerator(os.environ))
    return f"default (no {TUNABLE}: {reason or 'not re-executed'})"
