"""Smoke test of the end-to-end input benchmark (benchmarks/end_to_end.py) at its tiny size:
the generated folder trains through main.py and the row comes from the run's own
metrics.jsonl. No timing assertions."""

import json
import sys

from PIL import Image

from smlp_jax.data import config as data_config
from tests.train.tiny import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
import end_to_end  # noqa: E402


def test_folder_is_imagenet_like_and_a_tiny_run_reports_its_row(tmp_path, capsys):
    end_to_end.make_folder(str(tmp_path / "jpegs"), 20)
    sizes = [Image.open(p).size for p in sorted((tmp_path / "jpegs").rglob("*.jpg"))]
    assert len(sizes) == 20 and sum(max(s) > 1000 for s in sizes) == 2  # one in ten
    out = tmp_path / "out"
    # -1: the default worker count, which the row names as the run chose it.
    argv = ["--tiny", "--workers", "-1", "--modes", "", "--steps", "4", "--batch", "8"]
    assert end_to_end.main([*argv, "--images", "40", "--out", str(out)]) == 0
    (row,) = json.loads((out / "end_to_end.json").read_text())
    chosen = data_config.worker_count({"num_workers": -1})
    assert row["on_device"] == "none" and row["workers"] == f"-1 ({chosen})"
    assert row["img_per_s"] > 0
    assert 0 <= row["input_wait"] <= 1 and row["step_alone_img_per_s"] >= row["img_per_s"]
    # A fresh cache folder: the step was compiled, and the console's line says how long.
    assert row["train_step_ready"].startswith("compiled in ") and row["train_step_ready_s"] > 0
    assert f"| none | -1 ({chosen}) |" in capsys.readouterr().out


def test_rows_past_the_budget_are_recorded_as_skipped(tmp_path, capsys):
    argv = ["--tiny", "--workers", "0", "2", "--modes", "", "--budget", "0", "--images", "10"]
    assert end_to_end.main([*argv, "--out", str(tmp_path)]) == 0
    rows = json.loads((tmp_path / "end_to_end.json").read_text())
    assert rows == [{"on_device": "none", "workers": w, "skipped": True} for w in (0, 2)]
    assert capsys.readouterr().out.count("skipped (past --budget)") == 2
