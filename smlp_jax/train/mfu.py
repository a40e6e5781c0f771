"""Model-FLOPs utilisation: the train step's FLOPs over the time it takes over the
devices' peak.

- FLOPs: the model FLOPs of the train step, 2 x the multiply-accumulates of its matmuls
  and convolutions, forward and backward (`smlp_jax.models.macs`, counted once per run on
  its jaxpr, the same on every backend; XLA's GPU cost analysis leaves out the work it
  hands to cuBLAS/cuDNN, so it cannot serve).
- Peak: per device, from published dense figures by the device's kind (`PEAKS`: bf16,
  and for float32 the TensorFloat-32 tensor-core figure on NVIDIA, since XLA's default
  matmul precision uses it there; TPUs run float32 matmuls as bf16 passes by default).
  On a CPU the peak is measured once by a float32 GEMM probe and cached in
  `~/.cache/smlp_jax/cpu_peak.json` (`$SMLP_JAX_CACHE` moves it); its fake devices share
  the host's cores, so there the denominator is the host's peak once per process.
- MFU = FLOPs x steps per second / (peak x devices). An unknown accelerator gives no
  figure (None), rather than a wrong one.
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp

from smlp_jax.models import macs

# Dense peak FLOP/s per device: (substring of jax's device_kind, lower case) -> by dtype.
# NVIDIA data sheets (SXM; float32 = TF32 tensor cores, dense), Google Cloud TPU pages.
PEAKS: tuple[tuple[str, dict[str, float]], ...] = (
    ("h200", {"bfloat16": 989.4e12, "float32": 494.7e12}),
    ("h100", {"bfloat16": 989.4e12, "float32": 494.7e12}),
    ("a100", {"bfloat16": 312e12, "float32": 156e12}),
    ("v5 lite", {"bfloat16": 197e12, "float32": 197e12}),  # TPU v5e
    ("v5e", {"bfloat16": 197e12, "float32": 197e12}),
    ("v5p", {"bfloat16": 459e12, "float32": 459e12}),
    ("v4", {"bfloat16": 275e12, "float32": 275e12}),
)
PROBE_SIZE = 1024


def accelerator_peak(device_kind: str, dtype: str) -> float | None:
    """The published peak of one device of `device_kind` for `dtype`, or None."""
    kind = device_kind.lower()
    for name, peaks in PEAKS:
        if name in kind:
            return peaks.get(dtype, peaks["float32"])
    return None


def _cache_file() -> Path:
    root = os.environ.get("SMLP_JAX_CACHE") or os.path.expanduser("~/.cache/smlp_jax")
    return Path(root) / "cpu_peak.json"


def measure_cpu_peak(size: int = PROBE_SIZE, repeats: int = 5) -> float:
    """FLOP/s of the best of `repeats` float32 `(size, size) @ (size, size)` GEMMs."""
    a = jnp.ones((size, size), jnp.float32)
    gemm = jax.jit(lambda x: x @ x)
    gemm(a).block_until_ready()  # compile
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        gemm(a).block_until_ready()
        best = min(best, time.perf_counter() - start)
    return 2.0 * size**3 / best


def cpu_peak() -> float:
    """This host's measured float32 GEMM peak, probed once per machine and cached."""
    key = f"{platform.node()}|{platform.processor() or platform.machine()}|{os.cpu_count()}"
    path = _cache_file()
    try:
        cached = json.loads(path.read_text())
        if cached.get("host") == key and cached.get("flops", 0) > 0:
            return float(cached["flops"])
    except (OSError, ValueError):
        pass
    flops = measure_cpu_peak()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"host": key, "flops": flops, "probe": PROBE_SIZE}) + "\n")
    except OSError:
        pass  # a read-only home: measure again next run
    return flops


def total_peak(dtype: str) -> float | None:
    """The peak FLOP/s of every device of this run together (see the module docstring)."""
    device = jax.devices()[0]
    if device.platform == "cpu":
        return cpu_peak() * jax.process_count()
    peak = accelerator_peak(device.device_kind, dtype)
    return None if peak is None else peak * jax.device_count()


def step_flops(fn: Any, *args: Any) -> float | None:
    """Model FLOPs of one call of `fn` on `args` (traced, not compiled), or None if none."""
    flops = macs.model_flops(fn, *args)
    return flops if flops > 0 else None


def utilisation(flops: float | None, steps_per_second: float, peak: float | None) -> float | None:
    """MFU as a fraction, or None when either count is unknown."""
    if not flops or not peak or steps_per_second <= 0:
        return None
    return flops * steps_per_second / peak
