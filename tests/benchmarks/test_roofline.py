"""benchmarks/roofline.py: the minimal-bytes count on the jaxpr is the hand count, and a
model's floor is the larger of its compute and memory times per chip (abstract: no
compile)."""

import sys

import jax
import jax.numpy as jnp
import pytest

from tests.train.tiny import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
import roofline  # noqa: E402


def test_gemm_boundary_bytes_of_a_matmul_chain():
    """Two matmuls: each reads its operands and writes its result once; the GELU between
    them is taken to be fused (no bytes of its own)."""

    def f(x, w1, w2):
        return jax.nn.gelu(x @ w1) @ w2

    x = jax.ShapeDtypeStruct((8, 16), jnp.bfloat16)
    w1 = jax.ShapeDtypeStruct((16, 32), jnp.bfloat16)
    w2 = jax.ShapeDtypeStruct((32, 4), jnp.bfloat16)
    jaxpr = jax.make_jaxpr(f)(x, w1, w2).jaxpr
    first = 2 * (8 * 16 + 16 * 32 + 8 * 32)
    second = 2 * (8 * 32 + 32 * 4 + 8 * 4)
    assert roofline.gemm_boundary_bytes(jaxpr) == first + second


def test_floor_of_a_tiny_smlpnet(capsys):
    row = roofline.floor("smlpnet_t", 2, image_size=32, dim=8, depths=(1, 1, 1, 1))
    assert row["tflops"] > 0 and row["gemm_gb"] > 0
    assert row["adamw_gb"] == pytest.approx(32 * row["params"] / 1e9)
    for chip in roofline.BANDWIDTH:
        times = row[chip]
        assert times["floor_ms"] == max(times["compute_ms"], times["memory_ms"])
        assert times["no_overlap_ms"] == pytest.approx(times["compute_ms"] + times["memory_ms"])
    table = roofline.markdown([row], {"smlpnet_t": 2 * row["h200"]["floor_ms"]})
    assert table.splitlines()[-1].endswith("| 2.0x |")
