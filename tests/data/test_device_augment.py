"""The on-device augmentation against timm's own implementation (the fixture made by
reference/make_randaugment_fixture.py with timm 0.3.2 and Pillow) and against the host path.

Ops: the integer ones (lookup tables) equal timm's output exactly; the others (blends and
warps whose factor or coordinates are float32 here, float64 in Python and Pillow) are
equal on >= 99% of pixels and never more than one level off.
Sampling: over 10^5 draws each, every histogram bin of the op choice, fired-op count,
magnitude, sign, erasing rate and box geometry agrees with timm's within 5 standard errors
of the difference of two binomial proportions.
"""

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from smlp_jax import data
from smlp_jax.data import device_augment, transforms

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "randaugment_timm.npz"
INTEGER_OPS = {
    "AutoContrast", "Equalize", "Invert", "Posterize", "PosterizeIncreasing", "Solarize",
    "SolarizeIncreasing", "SolarizeAdd",
}  # fmt: skip
DRAWS = 100_000


@pytest.fixture(scope="module")
def timm():
    with np.load(FIXTURE) as f:
        return dict(f)


def _augment(**changes) -> data.DeviceAugment:
    cfg = data.default_input_config().to_dict()
    cfg.update(on_device="augment", **changes)
    return data.DeviceAugment(cfg, 224)


def _same_proportions(ours, theirs, n_ours: int, n_theirs: int) -> None:
    """Every bin: |p - q| < 5 standard errors of the difference."""
    p, q = np.asarray(ours) / n_ours, np.asarray(theirs) / n_theirs
    pooled = (np.asarray(ours) + np.asarray(theirs)) / (n_ours + n_theirs)
    se = np.sqrt(pooled * (1 - pooled) * (1 / n_ours + 1 / n_theirs))
    z = np.abs(p - q) / np.maximum(se, 1e-12)
    assert np.all(z < 5), (np.round(p, 4), np.round(q, 4), np.round(z, 1))


def test_every_op_matches_timm_on_real_images(timm):
    names = timm["case_op"]
    images = jnp.asarray(timm["images"][timm["case_image"]], jnp.float32)
    got = np.zeros(timm["case_output"].shape, np.int32)
    for spec in ("rand-m9-mstd0.5-inc1", "rand-m9-mstd0.5"):
        augment = _augment(randaugment=spec)
        ops = augment.randaugment.ops
        rows = np.nonzero(np.isin(names, ops))[0]
        index = np.asarray([ops.index(n) for n in names[rows]], np.int32)
        apply = jax.jit(jax.vmap(augment.apply_op))
        out = apply(images[rows], index, timm["case_magnitude"][rows], timm["case_sign"][rows])
        got[rows] = np.asarray(out, np.int32)
    want = timm["case_output"].astype(np.int32)
    assert set(names) == set(device_augment.DEVICE_OPS)
    for name in sorted(set(names)):
        rows = names == name
        diff = np.abs(got[rows] - want[rows])
        if name in INTEGER_OPS:
            assert diff.max() == 0, (name, np.mean(diff > 0))
        else:
            # Measured: every pixel within one level, >= 99.47% equal (Brightness).
            assert diff.max() <= 1, (name, diff.max())
            assert np.mean(diff == 0) >= 0.99, (name, np.mean(diff == 0))


def test_op_choice_magnitude_and_sign_sampling_match_timm(timm):
    augment = _augment(randaugment="rand-m9-mstd0.5-inc1")
    assert tuple(timm["ra_ops"]) == augment.randaugment.ops
    keys = jax.random.split(jax.random.key(0), DRAWS)
    draws = jax.jit(jax.vmap(augment.sample_layers))(keys)
    op, fire = np.asarray(draws["op"]), np.asarray(draws["fire"])
    level, sign = np.asarray(draws["level"])[fire], np.asarray(draws["sign"])[fire]
    layers = DRAWS * augment.randaugment.num_layers
    counts = np.bincount(op[fire], minlength=len(augment.randaugment.ops))
    _same_proportions(counts, timm["ra_counts"], layers, layers)
    _same_proportions(
        np.bincount(fire.sum(1), minlength=3), timm["ra_fired_per_call"], DRAWS, DRAWS
    )
    fired, timm_fired = fire.sum(), timm["ra_counts"].sum()
    hist = np.histogram(level, timm["ra_level_bins"])[0]
    _same_proportions(hist, timm["ra_level_hist"], fired, timm_fired)
    _same_proportions([np.sum(level == 10.0)], [timm["ra_level_at_max"]], fired, timm_fired)
    _same_proportions([np.sum(sign < 0)], [timm["ra_negated"]], fired, timm["ra_signed_draws"])


def test_random_erasing_boxes_match_timm(timm):
    height, width = (int(v) for v in timm["re_shape"])
    augment = _augment(randaugment="", re_prob=0.25)
    keys = jax.random.split(jax.random.key(1), DRAWS)
    boxes = jax.jit(jax.vmap(lambda k: augment.erasing_boxes(k, height, width)))(keys)
    valid = np.asarray(boxes["valid"])[:, 0]
    _same_proportions([valid.sum()], [timm["re_erased"]], DRAWS, timm["re_draws"])
    for key, size in (("top", height), ("left", width), ("h", height), ("w", width)):
        ours = np.bincount(np.asarray(boxes[key])[valid, 0], minlength=size + 1)
        _same_proportions(ours, timm[f"re_{key}"], valid.sum(), timm["re_erased"])


def test_recipe_flips_normalises_and_erases_like_the_host_path():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (64, 12, 14, 3), dtype=np.uint8)
    augment = _augment(randaugment="", re_prob=0.0, hflip=0.5)
    out = np.asarray(jax.jit(augment)(jax.random.key(3), jnp.asarray(images)))
    host = transforms.Normalize(data.default_input_config().mean, data.default_input_config().std)
    flipped = 0
    for image, result in zip(images, out):
        plain, mirrored = host(image), host(image[:, ::-1])
        assert np.array_equal(result, plain) or np.array_equal(result, mirrored)
        flipped += not np.array_equal(result, plain)
    assert 20 <= flipped <= 44  # Binomial(64, 0.5): 4 standard deviations
    # Example b's draws are its own: the same whatever else is in the batch.
    erasing = _augment(re_prob=1.0)
    key = jax.random.key(4)
    batch = jax.jit(erasing)(key, jnp.asarray(images[:8]))
    alone = jax.jit(erasing.augment_one)(jax.random.fold_in(key, 5), jnp.asarray(images[5]))
    np.testing.assert_array_equal(np.asarray(batch[5]), np.asarray(alone))
    erased = np.asarray(batch) != np.asarray(
        jax.jit(_augment(re_prob=0.0))(key, jnp.asarray(images[:8]))
    )
    assert erased.any(axis=(1, 2, 3)).all()  # p = 1: every image has a box


def test_a_setting_the_device_path_lacks_is_one_line():
    cfg = dict(data.default_input_config().to_dict(), on_device="augment", interpolation="random")
    with pytest.raises(ValueError, match="on_device='augment' runs RandAugment's warps"):
        data.input_plan.check(cfg, 224)
    cfg = dict(data.default_input_config().to_dict(), on_device="tpu")
    with pytest.raises(ValueError, match="on_device='tpu'; use one of '', 'augment', 'resize"):
        data.input_plan.check(cfg, 224)
