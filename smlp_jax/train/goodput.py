"""Where a run's wall time goes: the step-time breakdown logged at every log step.

Seconds spent by this process since it started the run (`train_and_evaluate`; a resumed
run counts from its restart), each part measured on the host:

    time/wall        since the start
    time/setup       building and checking, restoring or creating the state, starting the input
    time/compile     the first train step (compiled or loaded, and run once) and its FLOP count
    time/input       waiting for the next batch while the device had nothing left to compute
                     (`metrics.Progress`: the same wait as train/input_wait, summed)
    time/eval        evaluation (its compilation included)
    time/checkpoint  saving checkpoints (the blocking part of an asynchronous save)
    time/profile     starting and writing a `config.profile` trace
    time/step        the rest: the train steps themselves (and the host's work between them)
    time/goodput     time/step / time/wall, in [0, 1]: the share of wall time spent training

The values at a log step cover the time up to that log line (an eval or checkpoint at the
same step shows at the next one).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

PARTS = ("setup", "compile", "input", "eval", "checkpoint", "profile")


class TimeBreakdown:
    """Sums the seconds of each part (`PARTS`); `scalars` adds the step time and goodput."""

    def __init__(self) -> None:
        self._start = time.perf_counter()
        self._spent = dict.fromkeys(PARTS, 0.0)

    def add(self, part: str, seconds: float) -> None:
        self._spent[part] += max(float(seconds), 0.0)

    def set(self, part: str, seconds: float) -> None:
        """Sets a part measured elsewhere as a running total (the input wait)."""
        self._spent[part] = max(float(seconds), 0.0)

    def since_start(self) -> float:
        return time.perf_counter() - self._start

    @contextlib.contextmanager
    def timed(self, part: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.add(part, time.perf_counter() - start)

    def scalars(self) -> dict[str, float]:
        wall = max(self.since_start(), 1e-9)
        step = max(wall - sum(self._spent.values()), 0.0)
        out = {"time/wall": wall, "time/step": step}
        out.update({f"time/{part}": seconds for part, seconds in self._spent.items()})
        out["time/goodput"] = min(step / wall, 1.0)
        return out
