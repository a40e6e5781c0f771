"""MFU's parts: published peaks by device kind, the CPU GEMM probe and its cache, the
train-step FLOP count, the ratio. (The trainer's logged MFU is checked in
tests/train/test_trainer.py.)"""

import json

import jax
import jax.numpy as jnp
import pytest

from smlp_jax.train import mfu


def test_published_peaks_by_device_kind():
    assert mfu.accelerator_peak("NVIDIA H100 80GB HBM3", "bfloat16") == 989.4e12
    assert mfu.accelerator_peak("NVIDIA H200", "float32") == 494.7e12
    assert mfu.accelerator_peak("NVIDIA A100-SXM4-80GB", "bfloat16") == 312e12
    assert mfu.accelerator_peak("TPU v5 lite", "bfloat16") == 197e12
    assert mfu.accelerator_peak("TPU v4", "float32") == 275e12
    assert mfu.accelerator_peak("Some future chip", "bfloat16") is None


def test_cpu_peak_is_probed_once_and_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("SMLP_JAX_CACHE", str(tmp_path))
    calls = []
    monkeypatch.setattr(mfu, "measure_cpu_peak", lambda: calls.append(1) or 5e10)
    assert mfu.cpu_peak() == 5e10 and mfu.cpu_peak() == 5e10
    assert calls == [1]
    assert json.loads((tmp_path / "cpu_peak.json").read_text())["flops"] == 5e10


def test_gemm_probe_and_flop_count_are_plausible():
    peak = mfu.measure_cpu_peak(size=256, repeats=2)
    assert 1e8 < peak < 1e14  # between a slow core and a large server
    f = jax.jit(lambda a, b: a @ b)
    x = jnp.ones((64, 128))
    assert mfu.step_flops(f, x, jnp.ones((128, 32))) == pytest.approx(2 * 64 * 128 * 32)
    assert mfu.utilisation(1e9, 10.0, 1e11) == pytest.approx(0.1)
    assert mfu.utilisation(None, 10.0, 1e11) is None
