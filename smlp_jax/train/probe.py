"""`--mode=probe`: linear-probe and few-shot top-1 of a frozen model (big_vision's
`fewshot_lsr` evaluator).

The model (config.init_from: our checkpoint or official weights; else the workdir's
latest checkpoint) embeds every image of `config.probe.train_split` and of the eval split
with the eval transform: its pooled features, `forward_head(forward_features(x),
pre_logits=True)` `(N, C)`, computed sharded like eval. Then, on the host in float64,
closed-form ridge regression onto {-1, 1} one-hot targets: features whitened with the
train set's mean and std, a constant bias feature of 100 (nearly unregularised), weight
`l2_reg`, solved through one eigen-decomposition (of `x^T x` or `x x^T`, whichever is
smaller). For each `shots` in `config.probe.shots` the train set is `shots` examples a
class (a fresh draw for each of `config.probe.seeds` seeds: the mean is reported), and
`full` uses every train example: `probe/<k>shot` and `probe/full` top-1.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from smlp_jax import data
from smlp_jax.data.sources import eval_split
from smlp_jax.train import sharding
from smlp_jax.train.errors import ConfigError
from smlp_jax.train.metrics import console

BIAS_CONSTANT = 100.0


def make_feature_step(graphs) -> Any:
    """`feature_step(params, model_state, rngs, batch) -> (features, labels, mask)`."""

    def feature_step(params, model_state, rngs, batch):
        model = nnx.merge(graphs.eval, params, rngs, model_state)
        pooled = model.forward_head(model.forward_features(batch["image"]), pre_logits=True)
        return pooled.astype(jnp.float32), batch["label"], batch["mask"]

    return feature_step


def split_features(
    config: Any, split: str, step, state: dict, mesh
) -> tuple[np.ndarray, np.ndarray]:
    """Pooled features `(N, C)` float32 and labels `(N,)` of every example of `split` (each
    exactly once: the eval iterator's padding is masked out)."""
    config = config.copy_and_resolve_references()
    with config.unlocked():
        config.input.eval_split = split
    feats, labels = [], []
    for batch in data.create_eval_iterator(config):
        batch = sharding.global_batch(batch, mesh)
        x, y, mask = jax.device_get(
            step(state["params"], state["model_state"], state["rngs"], batch)
        )
        keep = np.asarray(mask).astype(bool)
        feats.append(np.asarray(x)[keep])
        labels.append(np.asarray(y)[keep])
    return np.concatenate(feats), np.concatenate(labels)


def ridge_top1(
    x: np.ndarray,
    y: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    num_classes: int,
    l2_reg: float,
) -> float:
    """Top-1 on `(x_test, y_test)` of the ridge regression fitted on `(x, y)` (see the
    module docstring)."""
    x, x_test = x.astype(np.float64), x_test.astype(np.float64)
    mean, std = x.mean(0, keepdims=True), x.std(0, keepdims=True) + 1e-5
    pad = lambda a: np.pad((a - mean) / std, ((0, 0), (0, 1)), constant_values=BIAS_CONSTANT)
    x, x_test = pad(x), pad(x_test)
    targets = 2.0 * np.eye(num_classes)[y] - 1.0
    if x.shape[0] >= x.shape[1]:  # (x^T x + l2 I)^-1 x^T y
        eigs, q = np.linalg.eigh(x.T @ x)
        lhs, rhs = q, q.T @ (x.T @ targets)
    else:  # x^T (x x^T + l2 I)^-1 y
        eigs, q = np.linalg.eigh(x @ x.T)
        lhs, rhs = x.T @ q, q.T @ targets
    w = (lhs / (eigs + l2_reg)[None, :]) @ rhs
    return float(np.mean(np.argmax(x_test @ w, axis=1) == y_test))


def few_shot_top1(
    train: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
    num_classes: int,
    *,
    shots=(1, 5, 10, 25),
    seeds: int = 3,
    l2_reg: float = 2.0**10,
) -> dict[str, float]:
    """`{"probe/<k>shot": mean top-1 over seeds, ..., "probe/full": top-1}`."""
    (x, y), (x_test, y_test) = train, test
    present = np.unique(y)
    if len(present) < 2:
        raise ConfigError(
            f"the probe's train split holds {len(present)} class(es); a linear probe needs at "
            "least 2. Set config.probe.train_split to a split with several classes."
        )
    results = {}
    for k in shots:
        accs = []
        for seed in range(seeds):
            rng = np.random.default_rng(seed)
            idx = np.concatenate([rng.permutation(np.flatnonzero(y == c))[:k] for c in present])
            accs.append(ridge_top1(x[idx], y[idx], x_test, y_test, num_classes, l2_reg))
        results[f"probe/{k}shot"] = float(np.mean(accs))
    results["probe/full"] = ridge_top1(x, y, x_test, y_test, num_classes, l2_reg)
    return results


def probe_line(results: dict[str, float]) -> str:
    return "probe | " + " ".join(
        f"{k.removeprefix('probe/').replace('shot', '-shot')} {100 * v:.2f}%"
        for k, v in results.items()
    )


def run_probe(config: Any, state: dict, setup, source: str) -> dict[str, float]:
    """Few-shot and full linear-probe top-1 of the model weights in `state`."""
    step = sharding.under_mesh(
        jax.jit(make_feature_step(setup.graphs), out_shardings=sharding.replicated(setup.mesh)),
        setup.mesh,
    )
    probe = config.probe
    train = split_features(config, str(probe.train_split), step, state, setup.mesh)
    test = split_features(config, eval_split(config), step, state, setup.mesh)
    results = few_shot_top1(
        train,
        test,
        setup.info.num_classes,
        shots=tuple(int(k) for k in probe.shots),
        seeds=int(probe.seeds),
        l2_reg=float(probe.l2_reg),
    )
    console(f"{source}: {probe_line(results)} ({len(train[1])} train / {len(test[1])} test)")
    return results
