"""Smoke test of benchmarks/cpu_step_account.py at its tiny size (JAX side only: CI has no
torch): the profiled step's ops are summed by kind. No timing assertions."""

import json
import sys

from tests.train.tiny import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
import cpu_step_account  # noqa: E402


def test_op_names_are_sorted_into_kinds():
    xla, torch = cpu_step_account._XLA, cpu_step_account._TORCH
    assert cpu_step_account._kind("dot", xla) == "GEMM"
    assert cpu_step_account._kind("ynn_fusion", xla) == "GEMM"
    assert cpu_step_account._kind("copy_bitcast_fusion", xla) == "copies and layout changes"
    assert cpu_step_account._kind("multiply_erf_fusion", xla) == "the rest"
    assert cpu_step_account._kind("aten::addmm", torch) == "GEMM"
    assert cpu_step_account._kind("aten::convolution_backward", torch) == "convolution"
    assert cpu_step_account._kind("aten::gelu_backward", torch) == "the rest"


def test_tiny_jax_step_is_accounted_by_kind(tmp_path, capsys):
    out = tmp_path / "account.json"
    assert cpu_step_account.main(["--tiny", "--no-torch", "--steps", "2", "--out", str(out)]) == 0
    (row,) = json.loads(out.read_text()).values()
    assert row["step_ms"] > 0 and set(row["by_kind"]) == set(cpu_step_account.KINDS)
    assert sum(row["by_kind"].values()) > 0 and row["by_kind"]["GEMM"] > 0
    assert "| JAX |" in capsys.readouterr().out
