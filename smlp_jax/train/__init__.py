"""Training: the loop, optimiser, sharding, checkpoints and metrics (docs/design.md).

from smlp_jax.train import train_and_evaluate
final = train_and_evaluate(config, workdir)  # {"step", "train/loss", "eval/top1", ...}
"""


def train_and_evaluate(config, workdir: str) -> dict[str, float]:
    """Trains and evaluates `config` in `workdir`; see `smlp_jax.train.trainer`."""
    from smlp_jax.train import trainer  # lazy: `import smlp_jax.train.checkpoint` stays light

    return trainer.train_and_evaluate(config, workdir)


def evaluate_only(config, workdir: str) -> dict[str, float]:
    """Evaluates `config.init_from` (or the workdir's latest checkpoint)."""
    from smlp_jax.train import trainer  # lazy: as above

    return trainer.evaluate_only(config, workdir)


__all__ = ["evaluate_only", "train_and_evaluate"]
