"""Preemption: a SIGTERM becomes a stop request that the training loop polls.

`PreemptionGuard` sets a flag on one process, or defers to JAX's preemption sync point when
there are several (see its docstring). The loop then saves a checkpoint and exits; rerunning
the same command resumes from it.
"""

from __future__ import annotations

import signal
import threading
from typing import Any

import jax
from jax.experimental import multihost_utils

__all__ = ["PreemptionGuard"]


class PreemptionGuard:
    """Turns a preemption notice (SIGTERM) into a stop request the training loop polls.

    One process: entering installs a SIGTERM handler that sets `should_stop` (the previous
    handler comes back on exit). The loop then saves with `force=True`, `wait()`s and exits.

    Several processes (`jax.distributed`): JAX's preemption service already catches SIGTERM
    in C++ and agrees on a step at which every process stops, so no Python handler is
    installed (it would replace JAX's). Call `should_stop_at(step)` at every step on every
    process; it returns True on all of them at the same step.
    """

    def __init__(self, signals: tuple[int, ...] = (signal.SIGTERM,)):
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
        return self._stop

    def _handle(self, signum: int, frame: Any) -> None:
        del frame
        self._stop = True
        self.signal_received = signal.Signals(signum).name

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
