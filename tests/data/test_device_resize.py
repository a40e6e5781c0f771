"""The RandomResizedCrop's resize on the device (`input.on_device="resize_and_augment"`)
against Pillow, which the host path runs: Pillow itself is the reference, on photo-like images of
ImageNet-like sizes, for integer and fractional boxes (a draft-decoded JPEG's box is
fractional), up- and downscaling, bicubic and bilinear."""

import io

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from smlp_jax import data
from smlp_jax.data import device_resize, transforms

PADDED = 600
FILTERS = {"bicubic": Image.BICUBIC, "bilinear": Image.BILINEAR}


def _photo(seed: int, width: int, height: int) -> np.ndarray:
    """Smooth colour fields plus fine noise: edges and texture at every scale."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (height // 25 + 2, width // 25 + 2, 3), dtype=np.uint8)
    field = np.asarray(Image.fromarray(coarse).resize((width, height), Image.BICUBIC))
    noise = rng.integers(-40, 41, field.shape)
    return np.clip(field.astype(np.int32) + noise, 0, 255).astype(np.uint8)


def _device(photo: np.ndarray, boxes, size: int, interpolation: str) -> np.ndarray:
    images = jnp.asarray(np.stack([device_resize.pad_image(photo, PADDED)] * len(boxes)))
    hw = jnp.asarray([photo.shape[:2]] * len(boxes), jnp.int32)
    resize = jax.jit(data.resize_batch, static_argnums=(3, 4))
    return np.asarray(resize(images, jnp.asarray(boxes, jnp.float32), hw, size, interpolation))


@pytest.mark.parametrize("interpolation", ["bicubic", "bilinear"])
def test_resize_matches_pillow_within_one_level(interpolation):
    rng = np.random.default_rng(0)
    equal = within_one = total = 0
    # (200, 600): Pillow >= 13 runs the vertical pass first there (device_resize.VERTICAL_FIRST)
    for seed, (width, height) in enumerate(((500, 375), (375, 500), (512, 333), (200, 600))):
        photo = _photo(seed, width, height)
        for size in (224, 64):
            boxes = []
            for _ in range(4):
                w, h = int(rng.integers(16, width)), int(rng.integers(16, height))
                left, top = (
                    int(rng.integers(0, width - w + 1)),
                    int(rng.integers(0, height - h + 1)),
                )
                boxes.append((left, top, left + w, top + h))
            boxes.append((11.37, 20.61, width * 0.9, height * 0.8))  # fractional (draft)
            boxes.append((0, 0, width, height))  # the whole image
            got = _device(photo, boxes, size, interpolation)
            for box, out in zip(boxes, got):
                want = np.asarray(
                    Image.fromarray(photo).resize((size, size), FILTERS[interpolation], box=box)
                )
                diff = np.abs(out.astype(np.int32) - want)
                assert diff.max() <= 2, (box, size, diff.max())  # a 1-level tie, amplified
                equal += int((diff == 0).sum())
                within_one += int((diff <= 1).sum())
                total += diff.size
    print(f"{interpolation}: equal {equal / total:.4%}, within one level {within_one / total:.5%}")
    assert equal / total >= 0.99 and within_one / total >= 0.9999, (equal, within_one, total)


def test_an_image_already_at_size_passes_unchanged():
    photo = _photo(3, 224, 224)
    got = _device(photo, [(0, 0, 224, 224)], 224, "bicubic")[0]
    np.testing.assert_array_equal(got, photo)


def _jpeg(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def test_the_transform_sends_the_decoded_image_and_the_host_paths_crop_box():
    """on_device="resize_and_augment" draws the same crop box as the host path; resized on
    the device it gives the host path's crop within one level: for JPEGs decoded whole, decoded at a
    reduced scale (draft; the box scaled with it), and decoded larger than `resize_max`
    (then resized on the host and sent as the (S, S) crop, the whole of it its box)."""
    base = dict(data.default_input_config().to_dict(), on_device="augment")
    host = transforms.TrainTransform(base, 64)
    fallbacks = 0
    for padded in (PADDED, 128):
        device = transforms.TrainTransform(
            dict(base, on_device="resize_and_augment", resize_max=padded), 64
        )
        for seed, (width, height) in enumerate(((500, 375), (333, 500), (900, 600))):
            jpeg = _jpeg(_photo(seed, width, height))
            for position in range(3):
                want = host(jpeg, np.random.default_rng((seed, position)))["image"]
                sent = device(jpeg, np.random.default_rng((seed, position)))
                assert sent["image"].shape == (padded, padded, 3)
                assert sent["image"].dtype == np.uint8
                assert sent["resize_box"].dtype == np.float32
                hw = tuple(int(v) for v in sent["image_hw"])
                assert max(hw) <= padded and hw[0] <= height and hw[1] <= width
                if hw == (64, 64):  # resized on the host
                    fallbacks += 1
                    assert tuple(sent["resize_box"]) == (0, 0, 64, 64)
                got = data.resize_batch(
                    jnp.asarray(sent["image"][None]),
                    jnp.asarray(sent["resize_box"][None]),
                    jnp.asarray(sent["image_hw"][None]),
                    64,
                    "bicubic",
                )[0]
                diff = np.abs(np.asarray(got).astype(np.int32) - want)
                assert diff.max() <= 1 and (diff == 0).mean() >= 0.99, (seed, position)
    assert fallbacks > 0


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"on_device": "gpu"}, "config.input.on_device='gpu'; use one of '', 'augment'"),
        (
            {"on_device": "resize_and_augment", "interpolation": "nearest", "randaugment": ""},
            "config.input.on_device='resize_and_augment' resizes with bicubic or bilinear",
        ),
        (
            {"on_device": "resize_and_augment", "resize_max": 128},
            "config.input.resize_max=128 is below",
        ),
    ],
)
def test_a_resize_setting_that_cannot_run_is_one_line(changes, expected):
    cfg = {**data.default_input_config().to_dict(), **changes}
    with pytest.raises(ValueError) as err:
        data.input_plan.check(cfg, 224)
    assert str(err.value).startswith(expected) and "\n" not in str(err.value)


@pytest.fixture
def jpeg_folder(tmp_path):
    """Two classes of photo-like JPEGs, 40-90 px, train and val."""
    root = tmp_path / "jpegs"
    for split, count in (("train", 16), ("val", 4)):
        for i in range(count):
            folder = root / split / f"class_{i % 2}"
            folder.mkdir(parents=True, exist_ok=True)
            size = (40 + (i * 13) % 50, 40 + (i * 29) % 50)
            (folder / f"{i:03d}.jpg").write_bytes(_jpeg(_photo(100 + i, *size)))
    return root


def test_pipeline_batches_resize_to_the_host_paths_crops_and_the_trainer_runs(
    jpeg_folder, tmp_path
):
    """The train iterator's device-resize batches (padded images, boxes, sizes), resized,
    are the host-resize batches' crops within one level; and a short sMLPNet run on them
    trains and logs, the batch's extra keys sharded with it."""
    from smlp_jax.train import trainer
    from tests.data.conftest import make_config
    from tests.train.tiny import tiny_config

    common = {"input.resize_max": 96}
    host_cfg = make_config(
        f"folder:{jpeg_folder}", preset="imagenet", **common, **{"input.on_device": "augment"}
    )
    device_cfg = make_config(
        f"folder:{jpeg_folder}",
        preset="imagenet",
        **common,
        **{"input.on_device": "resize_and_augment"},
    )
    host = next(data.create_train_iterator(host_cfg, process_index=0, process_count=1))
    sent = next(data.create_train_iterator(device_cfg, process_index=0, process_count=1))
    assert sent["image"].shape == (8, 96, 96, 3) and sent["resize_box"].shape == (8, 4)
    assert sent["image_hw"].shape == (8, 2) and np.array_equal(sent["label"], host["label"])
    size = int(host_cfg.image_size)
    got = np.asarray(
        data.resize_batch(
            jnp.asarray(sent["image"]),
            jnp.asarray(sent["resize_box"]),
            jnp.asarray(sent["image_hw"]),
            size,
            "bicubic",
        )
    )
    diff = np.abs(got.astype(np.int32) - host["image"])
    assert diff.max() <= 1 and (diff == 0).mean() >= 0.99

    run = tiny_config(
        None,
        dataset=f"folder:{jpeg_folder}",
        batch_size=8,
        eval_batch_size=4,
        total_steps=3,
        checkpoint_every=0,
        **{
            "input.preset": "imagenet",
            "input.eval_split": "val",
            "input.on_device": "resize_and_augment",
        },
        **common,
    )
    final = trainer.train_and_evaluate(run, str(tmp_path / "run"))
    assert final["step"] == 3 and np.isfinite(final["train/loss"]) and "eval/top1" in final
