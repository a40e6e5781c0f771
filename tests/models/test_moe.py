"""Mixture-of-experts routing and the MoE layer, checked against plain numpy.

The numpy references loop over tokens one at a time (priority order, capacity
counters, the V-MoE loss formulas), so they share no code with the einsum version.
Expert sharding over 8 fake CPU devices runs in a subprocess (`moe_sharding_check.py`).
"""

import math
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from smlp_jax.models.moe import (
    MoeMlp,
    expert_capacity,
    partition_rules,
    top_k_routing,
    total_aux_loss,
    total_dropped_tokens,
)
from tests.train.tiny import FAST_COMPILE


def softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def normal_cdf(x):
    return 0.5 * (1 + np.vectorize(math.erf)(x / math.sqrt(2)))


def route_by_hand(logits, noise, k, capacity):
    """(G, T, E) -> per group a list of (token, expert, slot, gate) kept, and drops."""
    g, t, e = logits.shape
    noisy = logits + noise / e
    gates = softmax(noisy)
    kept, dropped = [], 0
    for group in range(g):
        order = np.argsort(-gates[group], axis=-1, kind="stable")[:, :k]
        used = [0] * e
        for choice in range(k):  # all first choices, then all second choices
            for token in range(t):
                expert = order[token, choice]
                if used[expert] < capacity:
                    kept.append((group, token, expert, used[expert], gates[group, token, expert]))
                    used[expert] += 1
                else:
                    dropped += 1
    return kept, dropped, gates, noisy


def aux_loss_by_hand(logits, noisy, gates, k):
    e = logits.shape[-1]
    importance = gates.reshape(-1, e).sum(0)
    flat_noisy, flat_logits = noisy.reshape(-1, e), logits.reshape(-1, e)
    load = np.zeros(e)
    for row_noisy, row in zip(flat_noisy, flat_logits):
        threshold = np.sort(row_noisy)[::-1][k - 1]
        load += 1 - normal_cdf((threshold - row) * e)
    cv2 = lambda v: v.var() / v.mean() ** 2  # noqa: E731
    return 0.5 * (cv2(importance) + cv2(load))


@pytest.mark.parametrize("k,capacity", [(1, 8), (2, 8), (1, 2), (2, 3)])
def test_routing_matches_hand_rule(k, capacity):
    rng = np.random.default_rng(k * 10 + capacity)
    logits = rng.normal(size=(2, 6, 4)).astype(np.float32)
    noise = rng.normal(size=logits.shape).astype(np.float32)
    routing = top_k_routing(jnp.asarray(logits), k=k, capacity=capacity, noise=jnp.asarray(noise))
    kept, dropped, gates, noisy = route_by_hand(logits, noise, k, capacity)
    dispatch = np.zeros((2, 6, 4, capacity))
    combine = np.zeros((2, 6, 4, capacity))
    for group, token, expert, slot, gate in kept:
        dispatch[group, token, expert, slot] = 1
        combine[group, token, expert, slot] = gate
    np.testing.assert_array_equal(np.asarray(routing.dispatch), dispatch)
    np.testing.assert_allclose(np.asarray(routing.combine), combine, atol=1e-6)
    assert int(routing.dropped) == dropped
    expected_aux = aux_loss_by_hand(logits, noisy, gates, k)
    np.testing.assert_allclose(float(routing.aux_loss), expected_aux, rtol=1e-4, atol=1e-7)


def test_top_k_picks_the_largest_gates_and_overflow_is_dropped_in_priority_order():
    # Every token prefers expert 2, then expert 0; capacity 2.
    logits = np.tile(np.array([1.0, 0.0, 3.0, -1.0], np.float32), (1, 5, 1))
    logits[0, 4, 0] = 2.0  # token 4's second choice is still expert 0 (1 < 2 < 3)
    routing = top_k_routing(jnp.asarray(logits), k=2, capacity=2)
    d = np.asarray(routing.dispatch)[0]  # (T, E, C)
    # First choices: tokens 0, 1 fill expert 2; tokens 2-4 overflow and are dropped.
    assert d[:, 2].sum(-1).tolist() == [1, 1, 0, 0, 0]
    # Second choices go to expert 0 after all first choices: tokens 0 and 1 fill it.
    assert d[:, 0].sum(-1).tolist() == [1, 1, 0, 0, 0]
    assert int(routing.dropped) == 10 - 4
    assert d[:, [1, 3]].sum() == 0


def test_balanced_router_has_near_zero_importance_loss():
    # Gates identical for every expert -> importance is uniform; load too.
    routing = top_k_routing(jnp.zeros((2, 8, 4)), k=1, capacity=8)
    assert float(routing.aux_loss) < 1e-6
    assert expert_capacity(196, 4, 2, 1.25) == 123
    assert expert_capacity(3, 8, 1, 1.0) == 1


def gelu_exact(x):
    return 0.5 * x * (1 + np.vectorize(math.erf)(x / math.sqrt(2)))


def test_moe_layer_matches_numpy_reference():
    layer = MoeMlp(5, 7, 4, k=2, capacity_factor=0.75, rngs=nnx.Rngs(0))
    layer.deterministic = True  # no noise: the reference routes the clean logits
    x = np.random.default_rng(3).normal(size=(3, 6, 5)).astype(np.float32)
    got = np.asarray(layer(jnp.asarray(x)))

    w_router = np.asarray(layer.router.kernel[...])
    ex = layer.experts
    fc1, b1 = np.asarray(ex.fc1_kernel[...]), np.asarray(ex.fc1_bias[...])
    fc2, b2 = np.asarray(ex.fc2_kernel[...]), np.asarray(ex.fc2_bias[...])
    capacity = expert_capacity(6, 4, 2, 0.75)
    kept, dropped, _, _ = route_by_hand(x @ w_router, np.zeros((3, 6, 4)), 2, capacity)
    expected = np.zeros_like(x)
    for group, token, expert, _, gate in kept:
        hidden = gelu_exact(x[group, token] @ fc1[expert] + b1[expert])
        expected[group, token] += gate * (hidden @ fc2[expert] + b2[expert])
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert dropped > 0  # capacity 3 < 6 tokens x 2 choices / 4 experts on average
    assert int(layer.dropped_tokens[...]) == dropped


def test_aux_loss_and_drops_are_collected_and_noise_only_in_train_mode():
    class Two(nnx.Module):
        def __init__(self):
            self.a = MoeMlp(4, 8, 4, k=1, capacity_factor=1.0, rngs=nnx.Rngs(0))
            self.b = MoeMlp(4, 8, 4, k=2, capacity_factor=1.0, rngs=nnx.Rngs(1))

        def __call__(self, x):
            return self.b(self.a(x))

    model = Two()
    x = jax.random.normal(jax.random.key(0), (2, 8, 4))
    y1, y2 = model(x), model(x)
    assert not np.allclose(np.asarray(y1), np.asarray(y2))  # fresh gate noise each call
    expected = float(model.a.aux_loss[...]) + float(model.b.aux_loss[...])
    assert float(total_aux_loss(model)) == pytest.approx(expected)
    dropped = int(model.a.dropped_tokens[...]) + int(model.b.dropped_tokens[...])
    assert int(total_dropped_tokens(model)) == dropped
    model.eval()
    np.testing.assert_array_equal(np.asarray(model(x)), np.asarray(model(x)))


def test_gradients_reach_router_and_experts():
    layer = MoeMlp(4, 8, 4, k=2, capacity_factor=2.0, rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(1), (2, 8, 4))

    def loss(layer):
        return jnp.sum(layer(x) ** 2) + layer.aux_loss[...]

    grads = nnx.grad(loss)(layer)
    assert float(jnp.abs(grads.router.kernel[...]).sum()) > 0
    assert float(jnp.abs(grads.experts.fc1_kernel[...]).sum()) > 0


def test_partition_rule_names_the_stacked_expert_weights():
    import re

    layer = MoeMlp(4, 8, 4, k=1, capacity_factor=1.0, rngs=nnx.Rngs(0))
    paths = ["/".join(map(str, p)) for p, _ in nnx.to_flat_state(nnx.state(layer, nnx.Param))]
    (pattern, spec), *_ = partition_rules()
    matched = sorted(p for p in paths if re.search(pattern, p))
    assert matched == [f"experts/{n}" for n in ("fc1_bias", "fc1_kernel", "fc2_bias", "fc2_kernel")]
    assert spec[0] == "expert"


def test_expert_sharded_forward_and_backward_match_one_device():
    env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count=8 {FAST_COMPILE}"}
    env["JAX_PLATFORMS"] = "cpu"
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    done = subprocess.run(
        [sys.executable, "-m", "tests.models.moe_sharding_check"],
        env=env,
        cwd=root,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "expert-sharded == single device" in done.stdout


def test_train_step_adds_the_weighted_moe_aux_loss(demo_data_dir):
    """The trainer's loss is `cross-entropy + aux_loss_weight x total_aux_loss`; the aux
    term of a fresh Sparse-MLP is positive (same state, batch and rngs in both steps)."""
    from smlp_jax.train.step import make_train_step
    from smlp_jax.train.trainer import build
    from tests.models.test_demo_training import short_demo_config

    images = np.random.default_rng(0).normal(size=(8, 32, 32, 3)).astype(np.float32)
    batch = {"image": images, "label": np.arange(8, dtype=np.int32) % 10}
    losses = {}
    for weight in (0.0, 100.0):
        config = short_demo_config("sparse_mlp", demo_data_dir)
        config.aux_loss_weight = weight
        setup = build(config)
        step = jax.jit(
            make_train_step(config, setup.graphs, setup.tx, setup.schedule, setup.info.num_classes)
        )
        _, metrics, _ = step(setup.make_state(), batch)
        losses[weight] = float(metrics.compute()["loss"])
    # 100 x a load-balancing loss of random routers is far above float noise.
    assert losses[100.0] - losses[0.0] > 1e-3, losses
