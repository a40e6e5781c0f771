"""Training curves from `WORKDIR/metrics.jsonl`: train loss, learning rate and eval top-1.

    python -m smlp_jax.tools.plot workdirs/demo [workdirs/other ...] --out curves.png

One PNG with three panels against the step, one line per run (labelled by the workdir's
name, or `--labels`), so runs can be compared. The trainer writes one JSON object per
logged step (`smlp_jax.train.metrics.MetricWriter`): train entries carry `train/loss` and
`train/lr`, eval entries `eval/top1` (a fraction; plotted in percent).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from smlp_jax.errors import UserError
from smlp_jax.tools.errors import ToolInputError, file_errors
from smlp_jax.train.metrics import read_records

# The panels: (metrics.jsonl key, y-axis label, scale applied before plotting).
PANELS = (
    ("train/loss", "train loss", 1.0),
    ("train/lr", "learning rate", 1.0),
    ("eval/top1", "eval top-1 (%)", 100.0),
)


class PlotError(ToolInputError):
    """A workdir without usable metrics; shown as one line."""


def read_series(workdir: str | Path) -> dict[str, tuple[list[int], list[float]]]:
    """metrics.jsonl -> {key: (steps, values)} for each key of PANELS that the run logged,
    in file order (a resumed run's file has already been cut back by the trainer)."""
    path = Path(workdir) / "metrics.jsonl"
    if not path.is_file():
        raise PlotError(f"{workdir}: no metrics.jsonl (is it a training workdir?).")
    series: dict[str, tuple[list[int], list[float]]] = {}
    with file_errors("read", path):
        records, damaged = read_records(path)
    if damaged:
        print(f"warning: {path}: {len(damaged)} damaged line(s) skipped", file=sys.stderr)
    for _, entry in records:
        for key, _, _ in PANELS:
            if key in entry:
                steps, values = series.setdefault(key, ([], []))
                steps.append(entry["step"])
                values.append(float(entry[key]))
    if not series:
        raise PlotError(f"{path} holds none of {', '.join(k for k, _, _ in PANELS)}.")
    return series


def plot_runs(workdirs: list[str], out: str | Path, labels: list[str] | None = None):
    """Draws every run's curves into `out` (PNG) and returns the matplotlib Figure."""
    import matplotlib  # lazy: an optional dependency, needed only to draw

    matplotlib.use("Agg")  # files only; no display needed (CI, ssh, TPU VMs)
    import matplotlib.pyplot as plt  # lazy: after the backend is chosen

    labels = labels or [Path(w).resolve().name for w in workdirs]
    if len(labels) != len(workdirs):
        raise PlotError(f"--labels has {len(labels)} names for {len(workdirs)} workdirs.")
    runs = [read_series(w) for w in workdirs]
    fig, axes = plt.subplots(1, len(PANELS), figsize=(4.2 * len(PANELS), 3.4))
    for ax, (key, ylabel, scale) in zip(axes, PANELS):
        for label, series in zip(labels, runs):
            if key in series:
                steps, values = series[key]
                marker = "o" if key.startswith("eval/") else None  # evals are sparse points
                ax.plot(steps, [v * scale for v in values], label=label, marker=marker)
        ax.set_xlabel("step")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        if key == "train/lr":
            ax.ticklabel_format(axis="y", style="sci", scilimits=(-2, 2))
    axes[0].legend(fontsize="small")
    fig.tight_layout()
    try:
        with file_errors("write", out):
            fig.savefig(out, dpi=90)
    finally:
        plt.close(fig)
    return fig


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m smlp_jax.tools.plot", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("workdirs", nargs="+", metavar="WORKDIR")
    parser.add_argument("--out", default="curves.png", help="PNG to write (curves.png)")
    parser.add_argument("--labels", nargs="+", help="legend names, one per WORKDIR")
    args = parser.parse_args(argv)
    try:
        plot_runs(args.workdirs, args.out, args.labels)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
