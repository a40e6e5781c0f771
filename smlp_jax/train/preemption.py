"""Preemption and Ctrl-C: SIGTERM or SIGINT becomes a stop request the training loop polls.

`PreemptionGuard` sets a flag on one process, or defers to JAX's preemption sync point when
there are several (see its docstring). The loop then saves a checkpoint and exits with
`exit_status(signal)` (128 + the signal number: 143 for SIGTERM, 130 for Ctrl-C, so shell
loops and schedulers do not take a stopped run for a finished one); rerunning the same
command resumes from it. A second signal exits without that checkpoint, but not without
the one already being written: when the trainer's asynchronous save of an earlier step is
still in flight, the handler waits for it to commit (at most `SAVE_WAIT_S`, polling the
directory Orbax renames at commit), then exits; with nothing in flight it exits at once.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, NoReturn

import jax
from jax.experimental import multihost_utils

__all__ = ["SAVE_WAIT_S", "PreemptionGuard", "exit_status"]

# How long a second signal waits for a checkpoint being written: a scheduler's grace period
# after SIGTERM is typically 30 s or more, and a person pressing Ctrl-C twice can press a
# third time (which exits at once).
SAVE_WAIT_S = 30.0


def exit_status(signal_name: str) -> int:
    """The exit status of a run stopped by `signal_name` ("SIGTERM", "SIGINT"): 128 + its
    number, the status a shell reports for a process that signal ended."""
    return 128 + int(signal.Signals[signal_name])


def _say(line: str) -> None:
    """Prints `line` on stdout from a signal handler: straight to the file descriptor, as the
    interrupted main thread may be inside a print to the same stream (a second, reentrant
    write to its buffer would raise instead of printing)."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # not a file (a test's captured stdout)
        print(line, flush=True)
        return
    os.write(fd, (line + "\n").encode())


class PreemptionGuard:
    """Turns a preemption notice (SIGTERM) or Ctrl-C (SIGINT) into a stop request the
    training loop polls.

    One process: entering installs handlers that set `should_stop` and say so in one line
    (the previous handlers come back on exit). The loop then saves with `force=True`,
    `wait()`s and exits. A second signal exits the process (status 128 + signal) without
    that checkpoint. Given `in_flight` (-> the step a save is writing right now, or None)
    and `committed` (step -> whether it is on disk for good), as `Checkpointer.in_flight_step`
    and `is_committed`, it first waits for that step to commit, at most `save_wait_s`
    seconds, polling both every 0.1 s from the handler while Orbax's threads go on writing.
    It says what it waits for and, after, whether the step was committed; a step that was
    not is a temporary directory the resumed run ignores (it resumes from the step before).
    With nothing in flight, or at a third signal, it exits at once.

    Several processes (`jax.distributed`): JAX's preemption service already catches SIGTERM
    in C++ and agrees on a step at which every process stops, so no Python handler is
    installed (it would replace JAX's); Ctrl-C keeps Python's default there. Call
    `should_stop_at(step)` at every step on every process; it returns True on all of them
    at the same step (`signal_received` is then "SIGTERM").
    """

    def __init__(
        self,
        signals: tuple[int, ...] = (signal.SIGTERM, signal.SIGINT),
        *,
        in_flight: Callable[[], int | None] | None = None,
        committed: Callable[[int], bool] | None = None,
        save_wait_s: float = SAVE_WAIT_S,
    ):
        if (in_flight is None) != (committed is None):
            raise ValueError("Give both in_flight and committed, or neither.")
        self._signals = signals
        self._previous: dict[int, Any] = {}
        self._stop = False
        self._in_flight = in_flight
        self._committed = committed
        self._save_wait_s = save_wait_s
        self._waiting_for: int | None = None  # the step a second signal is waiting for
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
        if self._stop:  # the second request: stop now, without the checkpoint it asked for
            self._exit_after_save_in_flight(name)
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

    def _exit_after_save_in_flight(self, name: str) -> NoReturn:
        """Exits with `exit_status(name)` once the step being written (if any) is committed,
        has failed, or `save_wait_s` has passed; says which."""
        status = exit_status(name)
        if self._waiting_for is not None:  # a third signal, during the wait below
            _say(f"{name} again: exiting now, without the checkpoint of step {self._waiting_for}")
            os._exit(status)
        step = self._in_flight() if self._in_flight is not None else None
        if step is None:
            _say(f"{name} again: exiting now, without the checkpoint")
            os._exit(status)
        self._waiting_for = step
        _say(
            f"{name} again: waiting up to {self._save_wait_s:g} s for the checkpoint of step "
            f"{step} being written, then exiting"
        )
        try:  # whatever happens while waiting, a second signal ends the process
            deadline = time.monotonic() + self._save_wait_s
            while time.monotonic() < deadline and not self._committed(step):
                if self._in_flight() != step:  # no longer written, not committed: it failed
                    break
                time.sleep(0.1)
            if self._committed(step):
                outcome = "is committed; exiting"
            elif self._in_flight() == step:
                outcome = f"was not committed within {self._save_wait_s:g} s; exiting without it"
            else:
                outcome = "could not be written; exiting without it"
            _say(f"the checkpoint of step {step} {outcome}")
        finally:
            os._exit(status)

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
