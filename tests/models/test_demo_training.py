"""Every family learns through the trainer on the demo digits: its `demo` config
(configs/<family>.py), shortened to a few dozen steps, trains end to end, the training loss
falls and the final evaluation beats a top-1 threshold (chance is 0.1).

One row per family: the shortening (most cost is compilation), how the fall is judged (the
mean of the last k logged losses against the first k) and the top-1 to beat, about two
thirds of what the short run reached when measured (2026-12-03 on test[:200]: Mixer 0.66,
ConvMixer 0.70, DynaMixer 0.30, RaftMLP 0.715, Sparse-MLP 0.395)."""

import dataclasses

import pytest

from smlp_jax.train import trainer
from tests.train.tiny import demo_config, read_metrics

_COMMON = {
    "eval_batch_size": 200,
    "input.eval_split": "test[:200]",
    "eval_every": 0,
    "checkpoint_every": 0,
}
# 80 steps logged every 10, a constant lr: a short run should keep learning to its end.
_LOGGED_EVERY_10 = {
    **_COMMON,
    "total_steps": 80,
    "batch_size": 64,
    "log_every": 10,
    "optimizer.warmup_steps": 3,
    "optimizer.schedule": "constant",
    "optimizer.lr": 3e-3,
}
_EVERY_STEP = {**_COMMON, "total_steps": 40, "log_every": 1, "optimizer.warmup_steps": 5}
_SMALL_BATCH = {**_EVERY_STEP, "batch_size": 32, "optimizer.warmup_steps": 2, "optimizer.lr": 3e-3}


@dataclasses.dataclass(frozen=True)
class Row:
    short: dict  # config overrides
    window: int  # losses averaged at each end
    fall: float  # last window < fall x first window
    top1: float  # final eval top-1 to beat
    below_first_three: bool = False  # the last loss also under each of the first three


ROWS = {
    # DynaMixer's N(0, 0.02) init starts slowest; 0.9x is a clear fall for all three.
    "mixer": Row(_LOGGED_EVERY_10, 1, 0.9, 0.4, below_first_three=True),
    "convmixer": Row(_LOGGED_EVERY_10, 1, 0.9, 0.45, below_first_three=True),
    "dynamixer": Row(_LOGGED_EVERY_10, 1, 0.9, 0.2, below_first_three=True),
    "as_mlp": Row(_EVERY_STEP, 4, 0.8, 0.2),
    # The tiny ViP sits on a plateau for its first ~50 steps before it learns (its Linears
    # start at N(0, 0.02), as the official init), so it gets more steps.
    "permutator": Row({**_EVERY_STEP, "total_steps": 120}, 4, 0.8, 0.2),
    "hire_mlp": Row({**_EVERY_STEP, "model_kwargs.layers": (1, 1, 1, 1)}, 4, 0.8, 0.2),
    "raft_mlp": Row(_SMALL_BATCH, 3, 0.8, 0.45),
    # Sparse-MLP's loss includes its MoE load-balancing term (aux_loss_weight x it).
    "sparse_mlp": Row(_SMALL_BATCH, 3, 0.8, 0.25),
}


def short_demo_config(family: str, data_dir: str):
    return demo_config(family, {**ROWS[family].short, "data_dir": data_dir})


@pytest.mark.parametrize("family", list(ROWS))
def test_demo_config_trains_with_falling_loss(family, demo_data_dir, tmp_path):
    row = ROWS[family]
    final = trainer.train_and_evaluate(short_demo_config(family, demo_data_dir), str(tmp_path))
    steps, every = row.short["total_steps"], row.short["log_every"]
    logged = [(e["step"], e["train/loss"]) for e in read_metrics(tmp_path) if "train/loss" in e]
    assert [s for s, _ in logged] == list(range(every, steps + 1, every))
    losses = [loss for _, loss in logged]
    k = row.window
    first, last = sum(losses[:k]) / k, sum(losses[-k:]) / k
    assert last < row.fall * first, losses
    if row.below_first_three:
        assert losses[-1] < min(losses[:3]), losses
    assert final["step"] == steps and final["eval/top1"] > row.top1, final
