"""`--mode=probe` (smlp_jax.train.probe): the closed-form ridge regression equals a direct
solve in both of its forms; few-shot draws take k examples a class; a one-class train
split is one clear line. The end-to-end probe of a trained checkpoint is in
tests/train/test_trainer.py (it reuses that module's trained run)."""

import numpy as np
import pytest

from smlp_jax.train import probe
from smlp_jax.train.errors import ConfigError


def _direct(x, y, x_test, y_test, num_classes, l2):
    mean, std = x.mean(0, keepdims=True), x.std(0, keepdims=True) + 1e-5
    pad = lambda a: np.pad((a - mean) / std, ((0, 0), (0, 1)), constant_values=100.0)
    a, t = pad(x), 2.0 * np.eye(num_classes)[y] - 1.0
    w = np.linalg.solve(a.T @ a + l2 * np.eye(a.shape[1]), a.T @ t)
    return np.mean(np.argmax(pad(x_test) @ w, 1) == y_test), pad(x_test) @ w


@pytest.mark.parametrize("n", [200, 6])  # more points than dimensions, and fewer
def test_ridge_equals_a_direct_solve(n):
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 16))
    y = rng.integers(0, 3, n)
    x = centres[y] + 0.5 * rng.normal(size=(n, 16))
    y_test = rng.integers(0, 3, 100)
    x_test = centres[y_test] + 0.5 * rng.normal(size=(100, 16))
    expected, _ = _direct(x, y, x_test, y_test, 3, 4.0)
    assert probe.ridge_top1(x, y, x_test, y_test, 3, 4.0) == pytest.approx(expected, abs=1e-12)
    if n > 16:  # separable clusters: the probe finds them
        assert expected > 0.9


def test_few_shot_reports_each_shot_count_and_full():
    rng = np.random.default_rng(1)
    centres = rng.normal(size=(4, 8)) * 3
    y = np.repeat(np.arange(4), 30)
    x = centres[y] + rng.normal(size=(120, 8))
    results = probe.few_shot_top1((x, y), (x, y), 4, shots=(1, 5), seeds=2, l2_reg=1.0)
    assert list(results) == ["probe/1shot", "probe/5shot", "probe/full"]
    assert all(0.0 <= v <= 1.0 for v in results.values())
    assert results["probe/full"] > 0.9
    assert probe.probe_line(results).startswith("probe | 1-shot ")


def test_one_class_is_one_clear_line():
    x, y = np.ones((10, 4)), np.zeros(10, int)
    with pytest.raises(ConfigError, match="holds 1 class.*needs at least 2"):
        probe.few_shot_top1((x, y), (x, y), 10)
