"""`config.profile`: a `jax.profiler` trace of a range of train steps, in the workdir.

`config.profile = "10:15"` starts the trace when 10 updates are done and stops it once
update 15 has finished on the device (steps 11 to 15, as the console counts them). The trace
goes to `WORKDIR/profile/plugins/profile/<time>/`: `*.xplane.pb` for TensorBoard's profile
plugin (`tensorboard --logdir WORKDIR/profile`), `*.trace.json.gz` and
`perfetto_trace.json.gz` (Chrome trace format) for Perfetto (ui.perfetto.dev loads it in
the browser, nothing is uploaded) or chrome://tracing. All written locally, no network. With
several processes each writes its own `profile/process_<i>/`. A range that starts before a
resumed run's step is traced from that step on; one the run has passed is skipped, saying so.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import jax

from smlp_jax.train.errors import ConfigError


def profile_range(spec: Any, total_steps: int) -> tuple[int, int] | None:
    """`config.profile` -> (start, stop), checked against the run's `total_steps`; None
    when empty. "start:stop" (or "start,stop", or a pair) with 0 <= start < stop <= total."""
    if spec is None or spec == "" or spec == ():
        return None
    parsed = None
    if isinstance(spec, tuple | list) and len(spec) == 2:
        parsed = spec
    elif isinstance(spec, str):
        match = re.fullmatch(r"\s*(\d+)\s*[:,]\s*(\d+)\s*", spec)
        parsed = match.groups() if match else None
    try:
        start, stop = (int(v) for v in parsed) if parsed else (None, None)
    except (TypeError, ValueError):
        start = stop = None
    if start is None or not 0 <= start < stop <= total_steps:
        raise ConfigError(
            f"config.profile={spec!r}: give 'start:stop', the train steps to trace (from "
            f"`start` updates done to `stop`), with 0 <= start < stop <= total_steps "
            f"({total_steps}), e.g. '10:15'; '' for no profile."
        )
    return start, stop


class StepProfiler:
    """Starts and stops the trace around the configured steps (`before` each step is
    dispatched, `after` each has been); `close` stops a trace still running."""

    def __init__(self, workdir: str, steps: tuple[int, int] | None, start_step: int, say):
        self._say = say
        self.directory = Path(workdir) / "profile"
        if jax.process_count() > 1:
            self.directory = self.directory / f"process_{jax.process_index()}"
        self._steps = steps
        self._active = False
        if steps is not None and steps[1] <= start_step:
            say(
                f"config.profile={steps[0]}:{steps[1]} lies before step {start_step}, where "
                "this run resumes: no profile is taken"
            )
            self._steps = None

    def before(self, step: int) -> None:
        """Called with the updates done so far, before the next is dispatched."""
        if self._steps is None or self._active:
            return
        start, stop = self._steps
        if start <= step < stop:
            self.directory.mkdir(parents=True, exist_ok=True)
            jax.profiler.start_trace(str(self.directory), create_perfetto_trace=True)
            self._active = True
            self._first = step + 1

    def after(self, step: int, outputs: Any) -> bool:
        """Called with the updates done, `outputs` the last step's (waited for); True when
        it stopped the trace and wrote it (seconds that are no train step)."""
        if self._active and step >= self._steps[1]:
            jax.block_until_ready(outputs)
            self._stop(step)
            return True
        return False

    def _stop(self, step: int) -> None:
        jax.profiler.stop_trace()
        self._active, self._steps = False, None
        runs = sorted((self.directory / "plugins" / "profile").glob("*"))
        where = runs[-1] if runs else self.directory
        self._say(
            f"profile of train steps {self._first}-{step} written to {where} "
            f"(TensorBoard: tensorboard --logdir {self.directory}; Perfetto or chrome://tracing: "
            "its perfetto_trace.json.gz)"
        )

    def close(self, step: int) -> None:
        if self._active:
            self._stop(step)
