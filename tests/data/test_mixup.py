"""Mixup/CutMix on device: targets, lambda, box, label smoothing, jit."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from smlp_jax.data import apply_mix, big_vision_mixup, mixup_cutmix, one_hot_smoothed

B, H, W, C, K = 6, 8, 10, 3, 10


# Jitted once per module: eager dispatch of the many small ops is slow on a loaded CPU.
_MIXUP = jax.jit(
    functools.partial(mixup_cutmix, num_classes=K, mixup_alpha=0.8, label_smoothing=0.1)
)
_CUTMIX = jax.jit(
    functools.partial(mixup_cutmix, num_classes=K, cutmix_alpha=1.0, label_smoothing=0.1)
)
_BOTH = jax.jit(functools.partial(mixup_cutmix, num_classes=K, mixup_alpha=0.8, cutmix_alpha=1.0))


def _batch():
    # Image i is the constant i, so every output pixel tells which images it came from.
    images = jnp.broadcast_to(jnp.arange(B, dtype=jnp.float32)[:, None, None, None], (B, H, W, C))
    labels = jnp.array([0, 1, 2, 3, 4, 5], jnp.int32)  # image i and B-1-i differ in label
    return images, labels


def _lam_from_targets(targets, labels, smoothing):
    off = smoothing / K
    on = 1 - smoothing + off
    own = np.asarray(targets)[np.arange(B), np.asarray(labels)]
    return (own - off) / (on - off)  # own = lam * on + (1 - lam) * off


def test_one_hot_smoothed_is_timm_exact():
    targets = np.asarray(one_hot_smoothed(jnp.array([3, 0]), K, 0.1))
    np.testing.assert_allclose(targets[0, 3], 1 - 0.1 + 0.01, rtol=1e-6)
    np.testing.assert_allclose(np.delete(targets[0], 3), 0.01, rtol=1e-6)
    np.testing.assert_allclose(targets.sum(-1), 1.0, rtol=1e-6)


def test_all_off_returns_images_and_smoothed_targets():
    images, labels = _batch()
    out, targets = mixup_cutmix(
        jax.random.key(0), images, labels, num_classes=K, label_smoothing=0.1
    )
    np.testing.assert_array_equal(out, images)
    np.testing.assert_array_equal(targets, one_hot_smoothed(labels, K, 0.1))


@pytest.mark.parametrize("seed", range(4))
def test_mixup_blends_images_and_targets_with_the_same_lambda(seed):
    images, labels = _batch()
    mix = jax.jit(
        functools.partial(mixup_cutmix, num_classes=K, mixup_alpha=0.8, label_smoothing=0.1)
    )
    out, targets = mix(jax.random.key(seed), images, labels)
    np.testing.assert_allclose(np.asarray(targets).sum(-1), 1.0, rtol=1e-6)
    lam = _lam_from_targets(targets, labels, 0.1)
    np.testing.assert_allclose(lam, lam[0], atol=1e-6)  # one lambda per batch
    want = lam[0] * np.arange(B) + (1 - lam[0]) * np.arange(B)[::-1]
    np.testing.assert_allclose(np.asarray(out)[:, 0, 0, 0], want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("seed", range(4))
def test_cutmix_pastes_one_box_and_corrects_lambda_by_its_area(seed):
    images, labels = _batch()
    out, targets = _CUTMIX(jax.random.key(seed), images, labels)
    out = np.asarray(out)
    pasted = out != np.asarray(images)  # pixels taken from the flipped batch
    box = pasted[0, :, :, 0]
    assert all((pasted[i, :, :, 0] == box).all() for i in range(B))  # same box for the batch
    if box.any():  # the pasted region is one rectangle
        rows, cols = np.flatnonzero(box.any(1)), np.flatnonzero(box.any(0))
        assert box[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1].all()
    np.testing.assert_array_equal(out[pasted], np.asarray(images)[::-1][pasted])
    lam = _lam_from_targets(targets, labels, 0.1)
    np.testing.assert_allclose(lam, 1 - box.mean(), atol=1e-6)
    np.testing.assert_allclose(np.asarray(targets).sum(-1), 1.0, rtol=1e-6)


def test_switch_prob_picks_both_modes_and_prob_zero_disables():
    images, labels = _batch()
    modes = []
    for seed in range(40):
        out, _ = _BOTH(jax.random.key(seed), images, labels)
        frac = np.asarray(out)[0, :, :, 0]
        # Mixup gives one blended value everywhere; CutMix keeps original values outside the box.
        modes.append("cutmix" if (frac == 0).any() else "mixup")
    assert 8 <= modes.count("cutmix") <= 32
    out, targets = mixup_cutmix(
        jax.random.key(0),
        images,
        labels,
        num_classes=K,
        mixup_alpha=0.8,
        cutmix_alpha=1.0,
        prob=0.0,
    )
    np.testing.assert_array_equal(out, images)
    np.testing.assert_array_equal(targets, one_hot_smoothed(labels, K, 0.0))


_APPLY = jax.jit(apply_mix)


@pytest.mark.parametrize("case", ["spach", "mixup_only", "cutmix_only", "half_prob"])
def test_given_timms_draws_the_batch_and_targets_are_timms(case):
    """timm 0.3.2's Mixup (reference/make_recipe_fixture.py) with its numpy draws replayed:
    lam, the mode and the box centre in, the same images and soft targets out."""
    with np.load("tests/fixtures/recipe_smlpnet.npz") as f:
        arrays = {k: f[k] for k in f.files if k.startswith("mixup/")}
    x, labels = arrays["mixup/input"], arrays["mixup/labels"]
    targets = one_hot_smoothed(jnp.asarray(labels), 5, 0.1)
    seen_modes = set()
    for seed in range(4):
        key = f"mixup/{case}/{seed}"
        lam_raw, use_cutmix, lam, cy, cx, *box = arrays[f"{key}/draws"]
        draws = {
            "lam": jnp.float32(lam_raw),
            "use_cutmix": jnp.asarray(bool(use_cutmix)),
            "cy": jnp.int32(cy),
            "cx": jnp.int32(cx),
        }
        mixed, mixed_targets = _APPLY(jnp.asarray(x), targets, draws)
        np.testing.assert_allclose(mixed, arrays[f"{key}/images"], atol=1e-6, rtol=0)
        np.testing.assert_allclose(mixed_targets, arrays[f"{key}/targets"], atol=1e-6, rtol=0)
        seen_modes.add((bool(use_cutmix), lam_raw == 1.0))
    if case == "cutmix_only":
        assert seen_modes == {(True, False)}


def _big_vision_get_mixup(rng, p, images, labels):
    """big_vision.utils.get_mixup(rng, p)(images, labels) on one device, transcribed:
    Dirichlet([p, p]) weights sorted largest first, sum_i w_i * roll(x, i)."""
    w = np.asarray(jax.random.dirichlet(rng, jnp.array([p, p], jnp.float32), (1,)))
    w = -np.sort(-w, axis=-1)[0]
    mix = lambda x: w[0] * np.asarray(x) + w[1] * np.roll(np.asarray(x), 1, axis=0)  # noqa: E731
    return mix(images), mix(labels)


@pytest.mark.parametrize("seed", range(3))
def test_big_vision_mode_is_big_visions_get_mixup(seed):
    images, labels = _batch()
    rng = jax.random.key(seed)
    out, targets = mixup_cutmix(
        rng, images, labels, num_classes=K, mixup_alpha=0.5, mode="big_vision"
    )
    want_images, want_targets = _big_vision_get_mixup(
        rng, 0.5, images, np.asarray(one_hot_smoothed(labels, K, 0.0))
    )
    np.testing.assert_allclose(out, want_images, rtol=1e-6)
    np.testing.assert_allclose(targets, want_targets, rtol=1e-6)
    # The image's own weight is the larger; its partner is the one before it (roll by 1).
    own = np.asarray(targets)[np.arange(B), np.asarray(labels)]
    assert np.all(own >= 0.5)
    np.testing.assert_allclose(
        np.asarray(targets)[np.arange(B), np.roll(np.asarray(labels), 1)], 1 - own, rtol=1e-5
    )


def test_big_vision_mode_rolls_each_devices_shard():
    images, labels = _batch()  # 6 images, 3 shards of 2: partners 1,0 | 3,2 | 5,4
    out, _ = big_vision_mixup(
        jax.random.key(1), images, one_hot_smoothed(labels, K, 0.0), 0.5, groups=3
    )
    pixels = np.asarray(out)[:, 0, 0, 0]
    other = pixels[0]  # image 0 is 0 and its partner 1: out[0] = the partner's weight
    assert 0 < other <= 0.5
    partners = np.array([1, 0, 3, 2, 5, 4], np.float32)
    np.testing.assert_allclose(pixels, (1 - other) * np.arange(B) + other * partners, rtol=1e-5)
    with pytest.raises(ValueError, match="does not split into 4 parts"):
        big_vision_mixup(jax.random.key(1), images, labels[:, None], 0.5, groups=4)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mode": "bigvision"}, "config.mixup.mode='bigvision'; use one of timm, big_vision"),
        ({"mode": "big_vision", "cutmix_alpha": 1.0}, "has no CutMix: set config.mixup"),
    ],
)
def test_bad_mixup_mode_says_what_to_do(kwargs, message):
    images, labels = _batch()
    with pytest.raises(ValueError, match=message):
        mixup_cutmix(jax.random.key(0), images, labels, num_classes=K, mixup_alpha=0.5, **kwargs)
