"""The host allocator XLA:CPU's steps run with: glibc with transparent huge pages, or on
request jemalloc; set by re-executing the process once.

Why: XLA:CPU allocates a jitted step's temporaries in one block afresh on every call
(sMLPNet-T's train step at 224 px: 2,020 MiB at batch 8, 7,319 MiB at batch 32) and frees
it at the end. glibc serves a block that large with `mmap` and returns it with `munmap`,
so every step the kernel maps and zeroes the whole block again, 4 KiB at a time: 475 K
minor page faults and 0.7-0.9 s of system time a step at batch 8 on the 2-core Intel host
(benchmarks/README.md, "The step's temporaries, faulted in again every step").

- By default, glibc's `glibc.malloc.hugetlb=1` tunable makes malloc advise transparent huge
  pages (`madvise(MADV_HUGEPAGE)`) for the memory it maps, so each fault maps 2 MiB: 4.7 K
  faults per step at batch 32 instead of 2.1 M, and the train step ran 1.72 -> 2.41 img/s
  (batch 32) on the AMD development host, 1.07-1.10x on the Intel one.
- With `SMLP_JAX_JEMALLOC=1`, jemalloc (`libjemalloc.so.2`, Debian/Ubuntu's
  `libjemalloc2`) is preloaded (`LD_PRELOAD`) with its decay off
  (`MALLOC_CONF=dirty_decay_ms:-1,muzzy_decay_ms:-1`, what PyTorch's CPU launcher
  `torch.backends.xeon.run_cpu` sets): it keeps a freed block and hands it whole to the
  next step, no fault and no zeroing. sMLPNet-T's train step ran 1.25x faster than with
  glibc's default at batch 8 and 1.30x at batch 32 in a plain loop, and `main.py` 1.12x
  faster than with huge pages. Not the default because it never gives memory back: the
  same `main.py` run peaked at 6.9-7.1 GB against 4.2 GB.

Both are read when the process starts, so `reexec_with_hugepages()` sets them and
replaces the process with a fresh run of the same command line (`os.execve`, same PID);
call it first thing in an entry point, best before jax is imported (`main.py` loads this
file by its path: importing the `smlp_jax` package would import jax first; the benchmark
scripts, which import it anyway, call it from their `__main__`). It does nothing (no
re-exec) when `SMLP_JAX_HUGEPAGES=0`, off Linux/glibc, or on an accelerator host (a GPU
or TPU that JAX will use: the page faults are XLA:CPU's, and there the host allocator is
not on the step's path); nor when `LD_PRELOAD` already names an allocator. The huge-page
tunable is skipped when the environment already has it (set to anything: the user's
choice stands), on glibc older than 2.35 (no such tunable), or when the kernel's
transparent huge pages are `never`; jemalloc when not installed. This module imports
nothing outside the standard library, so entry points can load it before the heavy
imports.

A library user's own script gets the same by calling `reexec_with_hugepages()` first
thing, or by starting Python with the variables set (`GLIBC_TUNABLES=glibc.malloc.hugetlb=1`,
or `LD_PRELOAD=libjemalloc.so.2 MALLOC_CONF=dirty_decay_ms:-1,muzzy_decay_ms:-1`).
"""

from __future__ import annotations

import ctypes.util
import glob
import importlib.util
import os
import platform
import sys
from collections.abc import Mapping

TUNABLE = "glibc.malloc.hugetlb"
OPT_OUT = "SMLP_JAX_HUGEPAGES"  # "0": never re-execute
THP_ENABLED = "/sys/kernel/mm/transparent_hugepage/enabled"
JEMALLOC_OPT_IN = "SMLP_JAX_JEMALLOC"  # "1": preload jemalloc where installed
# Decay off: jemalloc otherwise gives freed blocks over 8 MiB back to the system at once,
# which is glibc's page faults again.
JEMALLOC_CONF = "dirty_decay_ms:-1,muzzy_decay_ms:-1"
# LD_PRELOAD entries that are already an allocator: the user's choice stands.
ALLOCATORS = ("jemalloc", "tcmalloc", "mimalloc")


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


def _any_allocator_why_not(
    environ: Mapping[str, str], system: str | None, libc: tuple[str, str], device: str | None
) -> str | None:
    """What stops every allocator change: the opt-out, an allocator the user preloads
    already, an accelerator, a system other than Linux with glibc (`system`: this one's
    when None; `libc`: `platform.libc_ver()`)."""
    system = platform.system() if system is None else system
    if environ.get(OPT_OUT, "1") == "0":
        return f"{OPT_OUT}=0"
    preloaded = environ.get("LD_PRELOAD", "")
    if any(name in preloaded for name in ALLOCATORS):
        return f"LD_PRELOAD already names an allocator ({preloaded})"
    if device is not None:
        return f"JAX runs on {device}: the host allocator only matters to XLA:CPU"
    if system != "Linux" or libc[0] != "glibc":
        return "not Linux with glibc"
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
    libc = platform.libc_ver() if libc is None else libc
    reason = _any_allocator_why_not(environ, system, libc, device)
    if reason is not None:
        return reason
    if TUNABLE in environ.get("GLIBC_TUNABLES", ""):
        return f"GLIBC_TUNABLES already sets {TUNABLE}"
    try:
        version = tuple(int(p) for p in libc[1].split(".")[:2])
    except ValueError:
        return f"unparsed glibc version {libc[1]!r}"
    if version < (2, 35):
        return f"glibc {libc[1]} has no {TUNABLE} tunable (2.35+)"
    if thp not in ("always", "madvise"):
        return f"transparent huge pages are {thp or 'unavailable'}"
    return None


def find_jemalloc(environ: Mapping[str, str] | None = None) -> str | None:
    """The system's jemalloc as the dynamic loader finds it (`libjemalloc.so.2`), or None;
    with `environ`, looked for only when it asks for jemalloc (the lookup runs `ldconfig`)."""
    if environ is not None and environ.get(JEMALLOC_OPT_IN, "0") != "1":
        return None
    try:
        return ctypes.util.find_library("jemalloc")
    except OSError:  # no ldconfig, no compiler: nothing to find it with
        return None


def jemalloc_why_not(
    environ: Mapping[str, str],
    found: str | None,
    *,
    system: str | None = None,
    libc: tuple[str, str] | None = None,
    device: str | None = None,
) -> str | None:
    """None when the process should re-execute with jemalloc (`found`, `find_jemalloc()`)
    preloaded, else the reason not to."""
    libc = platform.libc_ver() if libc is None else libc
    reason = _any_allocator_why_not(environ, system, libc, device)
    if reason is not None:
        return reason
    if environ.get(JEMALLOC_OPT_IN, "0") != "1":
        return f"not asked for ({JEMALLOC_OPT_IN}=1)"
    if found is None:
        return "jemalloc is not installed (libjemalloc2)"
    return None


def with_jemalloc(environ: Mapping[str, str], found: str) -> dict[str, str]:
    """`environ` with `found` first in `LD_PRELOAD` and `MALLOC_CONF` set to
    `JEMALLOC_CONF` unless the user set it."""
    env = dict(environ)
    env["LD_PRELOAD"] = " ".join(p for p in (found, env.get("LD_PRELOAD", "")) if p)
    env.setdefault("MALLOC_CONF", JEMALLOC_CONF)
    return env


def tunables_with_hugepages(current: str) -> str:
    """`GLIBC_TUNABLES` with `glibc.malloc.hugetlb=1` appended (colon-separated)."""
    return ":".join(t for t in (current, f"{TUNABLE}=1") if t)


def reexec_with_hugepages() -> None:
    """Replaces this process with the same command line under jemalloc (when asked for
    and installed) or else glibc's huge-page tunable, unless `jemalloc_why_not` and
    `why_not` both say otherwise (then returns, having done nothing)."""
    device = accelerator(os.environ)
    found = find_jemalloc(os.environ)
    if jemalloc_why_not(os.environ, found, device=device) is None:
        env = with_jemalloc(os.environ, found)
    elif why_not(os.environ, thp=thp_mode(), device=device) is None:
        env = dict(os.environ)
        env["GLIBC_TUNABLES"] = tunables_with_hugepages(env.get("GLIBC_TUNABLES", ""))
    else:
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)


def status() -> str:
    """One line for logs and benchmark headers: the allocator this process runs with."""
    preloaded = os.environ.get("LD_PRELOAD", "")
    if "jemalloc" in preloaded:
        return f"jemalloc (LD_PRELOAD={preloaded}, MALLOC_CONF={os.environ.get('MALLOC_CONF', '')})"
    current = os.environ.get("GLIBC_TUNABLES", "")
    if f"{TUNABLE}=1" in current.split(":"):
        return f"{TUNABLE}=1 (transparent huge pages: {thp_mode()})"
    device = accelerator(os.environ)
    reason = why_not(os.environ, thp=thp_mode(), device=device)
    jemalloc = jemalloc_why_not(os.environ, find_jemalloc(os.environ), device=device)
    return (
        f"default (no jemalloc: {jemalloc or 'not re-executed'}; "
        f"no {TUNABLE}: {reason or 'not re-executed'})"
    )
