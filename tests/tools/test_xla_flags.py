"""smlp_jax/tools/xla_flags.py: defaults only on a GPU host, the user's flags win, and every
candidate the accelerator check times is a flag this jaxlib knows."""

import os
import subprocess
import sys

from smlp_jax.tools import xla_flags


def test_user_flags_win_by_name():
    defaults = ("--xla_gpu_autotune_level=2", "--xla_gpu_enable_triton_gemm=false")
    merged = xla_flags.with_defaults("--xla_gpu_autotune_level=4 --foo=1", defaults)
    assert merged.split() == [
        "--xla_gpu_enable_triton_gemm=false",
        "--xla_gpu_autotune_level=4",
        "--foo=1",
    ]


def test_applied_only_on_a_gpu_host(monkeypatch):
    monkeypatch.setattr(xla_flags, "GPU_DEFAULTS", ("--xla_gpu_autotune_level=2",))
    env = {"XLA_FLAGS": "--bar=1"}
    assert xla_flags.apply(env, device=None) == "--bar=1"
    assert xla_flags.apply(env, device="tpu") == "--bar=1"
    assert xla_flags.apply(env, device="gpu") == "--xla_gpu_autotune_level=2 --bar=1"
    assert xla_flags.apply({"JAX_PLATFORMS": "cpu"}) == ""  # detected: a CPU run


def test_candidates_are_known_to_xla():
    """XLA aborts at start-up on a flag it does not know; these start a CPU backend."""
    flags = " ".join(xla_flags.GPU_CANDIDATES.values())
    env = {**os.environ, "XLA_FLAGS": flags, "JAX_PLATFORMS": "cpu"}
    code = "import jax.numpy as jnp; print(float(jnp.ones(3).sum()))"
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip() == "3.0", done.stderr[-2000:]
