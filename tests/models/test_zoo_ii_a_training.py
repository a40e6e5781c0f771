"""AS-MLP, Vision Permutator and Hire-MLP each learn through the trainer on the demo
digits: their `demo` configs (shrunk further to a few steps) run end to end and the
training loss falls."""

import pytest

from smlp_jax.train import trainer
from tests.train.tiny import demo_config, read_metrics

# The demo configs with fewer steps, logging every step.
SHORT = {
    "total_steps": 40,
    "eval_batch_size": 200,
    "input.eval_split": "test[:200]",
    "optimizer.warmup_steps": 5,
    "log_every": 1,
    "eval_every": 0,
    "checkpoint_every": 0,
}
# Per family: the tiny ViP sits on a plateau for its first ~50 steps before it learns (its Linears
# start at N(0, 0.02), as the official init), so it gets more steps.
LONGER = {
    "permutator": {"total_steps": 120},
    "hire_mlp": {"model_kwargs.layers": (1, 1, 1, 1)},  # compiles in half the time
}


def short_demo_config(family: str, data_dir: str):
    return demo_config(family, {**SHORT, **LONGER.get(family, {}), "data_dir": data_dir})


@pytest.mark.parametrize("family", ["as_mlp", "permutator", "hire_mlp"])
def test_demo_config_trains_with_falling_loss(family, demo_data_dir, tmp_path):
    final = trainer.train_and_evaluate(short_demo_config(family, demo_data_dir), str(tmp_path))
    steps = {**SHORT, **LONGER.get(family, {})}["total_steps"]
    losses = [e["train/loss"] for e in read_metrics(tmp_path) if "train/loss" in e]
    assert len(losses) == steps
    first, last = sum(losses[:4]) / 4, sum(losses[-4:]) / 4
    assert last < 0.8 * first, losses
    assert final["step"] == steps and final["eval/top1"] > 0.2  # chance is 0.1
