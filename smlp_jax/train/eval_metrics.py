"""What a classification evaluator computes on the device, and how it is summarised.

`classification_sums` reduces one batch to sums (correct top-1/top-5, loss, NLL, the 15
confidence bins of the expected calibration error, ReaL's multi-label hits, ImageNet-C's
per-group counts); `summarize` turns the sums of a whole split into metrics;
`make_classify_step` is the jitted step that produces them (logits restricted to a class
subset for ImageNet-A/R). Used by `smlp_jax.train.evaluators`.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

ECE_BINS = 15


def classification_sums(
    logits: jax.Array,
    labels: jax.Array,
    mask: jax.Array,
    real: jax.Array | None = None,
    group: jax.Array | None = None,
    num_groups: int = 0,
) -> dict[str, jax.Array]:
    """Per-batch sums that add up over batches (jittable); `summarize` turns them into
    metrics. logits (B, K) float32, labels (B,) int (-1: outside the label space, counted
    nowhere), mask (B,) bool; real (B, K) bool: the ReaL labels (images with none are
    left out of the ReaL metrics); group (B,) int: ImageNet-C's (corruption, severity)."""
    valid = mask & (labels >= 0)
    weight = valid.astype(jnp.float32)
    safe = jnp.maximum(labels, 0)
    log_probs = jax.nn.log_softmax(logits, axis=-1)
    nll = -jnp.take_along_axis(log_probs, safe[:, None], axis=-1)[:, 0]
    predicted = jnp.argmax(logits, axis=-1)
    top1 = predicted == safe
    k = min(5, logits.shape[-1])
    top5 = jnp.any(jax.lax.top_k(logits, k)[1] == safe[:, None], axis=-1)
    confidence = jnp.exp(jnp.max(log_probs, axis=-1))
    sums = {
        "n": weight.sum(),
        "top1": (weight * top1).sum(),
        "top5": (weight * top5).sum(),
        "nll": (weight * nll).sum(),
    }
    correct, counted = top1, weight
    if real is not None:  # ImageNet-ReaL: right when the prediction is any of its labels
        counted = (mask & jnp.any(real, axis=-1)).astype(jnp.float32)
        correct = jnp.take_along_axis(real, predicted[:, None], axis=-1)[:, 0]
        sums["real_n"] = counted.sum()
        sums["real_top1"] = (counted * correct).sum()
    # Bins (b/15, (b+1)/15]: the top-1 confidence is never 0.
    bins = jnp.clip(jnp.ceil(confidence * ECE_BINS).astype(jnp.int32) - 1, 0, ECE_BINS - 1)
    one_hot = jax.nn.one_hot(bins, ECE_BINS, dtype=jnp.float32) * counted[:, None]
    sums["bin_n"] = one_hot.sum(0)
    sums["bin_confidence"] = (one_hot * confidence[:, None]).sum(0)
    sums["bin_correct"] = (one_hot * correct[:, None]).sum(0)
    if group is not None:
        groups = jax.nn.one_hot(group, num_groups, dtype=jnp.float32) * weight[:, None]
        sums["group_n"] = groups.sum(0)
        sums["group_top1"] = (groups * top1[:, None]).sum(0)
    return sums


def expected_calibration_error(count, confidence, correct) -> float:
    """sum over bins of (n_b / N) |accuracy_b - confidence_b| from the bins' sums."""
    count, confidence, correct = (np.asarray(a, np.float64) for a in (count, confidence, correct))
    total = count.sum()
    return float(np.abs(correct - confidence).sum() / total) if total else float("nan")


def summarize(sums: dict[str, Any]) -> dict[str, float]:
    """Metrics from `classification_sums` added over a split (NaN where nothing counted)."""
    s = {k: np.asarray(v, np.float64) for k, v in sums.items()}
    n = float(s["n"])

    def ratio(value, count) -> float:
        return float(value / count) if count else float("nan")

    out = {
        "top1": ratio(s["top1"], n),
        "top5": ratio(s["top5"], n),
        "nll": ratio(s["nll"], n),
    }
    out["loss"] = out["nll"]
    if "real_n" in s:
        out["original_top1"] = out.pop("top1")
        out.pop("top5")
        out["top1"] = ratio(s["real_top1"], float(s["real_n"]))
        out["labeled"] = float(s["real_n"])
    out["ece"] = expected_calibration_error(s["bin_n"], s["bin_confidence"], s["bin_correct"])
    return out


def make_classify_step(graphs, subset: np.ndarray | None, multi_label: bool, num_groups: int):
    """`eval_step(params, model_state, rngs, batch) -> classification_sums`, the model's logits
    restricted to `subset` (ImageNet-A/R's 200 classes) when given."""
    indices = None if subset is None else np.asarray(subset, np.int32)

    def eval_step(params, model_state, rngs, batch):  # the name its compiled program takes
        model = nnx.merge(graphs.eval, params, rngs, model_state)
        logits = model(batch["image"]).astype(jnp.float32)
        if indices is not None:
            logits = logits[:, indices]
        return classification_sums(
            logits,
            batch["label"],
            batch["mask"],
            batch["real"] if multi_label else None,
            batch["group"] if num_groups else None,
            num_groups,
        )

    return eval_step
