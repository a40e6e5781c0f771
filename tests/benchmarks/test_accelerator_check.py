"""Smoke test of the prepared accelerator check (benchmarks/accelerator_check.py) at its
tiny size on the CPU: every section runs and writes its JSON and table. No timing
assertions; on a GPU the same script runs at full size (benchmarks/accelerator_check.sh)."""

import json
import sys

from tests.train.tiny import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
import accelerator_check  # noqa: E402


def test_tiny_check_writes_json_and_table(tmp_path, capsys):
    out = tmp_path / "check"
    assert accelerator_check.main(["--tiny", "--steps", "1", "--out", str(out)]) == 0
    result = json.loads((tmp_path / "check.json").read_text())
    assert [r["model"] for r in result["train"]] == ["smlpnet_t", "mixer_b16"]
    for row in result["train"]:
        assert row["img_per_s"] > 0 and row["train_gflops_per_step"] > 0
        assert 0 < row["mfu"] < 1  # the CPU's peak is the cached GEMM probe
    assert result["depthwise"]["max_abs_diff"] < 1e-4  # XLA's conv against the shifted sum
    assert result["augment"]["img_per_s"] > 0
    pipeline = {(r["workers"], r["on_device"]): r["img_per_s"] for r in result["pipeline"]}
    modes = {(0, "none"), (0, "augment"), (0, "resize_and_augment")}
    assert set(pipeline) == modes and min(pipeline.values()) > 0
    table = (tmp_path / "check.md").read_text()
    assert "| smlpnet_t | 4 | float32 |" in table and table in capsys.readouterr().out + "\n"
    assert "| 0 | resize_and_augment |" in table and "error" not in table


def test_a_failing_or_late_row_is_recorded_and_the_rest_still_runs(tmp_path, monkeypatch):
    """A row that raises (an out-of-memory, say) keeps its one-line error in the JSON and
    the table; with no budget left the train rows are skipped, not run."""

    def out_of_memory(*args):
        raise RuntimeError("RESOURCE_EXHAUSTED: Out of memory while trying to allocate\nmore")

    monkeypatch.setattr(accelerator_check, "augment_row", out_of_memory)
    monkeypatch.setattr(accelerator_check, "pipeline_rows", out_of_memory)
    out = tmp_path / "check"
    assert accelerator_check.main(["--tiny", "--budget", "0", "--out", str(out)]) == 0
    result = json.loads((tmp_path / "check.json").read_text())
    oom = "RuntimeError: RESOURCE_EXHAUSTED: Out of memory while trying to allocate"
    assert result["augment"] == {"error": oom} and result["pipeline"] == [{"error": oom}]
    assert all(r["error"].startswith("skipped: past the 0 s budget") for r in result["train"])
    assert result["depthwise"]["max_abs_diff"] < 1e-4
    table = (tmp_path / "check.md").read_text()
    assert f"error in augment: {oom}" in table and f"error in pipeline: {oom}" in table
