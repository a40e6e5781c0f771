"""The jitted train and eval steps: pure functions over the train state (see state.py).

train_step(state, batch) -> (state, TrainMetrics, bad_step)
    batch: {"image": (B, H, W, 3) float32, "label": (B,) int32}, B the global batch;
    with `input.on_device` set the image is the host's uint8 crop (or padded decode) and
    the input plan's device function (resize, flip, RandAugment, normalisation, random
    erasing: data.input_plan) runs here first.
    Mixup/CutMix and label smoothing run here on device; their rng and the drop-path
    masks come from `fold_in(seed, step)`, so a resumed run repeats them exactly. With
    `grad_accum_steps = k` the batch is cut into k micro-batches whose gradients are
    averaged (one optimiser update per step). A step whose loss or gradient is not
    finite reports its number in `bad_step` (`NO_BAD_STEP` otherwise); the loop reads it
    before any log line, evaluation or save, so a NaN state is never evaluated or
    checkpointed. The parameters keep their values on such a step (its update is zeroed),
    the rest of the state is not guarded: a `where(finite, new, old)` over every array made
    XLA copy each old array before its in-place update (1,125 copies a step for sMLPNet-T)
    and cost 10-20% of the compile and a third of the compilation cache's read
    (benchmarks/README.md, "The non-finite guard"). Parameters that
    `optimizer.freeze` matches take no gradient and are kept bit for bit (`optim`).
    With `config.freeze_batch_stats` the model's BatchNorm layers run as in eval mode
    (normalised by the running statistics, which stay bit for bit as they were) while
    everything else (drop path, augmentation) runs as in training: a linear probe of a
    frozen BatchNorm backbone.

eval_step(params, model_state, rngs, batch) -> EvalMetrics
    batch adds "mask": (B,) bool; padded examples count nowhere.
"""

# No `from __future__ import annotations`: clu reads the metric fields' annotations as types.
from collections.abc import Callable
from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax
from clu import metrics as clu_metrics
from flax import nnx

from smlp_jax import data
from smlp_jax.models import remat
from smlp_jax.models.moe import total_aux_loss
from smlp_jax.train import optim
from smlp_jax.train.errors import ConfigError
from smlp_jax.train.state import ModelGraphs, ema_update, rngs_for_step

NO_BAD_STEP = jnp.iinfo(jnp.int32).max
_MIXUP_TAG, _MODEL_TAG, _AUGMENT_TAG = 0, 1, 2


@flax.struct.dataclass
class TrainMetrics(clu_metrics.Collection):
    loss: clu_metrics.Average.from_output("loss")
    top1: clu_metrics.Average.from_output("top1")
    grad_norm: clu_metrics.Average.from_output("grad_norm")
    lr: clu_metrics.LastValue.from_output("lr")


@flax.struct.dataclass
class EvalMetrics(clu_metrics.Collection):
    loss: clu_metrics.Average.from_output("loss")
    top1: clu_metrics.Average.from_output("top1")
    top5: clu_metrics.Average.from_output("top5")


LOSSES = ("softmax_xent", "sigmoid_xent")


def softmax_xent(logits: jax.Array, targets: jax.Array) -> jax.Array:
    """mean_b sum_k -targets * log_softmax(logits): timm's SoftTargetCrossEntropy (and its
    LabelSmoothingCrossEntropy, given smoothed one-hot targets). (B, K), (B, K) -> ()."""
    return optax.softmax_cross_entropy(logits, targets).mean()


def sigmoid_xent(logits: jax.Array, targets: jax.Array) -> jax.Array:
    """big_vision's `sigmoid_xent`: per-class binary cross-entropy summed over classes,
    averaged over the batch. (B, K), (B, K) -> ()."""
    log_p, log_not_p = jax.nn.log_sigmoid(logits), jax.nn.log_sigmoid(-logits)
    return -jnp.sum(targets * log_p + (1.0 - targets) * log_not_p, axis=-1).mean()


def loss_function(name: str) -> Callable[[jax.Array, jax.Array], jax.Array]:
    if name not in LOSSES:
        raise ConfigError(f"config.loss={name!r} is not a loss; use one of {', '.join(LOSSES)}.")
    return softmax_xent if name == "softmax_xent" else sigmoid_xent


def check_freeze_batch_stats(config: Any, model: nnx.Module) -> None:
    """`config.freeze_batch_stats` on a model without BatchNorm statistics is a one-line
    ConfigError (it would do nothing). `model`: the run's abstract model."""
    if not config.get("freeze_batch_stats", False):
        return
    if not jax.tree.leaves(nnx.state(model, nnx.BatchStat)):
        raise ConfigError(
            f"config.freeze_batch_stats=True but {config.model} has no BatchNorm statistics "
            "to freeze; set it to False."
        )


def check_remat(config: Any) -> str:
    """`config.remat`, a `models.remat` policy's name or "" (off); else a ConfigError."""
    try:
        return remat.check(str(config.get("remat", "") or ""))
    except ValueError as err:
        raise ConfigError(f"config.{err}") from None


def _model_state_after(model: nnx.Module) -> dict:
    return nnx.to_pure_dict(nnx.split(model, nnx.Param, nnx.RngState, ...)[3])


def make_train_step(
    config: Any,
    graphs: ModelGraphs,
    tx: optax.GradientTransformation,
    schedule: optax.Schedule,
    num_classes: int,
    plan: data.input_plan.InputPlan | None = None,
) -> Callable:
    """Builds `train_step(state, batch)` for jitting (the config is read here, once). `plan`
    is the run's input plan (`data.input_plan.plan(config)` when not given): its device
    function runs first, on what the host sent."""
    mix = config.mixup
    accum = int(config.grad_accum_steps)
    ema_decay = float(config.ema.decay or 0.0)
    seed = int(config.seed)
    aux_loss_weight = float(config.aux_loss_weight)
    task_loss = loss_function(config.loss)
    remat_policy = check_remat(config)
    # Frozen parameters (optimizer.freeze): no gradient, and kept bit for bit.
    freeze = tuple(config.optimizer.get("freeze", ()) or ())
    freeze_batch_stats = bool(config.get("freeze_batch_stats", False))
    data.check_mixup_mode(mix.mode, float(mix.cutmix_alpha))
    augment = (plan or data.input_plan.plan(config)).device_function()

    # big_vision mixes within each device's shard of the batch (the batch is split over all
    # devices here too).
    mix_groups = jax.device_count() if mix.mode == "big_vision" else 1

    def loss_fn(params, model_state, rngs, images, targets, labels):
        if freeze:
            params = optim.stop_frozen_gradients(params, freeze)
        model = nnx.merge(graphs.train, params, rngs, model_state)
        if freeze_batch_stats:  # BatchNorm on its running statistics, which it then keeps
            model.set_attributes(use_running_average=True, raise_if_not_found=False)
        with remat.policy(remat_policy):  # each block recomputed in the backward, if set
            logits = model(images).astype(jnp.float32)
        loss = task_loss(logits, targets)
        if aux_loss_weight:  # MoE load balancing (0 for models without MoE layers)
            loss = loss + aux_loss_weight * total_aux_loss(model)
        correct = jnp.sum(jnp.argmax(logits, -1) == labels)
        return loss, (_model_state_after(model), correct)

    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

    def train_step(state, batch):
        step = state["step"]
        step_key = jax.random.fold_in(jax.random.key(seed), step)
        images = batch["image"]
        if augment is not None:
            images = augment(jax.random.fold_in(step_key, _AUGMENT_TAG), batch)
        images, targets = data.mixup_cutmix(
            jax.random.fold_in(step_key, _MIXUP_TAG),
            images,
            batch["label"],
            num_classes=num_classes,
            mixup_alpha=mix.mixup_alpha,
            cutmix_alpha=mix.cutmix_alpha,
            switch_prob=mix.switch_prob,
            prob=mix.prob,
            label_smoothing=mix.label_smoothing,
            mode=mix.mode,
            groups=mix_groups,
        )
        rngs = rngs_for_step(state["rngs"], step)
        params = state["params"]
        if accum == 1:
            (loss, (model_state, correct)), grads = grad_fn(
                params, state["model_state"], rngs, images, targets, batch["label"]
            )
        else:
            # Micro-batch i holds examples i, i+k, i+2k, ...: the reshape keeps the
            # (sharded) batch axis in place, so no data moves between devices.
            def micro(x):
                return jnp.swapaxes(x.reshape(x.shape[0] // accum, accum, *x.shape[1:]), 0, 1)

            def body(carry, xs):
                grad_sum, model_state, loss_sum, correct_sum = carry
                i, im, tg, lb = xs
                (loss, (model_state, correct)), grads = grad_fn(
                    params, model_state, rngs_for_step(rngs, i), im, tg, lb
                )
                grad_sum = jax.tree.map(jnp.add, grad_sum, grads)
                return (grad_sum, model_state, loss_sum + loss, correct_sum + correct), None

            zeros = jax.tree.map(jnp.zeros_like, params)
            init = (zeros, state["model_state"], jnp.zeros(()), jnp.zeros((), jnp.int32))
            xs = (jnp.arange(accum), micro(images), micro(targets), micro(batch["label"]))
            (grads, model_state, loss, correct), _ = jax.lax.scan(body, init, xs)
            grads = jax.tree.map(lambda g: g / accum, grads)
            loss = loss / accum

        grad_norm = optax.tree.norm(grads)
        finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
        updates, opt_state = tx.update(grads, state["opt_state"], params)
        # Zeroed on a non-finite step. This also makes every parameter's in-place update
        # wait for the whole backward (through `finite`), so XLA need not copy a weight that
        # the backward still reads (253 copies a step for sMLPNet-T).
        updates = jax.tree.map(lambda u: jnp.where(finite, u, jnp.zeros_like(u)), updates)
        new_params = optax.apply_updates(params, updates)
        if freeze:
            new_params = optim.keep_frozen(new_params, params, freeze)
        new = {
            "params": new_params,
            "model_state": model_state,
            "opt_state": opt_state,
        }
        if ema_decay:
            new["ema"] = ema_update(state["ema"], new["params"], model_state, ema_decay)
            if freeze_batch_stats:  # the average of unchanged statistics is themselves
                new["ema"]["model_state"] = state["ema"]["model_state"]
        new_state = {**state, **new, "step": step + 1}
        metrics = TrainMetrics.single_from_model_output(
            loss=loss,
            top1=correct / batch["label"].shape[0],
            grad_norm=grad_norm,
            lr=schedule(step),
        )
        bad_step = jnp.where(finite, NO_BAD_STEP, step + 1).astype(jnp.int32)
        return new_state, metrics, bad_step

    return train_step


def make_eval_step(graphs: ModelGraphs) -> Callable:
    """Builds `eval_step(params, model_state, rngs, batch) -> EvalMetrics` (masked)."""

    def eval_step(params, model_state, rngs, batch):
        model = nnx.merge(graphs.eval, params, rngs, model_state)
        logits = model(batch["image"]).astype(jnp.float32)
        labels = batch["label"]
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
        top1 = jnp.argmax(logits, -1) == labels
        k = min(5, logits.shape[-1])
        top5 = jnp.any(jax.lax.top_k(logits, k)[1] == labels[:, None], axis=-1)
        return EvalMetrics.single_from_model_output(
            loss=loss, top1=top1, top5=top5, mask=batch["mask"]
        )

    return eval_step
