"""Smoke tests of the peer check (benchmarks/peer_check.py) at its tiny size on the CPU,
and of the saved-activation count it uses (benchmarks/saved_activations.py).

The peer check runs in a child process: it sets JAX's persistent compilation cache and
the allocator's environment for its whole process. No timing assertions; CI has no
torch, so there its PyTorch rows are skipped with the reason (from .venv-ref the eager
rows run; torch.compile on the CPU is skipped with --tiny). On a GPU the same script runs
at full size (benchmarks/accelerator_check.sh).
"""

import json
import subprocess
import sys

import pytest

from tests.train.tiny import REPO, subprocess_env

sys.path.insert(0, str(REPO / "benchmarks"))
import saved_activations  # noqa: E402

MODELS = ("smlpnet_t", "smlpnet_b", "mixer_b16", "convmixer_768_32")
SIDES = ("jax", "jax plain", "torch eager", "torch compile")


def test_tiny_peer_check_times_our_step_and_records_the_torch_rows(tmp_path):
    out = tmp_path / "peer"
    cmd = [sys.executable, str(REPO / "benchmarks" / "peer_check.py"), "--tiny", "--out", str(out)]
    proc = subprocess.run(cmd, env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((out / "peer_check.json").read_text())
    rows = {(r["model"], r["side"]): r for r in result["rows"]}
    # Every model's jax and PyTorch rows first, then the befores: a budget cut drops those.
    first, later = [s for s in SIDES if s != "jax plain"], ["jax plain"]
    assert list(rows) == [(m, side) for sides in (first, later) for m in MODELS for side in sides]
    assert result["copy_bandwidth"]["gb_per_s"] > 0
    for model in MODELS:
        work = result["work"][model]
        assert work["params"] > 0 and work["residual_bytes"] > 0 and work["train_flops"] > 0
        assert work["gemm_bytes"] > 0
        for side in ("jax", "jax plain"):  # the default forms, and the forms before them
            ours = rows[model, side]
            assert "error" not in ours, ours["error"]
            assert ours["step_ms"] > 0 and ours["img_per_s"] > 0 and ours["compile_s"] > 0
            assert 0 < ours["mfu"] < 1  # the CPU's peak is the cached GEMM probe
            assert ours["min_gb_per_step"] > 0 and ours["bw_util"] > 0
            assert ours["peak_gib"] is None  # no device memory statistics on the CPU
            assert (out / ours["hlo"]).read_text().startswith("HloModule")
        assert rows[model, "jax plain"]["hlo"].endswith("_plain.txt")
        for side in ("torch eager", "torch compile"):
            theirs = rows[model, side]
            assert "error" not in theirs, theirs["error"]
            assert theirs.get("skipped") or (theirs["step_ms"] > 0 and theirs["mfu"] > 0)
    assert rows["smlpnet_b", "jax"]["trace"] == "trace/smlpnet_b"
    assert rows["smlpnet_b", "jax plain"]["trace"] == "trace/smlpnet_b_plain"
    assert any((out / "trace" / "smlpnet_b").rglob("*.trace.json.gz"))  # trace_account's input
    table = (out / "peer_check.md").read_text()
    assert "| smlpnet_b | 2 | jax |" in table and table in proc.stdout + "\n"
    assert "error" not in table


def test_saved_activations_of_a_tiny_smlpnet(capsys):
    (row,) = saved_activations.main(["--tiny", "--models", "smlpnet_t", "--batch", "2"])
    assert row["bytes_per_image"] > 0 and row["arrays"] > 0
    assert row["bytes"] == row["fixed_bytes"] + 2 * row["bytes_per_image"]
    assert not any(k.startswith(saved_activations.PARAMS_SOURCE) for k in row["kinds_per_image"])
    assert sum(row["kinds_per_image"].values()) == pytest.approx(row["bytes_per_image"])
    fn, args = saved_activations.train_loss(
        "smlpnet_t", image_size=32, batch=2, **saved_activations.TINY["smlpnet"]
    )
    assert saved_activations.residual_bytes(fn, *args) == row["bytes"]
    table = capsys.readouterr().out
    assert "| smlpnet_t | bfloat16 | 32 |" in table and "output of" in table
