"""PreemptionGuard on one process: SIGTERM becomes a flag and the old handler comes back.
(Two processes stopping at the same step: tests/train/test_checkpoint.py.)"""

import os
import signal

from smlp_jax.train import preemption


def test_preemption_guard_turns_sigterm_into_a_flag():
    before = signal.getsignal(signal.SIGTERM)
    with preemption.PreemptionGuard() as guard:
        assert not guard.should_stop and not guard.should_stop_at(0)
        os.kill(os.getpid(), signal.SIGTERM)
        for _ in range(100):  # the handler runs between bytecodes of the main thread
            if guard.should_stop:
                break
        assert guard.should_stop and guard.should_stop_at(1)
        assert guard.signal_received == "SIGTERM"
    assert signal.getsignal(signal.SIGTERM) == before
