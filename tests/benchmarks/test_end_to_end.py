"""Smoke test of the end-to-end input benchmark (benchmarks/end_to_end.py) at its tiny size:
the generated folder trains through main.py and the row comes from the run's own
metrics.jsonl. No timing assertions."""

import json
import sys

from PIL import Image

from tests.train.tiny import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
import end_to_end  # noqa: E402


def test_folder_is_imagenet_like_and_a_tiny_run_reports_its_row(tmp_path, capsys):
    end_to_end.make_folder(str(tmp_path / "jpegs"), 20)
    sizes = [Image.open(p).size for p in sorted((tmp_path / "jpegs").rglob("*.jpg"))]
    assert len(sizes) == 20 and sum(max(s) > 1000 for s in sizes) == 2  # one in ten
    out = tmp_path / "out"
    argv = ["--tiny", "--workers", "0", "--modes", "", "--steps", "4", "--batch", "8"]
    assert end_to_end.main([*argv, "--images", "40", "--out", str(out)]) == 0
    (row,) = json.loads((out / "end_to_end.json").read_text())
    assert row["on_device"] == "none" and row["workers"] == 0 and row["img_per_s"] > 0
    assert 0 <= row["input_wait"] <= 1 and row["step_alone_img_per_s"] >= row["img_per_s"]
    assert "| none | 0 |" in capsys.readouterr().out
