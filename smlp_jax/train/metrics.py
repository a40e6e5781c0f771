"""Where metrics go: a console line, `WORKDIR/metrics.jsonl`, and TensorBoard files.

Only process 0 writes (every process computes the same global values). Each logged step
is one JSON object in metrics.jsonl, e.g. `{"step": 100, "train/loss": 2.3, ...}`, eval
entries carry `eval/top1`, `eval/top5`, `eval/loss` (and `eval/ema_*` with EMA). On
resume the file is cut back to the restored step, so a resumed run's file reads as if
the run had never stopped.
"""

from __future__ import annotations

import json
import math
import os
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jax
import numpy as np
from clu import parameter_overview
from tensorboardX import SummaryWriter

from smlp_jax.data import worker_count
from smlp_jax.data.config import usable_cores


def format_duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


class MetricsDamagedWarning(UserWarning):
    """Lines of metrics.jsonl that are not metric records were moved aside."""


def _record(line: str) -> dict | None:
    """The metric record on `line` ({"step": int, name: number, ...}), or None."""
    try:
        entry = json.loads(line)
    except ValueError:
        return None
    if not isinstance(entry, dict):
        return None
    step = entry.get("step")
    if isinstance(step, bool) or not isinstance(step, int):
        return None
    if any(isinstance(v, bool) or not isinstance(v, int | float) for v in entry.values()):
        return None
    return entry


def read_records(path: str | os.PathLike) -> tuple[list[tuple[str, dict]], list[str]]:
    """metrics.jsonl -> ([(line, record)], damaged lines). Bytes that are not UTF-8, lines
    that are not JSON objects, a "step" that is not a whole number or a value that is not a
    number are damage; a last line cut short by a kill is not (it is dropped quietly)."""
    text = Path(path).read_bytes().decode("utf-8", errors="replace")
    lines = [line for line in text.splitlines() if line.strip()]
    records, damaged = [], []
    for i, line in enumerate(lines):
        entry = _record(line)
        if entry is not None:
            records.append((line, entry))
        elif not (i == len(lines) - 1 and not text.endswith("\n") and "\ufffd" not in line):
            damaged.append(line)
    return records, damaged


class MetricWriter:
    """Writes scalars to the console, metrics.jsonl and TensorBoard (process 0 only)."""

    def __init__(
        self, workdir: str | os.PathLike, *, resume_step: int | None = None, sinks: Any = ()
    ):
        self.enabled = jax.process_index() == 0
        self.path = Path(workdir) / "metrics.jsonl"
        self._tb = None
        # More writers of the same scalars (`write(step, scalars)`, `close()`): W&B.
        self._sinks = list(sinks)
        if not self.enabled:
            return
        Path(workdir).mkdir(parents=True, exist_ok=True)
        self._truncate(resume_step)
        self._tb = SummaryWriter(str(Path(workdir) / "tensorboard"))

    def _truncate(self, resume_step: int | None) -> None:
        """Drops entries past `resume_step` (a fresh run: all of them). On a resume, lines
        that are no metric record are appended to metrics.jsonl.damaged, with one warning,
        and the file is rewritten from the records alone."""
        if not self.path.exists():
            return
        kept = []
        if resume_step is not None:
            records, damaged = read_records(self.path)
            kept = [line for line, entry in records if entry["step"] <= resume_step]
            if damaged:
                aside = self.path.with_name(self.path.name + ".damaged")
                with aside.open("a", encoding="utf-8") as f:
                    f.write("".join(line + "\n" for line in damaged))
                warnings.warn(
                    f"{self.path}: {len(damaged)} damaged line(s) moved to {aside.name}; "
                    "training goes on with the rest.",
                    MetricsDamagedWarning,
                    stacklevel=3,
                )
        self.path.write_text("".join(line + "\n" for line in kept))

    def write(self, step: int, scalars: dict[str, Any]) -> None:
        if not self.enabled:
            return
        values = {k: float(np.asarray(v)) for k, v in scalars.items()}
        with self.path.open("a") as f:
            f.write(json.dumps({"step": int(step), **values}) + "\n")
        for name, value in values.items():
            self._tb.add_scalar(name, value, int(step))
        self._tb.flush()
        for sink in self._sinks:
            sink.write(int(step), values)

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
        for sink in self._sinks:
            sink.close()


def last_logged(workdir: str | os.PathLike, prefix: str) -> dict[str, float]:
    """The scalars named `prefix...` of the last metrics.jsonl record that has any, or {}."""
    path = Path(workdir) / "metrics.jsonl"
    found: dict[str, float] = {}
    if path.exists():
        for _, record in read_records(path)[0]:
            scalars = {k: v for k, v in record.items() if k.startswith(prefix)}
            found = scalars or found
    return found


def console(message: str) -> None:
    """One line on stdout from process 0, flushed (so piped logs show progress)."""
    if jax.process_index() == 0:
        print(message, flush=True)


class Progress:
    """Throughput, ETA and input wait from the wall time of the train steps between two
    logged steps (`restart` leaves out what is not a train step: compilation, evaluation).

    Input wait: the share of that wall time the loop spent waiting for its next batch
    (`fetch`) while the device had nothing left to compute. The train step is dispatched
    asynchronously, so while the device computes step n the loop asks for batch n + 1: a
    fetch that ends before step n does cost nothing, and is not counted; one that ends
    after it is counted whole (an upper bound of the device's idle time: it went idle
    somewhere inside the fetch).
    """

    def __init__(self, start_step: int, total_steps: int, batch_size: int):
        self.total_steps = total_steps
        self.batch_size = batch_size
        self.total_waited = 0.0  # the input wait summed over the run (time/input)
        self.restart(start_step)

    def restart(self, step: int) -> None:
        """Measures from now, at `step`."""
        self._step, self._time, self._waited = step, time.perf_counter(), 0.0

    def fetch(self, batches: Iterator, pending: jax.Array | None = None):
        """`next(batches)`, its time counted as input wait unless `pending` (an output of
        the last step dispatched) is still being computed when the batch arrives."""
        start = time.perf_counter()
        batch = next(batches)
        if pending is None or pending.is_ready():
            waited = time.perf_counter() - start
            self._waited += waited
            self.total_waited += waited
        return batch

    def update(self, step: int) -> tuple[float, float, float]:
        """-> (images per second since the last update, seconds left, the input wait's share
        of that time); (0, 0, 0) when no step ran since (the first line after compiling:
        nothing measured yet)."""
        now = time.perf_counter()
        if step == self._step:
            return 0.0, 0.0, 0.0
        elapsed = max(now - self._time, 1e-9)
        seconds_per_step = elapsed / (step - self._step)
        wait = min(self._waited / elapsed, 1.0)
        self._step, self._time, self._waited = step, now, 0.0
        eta = seconds_per_step * (self.total_steps - step)
        return self.batch_size / max(seconds_per_step, 1e-9), eta, wait


class InputWaitWarning(UserWarning):
    """The train loop waits for its input: the pipeline is slower than the train step."""


class InputWatch:
    """One warning, once a run, when the input wait passes `threshold` in `windows` log
    windows in a row (a single slow window, e.g. a worker's start, is not a trend). Half:
    the wait is an upper bound of the device's idle time (`Progress`).

    On a CPU-only host the "device" is the same cores that decode, so the wait is the share
    of them the input takes rather than idle hardware, and worker processes or device-side
    augmentation take cores from the step (benchmarks/README, "End to end"): there the
    warning says so and names the knobs for an accelerator host. The demo's in-process
    pipeline on a 2-core CPU waits 22-64% (2026-12-07): it decodes about as fast as the
    step trains."""

    def __init__(self, input_config: Any, threshold: float = 0.5, windows: int = 2):
        self.input_config = input_config
        self.threshold, self.windows = threshold, windows
        self._run, self._warned = 0, False

    def observe(self, wait: float) -> None:
        self._run = self._run + 1 if wait > self.threshold else 0
        if self._run < self.windows or self._warned:
            return
        self._warned = True
        cfg = self.input_config
        knobs = (
            f"More worker processes (config.input.num_workers={worker_count(cfg)}), a deeper "
            f"prefetch (config.input.prefetch={cfg.prefetch}), or the augmentation and "
            f"resize on the accelerator (config.input.on_device={cfg.on_device!r}: "
            "'augment' or 'resize_and_augment'; docs/data.md)."
        )
        if jax.default_backend() == "cpu":
            knobs = (
                f"On this CPU-only host the input and the step share its {usable_cores()} "
                "core(s): the wait is the input's share of them, and worker processes or "
                "augmentation on the device would take cores from the step. On an accelerator "
                "host: m" + knobs[1:]
            )
        warnings.warn(
            f"the train step waited for its input {100 * wait:.0f}% of the time in the last "
            f"{self.windows} log windows: the input pipeline is slower than the step. {knobs}",
            InputWaitWarning,
            stacklevel=2,
        )


def train_line(step: int, total: int, scalars: dict[str, float], eta: float) -> str:
    rate = scalars["train/img_per_sec"]
    per_device = scalars.get("train/img_per_sec_per_device", rate)
    speed = f"{rate:.0f} img/s ({per_device:.0f}/device)"
    if "train/mfu" in scalars:
        speed += f" | MFU {100 * scalars['train/mfu']:.1f}%"
    if "train/input_wait" in scalars:
        speed += f" | input wait {100 * scalars['train/input_wait']:.0f}%"
    timing = f"{speed} | ETA {format_duration(eta)}" if rate else "ETA next line"
    return (
        f"step {step}/{total} | loss {scalars['train/loss']:.4f} | "
        f"top1 {100 * scalars['train/top1']:.1f}% | lr {scalars['train/lr']:.2e} | "
        f"grad {scalars['train/grad_norm']:.3f} | {timing}"
    )


def eval_line(step: int, scalars: dict[str, float]) -> str:
    parts = [f"eval @ step {step}"]
    for prefix in ("eval/", "eval/ema_"):
        if f"{prefix}top1" in scalars:
            tag = "ema " if "ema" in prefix else ""
            parts.append(
                f"{tag}top1 {100 * scalars[prefix + 'top1']:.2f}% "
                f"top5 {100 * scalars[prefix + 'top5']:.2f}% loss {scalars[prefix + 'loss']:.4f}"
            )
    return " | ".join(parts)


def log_parameter_overview(params: Any, workdir: str | os.PathLike | None = None) -> None:
    """clu's table of parameter names, shapes and sizes: with a `workdir`, into
    `WORKDIR/parameters.txt` and one console line with the total (the table runs to
    hundreds of lines); without, printed (a notebook's view)."""
    if jax.process_index() != 0:
        return
    overview = parameter_overview.get_parameter_overview(_numpy_tree(params), include_stats=False)
    if workdir is None:
        print(overview, flush=True)
        return
    path = Path(workdir) / "parameters.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(overview + "\n")
    total = sum(math.prod(x.shape) for x in jax.tree.leaves(params))
    arrays = len(jax.tree.leaves(params))
    print(f"{total:,} parameters in {arrays} arrays (table: {path})", flush=True)


def _numpy_tree(tree: Any) -> dict:
    """A nested dict with string keys (clu's overview wants string names)."""
    if isinstance(tree, dict):
        return {str(k): _numpy_tree(v) for k, v in tree.items()}
    return jax.ShapeDtypeStruct(tree.shape, tree.dtype)
