"""Preemption and Ctrl-C: SIGTERM or SIGINT becomes a stop request the training loop polls.

`PreemptionGuard` sets a flag on one process, or defers to JAX's preemption sync point when
there are several (see its docstring). The loop then saves a checkpoint and exits with
`exit_status(signal)` (128 + the signal number: 143 for SIGTERM, 130 for Ctrl-C, so shell
loops and schedulers do not take a stopped run for a finished one); rerunning the same
command resumes from it. A second signal while the save is under way exits at once.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from typing import Any

import jax
from jax.experimental import multihost_utils

__all__ = ["PreemptionGuard", "exit_status"]


def exit_status(signal_name: str) -> int:
    """The exit status of a run stopped by `signal_name` ("SIGTERM", "SIGINT"): 128 + its
    number, the status a shell reports for a process that signal ended."""
    return 128 + int(signal.Signals[signal_name])


class PreemptionGuard:
    """Turns a preemption notice (SIGTERM) or Ctrl-C (SIGINT) into a stop request the
    training loop polls.

    One process: entering installs handlers that set `should_stop` and say so in one line
    (the previous handlers come back on exit). The loop then saves with `force=True`,
    `wait()`s and exits. A second signal exits the process at once (status 128 + signal):
    the checkpoints already written are complete; a save in flight is discarded on resume.

    Several processes (`jax.distributed`): JAX's preemption service already catches SIGTERM
    in C++ and agrees on a step at which every process stops, so no Python handler is
    installed (it would replace JAX's); Ctrl-C keeps Python's default there. Call
    `should_stop_at(step)` at every step on every process; it returns True on all of them
    at the same step (`signal_received` is then "SIGTERM").
    """

    def __init__(self, signals: tuple[int, ...] = (signal.SIGTERM, signal.SIGINT)):
        self._signals = signals
        self._previous: dict[int, Any] = {}
        self._stop = False
        self.signal_received: str | None = None

    @property
    def should_stop(self) -> bool:
        """True once a stop was requested (a signal here, or the multi-process sync point)."""
        return self._stop

    def should_stop_at(self, step: int) -> bool:
        """Whether to save and stop after `step`; collective when there are several processes."""
        if jax.process_count() > 1 and not self._stop:
            self._stop = multihost_utils.reached_preemption_sync_point(int(step))
            if self._stop:
                self.signal_received = "SIGTERM"
        return self._stop

    def _handle(self, signum: int, frame: Any) -> None:
        del frame
        name = signal.Signals(signum).name
        if self._stop:  # the second request: stop now, without waiting for the save
            print(f"{name} again: exiting now, without the checkpoint", flush=True)
            os._exit(exit_status(name))
        self._stop = True
        self.signal_received = name
        # Say how to stop at once in terms of what arrived: a scheduler's SIGTERM has no
        # keyboard behind it.
        again = "press Ctrl-C again" if name == "SIGINT" else f"a second {name} or Ctrl-C"
        print(
            f"{name}: saving a checkpoint after this step, then exiting ({again} to exit at once)",
            file=sys.stderr,
            flush=True,
        )

    def __enter__(self) -> PreemptionGuard:
        # Python only lets the main thread install handlers; elsewhere (e.g. a notebook
        # worker thread) the guard stays passive rather than failing.
        if jax.process_count() == 1 and threading.current_thread() is threading.main_thread():
            for signum in self._signals:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc_info) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous.clear()
