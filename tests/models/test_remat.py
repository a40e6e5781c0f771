"""`models/remat.py`: every family's blocks recomputed in the backward give the same loss,
gradients and state updates as kept activations, and keep less for the backward; the
trainer reads the policy from `config.remat` and refuses an unknown one in one line."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from jax._src.ad_checkpoint import saved_residuals

import smlp_jax
from smlp_jax.models import macs, remat
from smlp_jax.train import cli, state, trainer
from tests.models.test_features import SIDE, TINY
from tests.train.tiny import demo_config, tiny_config


def _loss_and_grads(name: str, policy: str, **overrides):
    """(loss, grads, state after) of one train-mode step of the tiny `name` under `policy`."""
    model = smlp_jax.create_model(
        name, num_classes=5, image_size=SIDE, rngs=0, **{**TINY[name], **overrides}
    )
    model.train()
    graphdef, params, rngs, model_state = state.split(model)
    images = jax.random.normal(jax.random.key(1), (4, SIDE, SIDE, 3))
    labels = jnp.arange(4) % 5

    def loss_fn(params):
        m = nnx.merge(graphdef, params, rngs, model_state, copy=True)
        with remat.policy(policy):
            logits = m(images).astype(jnp.float32)
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
        return loss, nnx.to_pure_dict(nnx.state(m, nnx.Not(nnx.Param)))

    (loss, after), grads = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))(params)
    return loss, grads, after


def _assert_same(got, want, tol=2e-5):
    flat_got, flat_want = jax.tree.leaves_with_path(got), jax.tree.leaves_with_path(want)
    assert [p for p, _ in flat_got] == [p for p, _ in flat_want]
    for (path, a), (_, b) in zip(flat_got, flat_want):
        if jnp.issubdtype(a.dtype, jax.dtypes.prng_key):
            a, b = jax.random.key_data(a), jax.random.key_data(b)
        a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
        # Float32 rounding: XLA fuses the recomputed forward differently, and the norms'
        # backward amplifies a last-bit difference in a sum; relative to the array's size.
        error = np.max(np.abs(a - b), initial=0.0) / (np.max(np.abs(b), initial=0.0) + 1e-12)
        assert error < tol, (jax.tree_util.keystr(path), error)


@pytest.mark.parametrize("name", sorted(TINY))
def test_every_family_rematted_computes_the_same(name):
    """Each family's tiny model: loss, every gradient and the state it leaves (BatchNorm
    statistics, rng counters, MoE statistics) equal, to float32 rounding, to the step that
    keeps everything."""
    want = _loss_and_grads(name, "")
    _assert_same(_loss_and_grads(name, "nothing_saveable"), want)


@pytest.mark.parametrize("policy", ["dots_saveable", "dots_with_no_batch_dims_saveable"])
def test_each_policy_with_drop_path_computes_the_same(policy):
    """sMLPNet with drop path (random draws inside the rematted blocks, drawn again in
    the backward from the same state) under the other policies."""
    want = _loss_and_grads("smlpnet_t", "", drop_path_rate=0.3)
    _assert_same(_loss_and_grads("smlpnet_t", policy, drop_path_rate=0.3), want)


def _abstract_loss(policy: str, batch: int):
    """(loss, abstract args): the summed logits of the tiny train-mode sMLPNet under
    `policy`, as a function of (params, rngs, model_state, images); shapes only."""
    model = nnx.eval_shape(
        lambda: smlp_jax.create_model(
            "smlpnet_t", num_classes=5, image_size=SIDE, rngs=0, **TINY["smlpnet_t"]
        )
    )
    model.train()
    graphdef, params, rngs, model_state = state.split(model)

    def loss(params, rngs, model_state, images):
        with remat.policy(policy):
            return nnx.merge(graphdef, params, rngs, model_state)(images).sum()

    images = jax.ShapeDtypeStruct((batch, SIDE, SIDE, 3), jnp.float32)
    return loss, (params, rngs, model_state, images)


def _saved_bytes(policy: str) -> int:
    loss, args = _abstract_loss(policy, batch=8)
    return sum(
        a.size * a.dtype.itemsize
        for a, d in saved_residuals(loss, *args)
        if not d.startswith("from the argument params")
    )


def test_nothing_saveable_keeps_far_less_for_the_backward():
    kept, rematted = _saved_bytes(""), _saved_bytes("nothing_saveable")
    assert rematted < kept / 3, (kept, rematted)
    assert _saved_bytes("dots_saveable") < kept  # matmul outputs only, at this tiny width


def test_an_unknown_policy_is_one_line(tmp_path, capsys):
    with pytest.raises(ValueError, match="nothing_saveable, dots_saveable"):
        with remat.policy("dots"):
            pass
    config = demo_config("smlpnet", {"remat": "checkpoint_dots", "total_steps": 1})
    assert cli.run(config, str(tmp_path)) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: config.remat='checkpoint_dots' is not a") and "\n" not in err
    assert not (tmp_path / "checkpoints").exists()


def test_the_train_step_reads_config_remat(demo_data_dir):
    """The trainer's jitted step with `config.remat`: each block under `jax.checkpoint` in
    its traced program (none without), the same loss and parameters after a step (to
    float32 rounding) as without, and the same model FLOPs for the MFU. (Not XLA CPU's
    memory plan: XLA CPU merges the recomputation back into the forward, so its
    temporaries are the same either way, within a few hundred bytes at this size;
    `test_nothing_saveable_keeps_far_less_for_the_backward` reads what the backward keeps.)"""
    images = jax.random.normal(jax.random.key(0), (8, 16, 16, 3))
    batch = {"image": images, "label": np.arange(8, dtype=np.int32) % 10}
    results = {}
    for policy in ("", "nothing_saveable"):
        config = tiny_config(demo_data_dir, remat=policy)
        setup = trainer.build(config)
        state0 = trainer.create_state(setup.make_state, setup.shardings)
        step = trainer.make_train_step(
            config, setup.graphs, setup.tx, setup.schedule, setup.info.num_classes, setup.plan
        )
        jitted = jax.jit(step, donate_argnums=(0,))
        flops, _ = trainer._step_flops_and_peak(
            config, setup.plan, jitted, state0, batch, setup.mesh
        )  # the MFU's count: the model's FLOPs, not the recomputation
        traced = str(jax.make_jaxpr(step)(state0, batch))
        state1, metrics, _ = jitted(state0, batch)
        checkpoints = traced.count("remat2[")  # jax.checkpoint's primitive
        results[policy] = (float(metrics.compute()["loss"]), state1["params"], checkpoints, flops)
    (loss, params, checkpoints, flops), (loss_r, params_r, checkpoints_r, flops_r) = (
        results[""],
        results["nothing_saveable"],
    )
    assert loss_r == pytest.approx(loss, rel=1e-6)
    # After AdamW's first step: it divides each gradient by its own magnitude, so where a
    # gradient is near epsilon (a norm's bias) its rounding goes straight into the weight.
    _assert_same(params_r, params, tol=1e-4)
    assert checkpoints == 0 and checkpoints_r >= 2, (checkpoints, checkpoints_r)  # 2 blocks+
    assert flops_r == flops > 0


def test_model_flops_leave_the_recomputation_out():
    """A rematted step's jaxpr holds the recomputed forward; MFU counts the model's FLOPs,
    so the trainer counts under `remat.disabled()`: the count without remat."""

    def flops(policy):
        loss, args = _abstract_loss(policy, batch=4)
        return macs.model_flops(jax.grad(loss), *args)

    plain = flops("")
    assert flops("nothing_saveable") > 1.1 * plain
    with remat.disabled():
        assert flops("nothing_saveable") == plain
