"""The XLA flags an accelerator run gets by default: the one place, with what each measured.

XLA reads `XLA_FLAGS` once, when JAX starts its backend, so the flags are put into the
environment before jax is imported: `main.py` calls `apply()` first thing (this module
imports only the standard library and `hugepages`, which it loads by path for the same
reason). The defaults apply on a GPU host only (found the way `hugepages.accelerator`
finds it); a flag the user already set in `XLA_FLAGS` wins, by name.

`GPU_DEFAULTS` holds only flags that measured faster on a GPU train step, each with its
measurement (benchmarks/README.md, "XLA flags on the GPU"). None has yet: the one GPU
run since these candidates were named had no device time for them. `GPU_CANDIDATES` are
the flags the accelerator check times one at a time against the defaults
(benchmarks/accelerator_check.sh); one that wins moves into `GPU_DEFAULTS` with its row.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Mapping, MutableMapping

GPU_DEFAULTS: tuple[str, ...] = ()

GPU_CANDIDATES: dict[str, str] = {
    # CUDA graphs for fusions, cuBLAS calls and conditionals (XLA's default set): off, to
    # see what the launch savings are worth for sMLPNet's 1,800-2,000 kernels a step.
    "command_buffers_off": "--xla_gpu_enable_command_buffer=",
    # GEMMs by cuBLAS only, no Triton-generated ones (small and odd-shaped GEMMs differ).
    "triton_gemm_off": "--xla_gpu_enable_triton_gemm=false",
    # Autotuning off: faster compiles, perhaps slower kernels.
    "autotune_0": "--xla_gpu_autotune_level=0",
    # The scheduler that overlaps independent kernels (and copies) on one GPU.
    "latency_hiding": "--xla_gpu_enable_latency_hiding_scheduler=true",
}


def _flag_name(flag: str) -> str:
    return flag.lstrip("-").split("=", 1)[0]


def with_defaults(xla_flags: str, defaults: tuple[str, ...] | None = None) -> str:
    """`xla_flags` with each default (`GPU_DEFAULTS`) whose flag it does not already set
    put in front."""
    defaults = GPU_DEFAULTS if defaults is None else defaults
    present = {_flag_name(f) for f in xla_flags.split()}
    return " ".join([*(d for d in defaults if _flag_name(d) not in present), *xla_flags.split()])


def _accelerator(environ: Mapping[str, str]) -> str | None:
    here = os.path.dirname(os.path.abspath(__file__))
    spec = importlib.util.spec_from_file_location(
        "_smlp_jax_hugepages", os.path.join(here, "hugepages.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.accelerator(environ)


def apply(environ: MutableMapping[str, str] = os.environ, device: str | None = None) -> str:
    """On a GPU host (`device`, else detected), adds `GPU_DEFAULTS` to `XLA_FLAGS` in
    `environ`; returns the resulting `XLA_FLAGS`. Call before jax is imported."""
    device = _accelerator(environ) if device is None else device
    current = environ.get("XLA_FLAGS", "")
    if device == "gpu" and GPU_DEFAULTS:
        environ["XLA_FLAGS"] = with_defaults(current)
    return environ.get("XLA_FLAGS", "")
