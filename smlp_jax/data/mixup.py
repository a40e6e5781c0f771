"""Mixup / CutMix and label smoothing on device, jittable, as timm's `Mixup` in batch mode.

One (lambda, mode) pair is drawn per batch: with probability `prob` the batch is mixed,
else lambda = 1. When both alphas are > 0, CutMix is chosen with probability
`switch_prob`, else Mixup. Each image is mixed with the batch flipped along its first axis
(image i with image B-1-i). Mixup: x = lam * x + (1 - lam) * x_flipped, lam ~ Beta(a, a).
CutMix: lam ~ Beta(a, a) sets a box of side (H, W) * sqrt(1 - lam) centred at a uniform
pixel and clipped to the image; the box is pasted from x_flipped and lam is corrected to
1 - box_area / (H * W). Targets: smoothed one-hot (off = smoothing / num_classes,
on = 1 - smoothing + off), mixed with the same lam.

`mode="big_vision"` is big_vision's `get_mixup(rng, p)` instead (MLP-Mixer's recipe): one
a ~ Beta(p, p) per batch, a = max(a, 1 - a), and every image and target mixed with its
neighbour in the batch rolled by one: x = a * x + (1 - a) * roll(x, 1). big_vision rolls
each device's shard of the batch on its own (a shard_map over all devices): `groups`
does the same, the batch cut into that many equal consecutive parts. No CutMix, no
`prob`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from smlp_jax.data.base import DataError


def one_hot_smoothed(labels: jax.Array, num_classes: int, label_smoothing: float = 0.0):
    """(B,) int -> (B, num_classes) float32, rows summing to 1 (timm's smoothing)."""
    off_value = label_smoothing / num_classes
    on_value = 1.0 - label_smoothing + off_value
    hot = jax.nn.one_hot(labels, num_classes, dtype=jnp.float32)
    return hot * (on_value - off_value) + off_value


def cutmix_box(lam, cy, cx, height: int, width: int):
    """timm's `rand_bbox` given its centre draw (cy, cx), and `cutmix_bbox_and_lam`'s area
    correction: -> ((H, W) bool box mask, lam = 1 - box area / (H * W))."""
    ratio = jnp.sqrt(1.0 - lam)
    cut_h = jnp.floor(height * ratio).astype(jnp.int32)
    cut_w = jnp.floor(width * ratio).astype(jnp.int32)
    y_low, y_high = jnp.clip(cy - cut_h // 2, 0, height), jnp.clip(cy + cut_h // 2, 0, height)
    x_low, x_high = jnp.clip(cx - cut_w // 2, 0, width), jnp.clip(cx + cut_w // 2, 0, width)
    rows = jnp.arange(height)[:, None]
    cols = jnp.arange(width)[None, :]
    box = (rows >= y_low) & (rows < y_high) & (cols >= x_low) & (cols < x_high)
    area = ((y_high - y_low) * (x_high - x_low)).astype(jnp.float32)
    return box, 1.0 - area / (height * width)


def mix_draws(
    rng: jax.Array,
    height: int,
    width: int,
    *,
    mixup_alpha: float = 0.0,
    cutmix_alpha: float = 0.0,
    switch_prob: float = 0.5,
    prob: float = 1.0,
) -> dict[str, jax.Array]:
    """One batch's draws, in timm's `_params_per_batch` order: apply with `prob`; CutMix
    with `switch_prob` when both alphas are on; lam ~ Beta(alpha, alpha) of the chosen
    mode (1 when not applied); the box centre (cy, cx) uniform over the pixels."""
    key_apply, key_switch, key_mix, key_cut, key_y, key_x = jax.random.split(rng, 6)
    apply = jax.random.uniform(key_apply) < prob
    if mixup_alpha > 0 and cutmix_alpha > 0:
        use_cutmix = jax.random.uniform(key_switch) < switch_prob
    else:
        use_cutmix = jnp.asarray(cutmix_alpha > 0)
    lam_mix = jax.random.beta(key_mix, mixup_alpha, mixup_alpha) if mixup_alpha > 0 else 1.0
    lam_cut = jax.random.beta(key_cut, cutmix_alpha, cutmix_alpha) if cutmix_alpha > 0 else 1.0
    lam = jnp.where(use_cutmix, lam_cut, lam_mix)
    return {
        "lam": jnp.where(apply, lam, 1.0).astype(jnp.float32),
        "use_cutmix": use_cutmix,
        "cy": jax.random.randint(key_y, (), 0, height),
        "cx": jax.random.randint(key_x, (), 0, width),
    }


def apply_mix(images: jax.Array, targets: jax.Array, draws: dict) -> tuple[jax.Array, jax.Array]:
    """timm's `_mix_batch` + `mixup_target` given the draws: (B, H, W, C) images and
    (B, K) smoothed one-hot targets -> mixed images (same dtype) and targets. Mixup:
    x = lam * x + (1 - lam) * x_flipped; CutMix pastes the box from x_flipped and corrects
    lam to the pasted area; the targets mix with the same (corrected) lam."""
    lam = draws["lam"]
    flipped = images[::-1]
    box, lam_cut = cutmix_box(lam, draws["cy"], draws["cx"], images.shape[1], images.shape[2])
    mixed = (images * lam + flipped * (1.0 - lam)).astype(images.dtype)
    cut = jnp.where(box[None, :, :, None], flipped, images)
    out = jnp.where(draws["use_cutmix"], cut, mixed)
    lam = jnp.where(draws["use_cutmix"], lam_cut, lam).astype(jnp.float32)
    return out, lam * targets + (1.0 - lam) * targets[::-1]


MODES = ("timm", "big_vision")


def check_mode(mode: str, cutmix_alpha: float) -> None:
    """A DataError (one line) for a mixup mode that does not exist or cannot do CutMix."""
    if mode not in MODES:
        raise DataError(f"config.mixup.mode={mode!r}; use one of {', '.join(MODES)}.")
    if mode == "big_vision" and cutmix_alpha > 0:
        raise DataError(
            "config.mixup.mode='big_vision' has no CutMix: set config.mixup.cutmix_alpha=0."
        )


def big_vision_mixup(
    rng: jax.Array, images: jax.Array, targets: jax.Array, alpha: float, groups: int = 1
) -> tuple[jax.Array, jax.Array]:
    """big_vision's `get_mixup(rng, alpha)` applied to (B, H, W, C) images and (B, K)
    targets, with weights (a, 1 - a), a = max(a, 1 - a), a ~ Beta(alpha, alpha): example i
    of each of the `groups` consecutive parts of the batch is mixed with example i - 1 of
    the same part."""
    batch = images.shape[0]
    if batch % groups:
        raise ValueError(f"big_vision mixup: batch {batch} does not split into {groups} parts.")
    # Two weights from Dirichlet(alpha, alpha) (= Beta for n = 2), largest first, drawn as
    # big_vision draws them, so the same key gives the same weights.
    weights = jax.random.dirichlet(rng, jnp.array([alpha, alpha], jnp.float32), (1,))
    own, other = jnp.sort(weights, axis=-1)[0, ::-1]

    def partner(x):
        parts = x.reshape(groups, batch // groups, *x.shape[1:])
        return jnp.roll(parts, 1, axis=1).reshape(x.shape)

    mixed = own * images + other * partner(images)
    return mixed.astype(images.dtype), own * targets + other * partner(targets)


def mixup_cutmix(
    rng: jax.Array,
    images: jax.Array,
    labels: jax.Array,
    *,
    num_classes: int,
    mixup_alpha: float = 0.0,
    cutmix_alpha: float = 0.0,
    switch_prob: float = 0.5,
    prob: float = 1.0,
    label_smoothing: float = 0.0,
    mode: str = "timm",
    groups: int = 1,
) -> tuple[jax.Array, jax.Array]:
    """(B, H, W, C) images, (B,) labels -> mixed images (same dtype), (B, num_classes)
    float32 targets. The hyper-parameters are static Python numbers; with both alphas 0 (or
    prob 0) the images come back unchanged with smoothed one-hot targets. `groups`: the
    batch's parts for `mode="big_vision"` (see `big_vision_mixup`)."""
    check_mode(mode, cutmix_alpha)
    targets = one_hot_smoothed(labels, num_classes, label_smoothing)
    if mode == "big_vision":
        if mixup_alpha <= 0:
            return images, targets
        return big_vision_mixup(rng, images, targets, mixup_alpha, groups)
    if (mixup_alpha <= 0 and cutmix_alpha <= 0) or prob <= 0:
        return images, targets
    draws = mix_draws(
        rng,
        images.shape[1],
        images.shape[2],
        mixup_alpha=mixup_alpha,
        cutmix_alpha=cutmix_alpha,
        switch_prob=switch_prob,
        prob=prob,
    )
    return apply_mix(images, targets, draws)
