"""`python -m smlp_jax.tools.plot`: the PNG is written and its curves are the file's values."""

import json

import numpy as np
import pytest

from smlp_jax.tools import plot


def write_run(workdir, steps=40, log_every=5, eval_every=20, seed=0):
    """A metrics.jsonl as the trainer writes it: train entries every `log_every` steps,
    eval entries every `eval_every` (as separate lines at the same step)."""
    rng = np.random.default_rng(seed)
    workdir.mkdir(parents=True)
    lines = []
    for step in range(log_every, steps + 1, log_every):
        lines.append(
            {
                "step": step,
                "train/loss": float(2.3 * np.exp(-step / 20) + rng.uniform(0, 0.1)),
                "train/top1": float(rng.uniform()),
                "train/lr": float(1e-3 * min(step / 10, 1.0)),
                "train/grad_norm": 1.0,
                "train/img_per_sec": 100.0,
            }
        )
        if step % eval_every == 0:
            top1 = float(rng.uniform(0.1, 0.9))
            lines.append({"step": step, "eval/top1": top1, "eval/top5": 1.0, "eval/loss": 1.0})
    (workdir / "metrics.jsonl").write_text("".join(json.dumps(e) + "\n" for e in lines))
    return lines


def test_series_are_read_from_the_file(tmp_path):
    lines = write_run(tmp_path / "run")
    series = plot.read_series(tmp_path / "run")
    assert series["train/loss"] == (
        [e["step"] for e in lines if "train/loss" in e],
        [e["train/loss"] for e in lines if "train/loss" in e],
    )
    assert series["train/lr"][1] == [e["train/lr"] for e in lines if "train/lr" in e]
    assert series["eval/top1"] == ([20, 40], [e["eval/top1"] for e in lines if "eval/top1" in e])


def test_png_overlays_runs_with_the_files_values(tmp_path):
    runs = {"a": write_run(tmp_path / "a", seed=1), "b": write_run(tmp_path / "b", seed=2)}
    out = tmp_path / "curves.png"
    assert plot.main([str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(out)]) == 0
    data = out.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 10_000

    fig = plot.plot_runs([str(tmp_path / "a"), str(tmp_path / "b")], tmp_path / "again.png")
    for ax, (key, _, scale) in zip(fig.axes, plot.PANELS):
        assert [line.get_label() for line in ax.get_lines()] == ["a", "b"]
        for line, entries in zip(ax.get_lines(), runs.values()):
            expected = [(e["step"], e[key] * scale) for e in entries if key in e]
            np.testing.assert_allclose(line.get_xdata(), [s for s, _ in expected])
            np.testing.assert_allclose(line.get_ydata(), [v for _, v in expected])


def test_cut_and_damaged_lines_are_skipped_and_missing_metrics_are_one_line(tmp_path, capsys):
    write_run(tmp_path / "run", steps=10, eval_every=10)
    metrics = tmp_path / "run" / "metrics.jsonl"
    with metrics.open("a") as f:
        f.write('{"step": 15, "train/lo')  # a run killed mid-write: dropped quietly
    assert plot.read_series(tmp_path / "run")["train/loss"][0] == [5, 10]
    assert capsys.readouterr().err == ""
    metrics.write_bytes(
        metrics.read_bytes().rsplit(b"\n", 1)[0]
        + b'\n\xff\xfe binary\n[1, 2]\n{"step": "abc", "train/loss": 1.0}\n'
    )
    assert plot.read_series(tmp_path / "run")["train/loss"][0] == [5, 10]
    assert "3 damaged line(s) skipped" in capsys.readouterr().err

    (tmp_path / "empty").mkdir()
    assert plot.main([str(tmp_path / "empty"), "--out", str(tmp_path / "x.png")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "no metrics.jsonl" in err and "\n" not in err
    assert not (tmp_path / "x.png").exists()


def test_labels_must_match_workdirs(tmp_path):
    write_run(tmp_path / "a")
    with pytest.raises(plot.PlotError, match="2 names for 1 workdirs"):
        plot.plot_runs([str(tmp_path / "a")], tmp_path / "x.png", labels=["x", "y"])
