"""The prepare-data command: demo offline; tfds datasets need the [prepare] extra."""

import importlib.util

import pytest

from smlp_jax.tools import prepare_data


def test_prepare_demo_reports_the_dataset_dir(demo_data_dir, capsys):
    assert prepare_data.main(["demo", "--data_dir", demo_data_dir]) == 0
    assert f"Prepared demo in {demo_data_dir}/smlp_demo_digits/1.0.0" in capsys.readouterr().out


@pytest.mark.skipif(
    importlib.util.find_spec("tensorflow") is not None, reason="TensorFlow is installed"
)
def test_prepare_tfds_without_tensorflow_says_install_the_extra(tmp_path, capsys):
    assert prepare_data.main(["cifar10", "--data_dir", str(tmp_path)]) == 2
    assert "pip install '.[prepare]'" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())  # nothing was downloaded or written


def _photo_folder(root):
    """train/{a,b} and val/{a,b}: a JPEG above the cap, one within it, an RGBA PNG, a
    corrupt file; PNGs in val/."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)

    def pixels(width, height, channels=3):
        return rng.integers(0, 256, (height, width, channels), np.uint8)

    for name in ("train/a", "train/b", "val/a", "val/b"):
        (root / name).mkdir(parents=True)
    Image.fromarray(pixels(300, 120)).save(root / "train/a/big.jpg", quality=95)
    Image.fromarray(pixels(40, 30)).save(root / "train/a/small.jpg", quality=95)
    Image.fromarray(pixels(50, 20, 4), "RGBA").save(root / "train/b/rgba.png")
    (root / "train/b/bad.jpg").write_bytes(b"not an image")
    Image.fromarray(pixels(90, 100)).save(root / "train/b/tall.jpg", quality=95)
    for name in ("val/a", "val/b"):
        Image.fromarray(pixels(100, 80)).save(root / name / "v.png")
    return root


def test_a_folder_is_prepared_capped_with_its_info_and_trains_as_prepared(tmp_path, capsys):
    import json

    import ml_collections
    from PIL import Image

    from smlp_jax import data

    source = _photo_folder(tmp_path / "photos")
    out = tmp_path / "prepared"
    argv = [f"folder:{source}", "--out", str(out), "--max-side", "64"]
    assert prepare_data.main(argv) == 0
    assert capsys.readouterr().out == (
        f"Prepared folder:{source} in {out} (longer side <= 64, JPEG quality 90; train: 4 "
        "images, 2 resized, 1 re-encoded, 1 copied; val: 2 images, 2 resized, 0 re-encoded, "
        f"0 copied; 1 unreadable skipped): train on it with --config.dataset=prepared:{out}\n"
    )
    sizes = {str(p.relative_to(out)): Image.open(p).size for p in sorted(out.rglob("*.jpg"))}
    assert sizes == {
        "train/a/big.jpg": (64, 26),  # 300x120 capped, aspect kept
        "train/a/small.jpg": (40, 30),  # within the cap: the same bytes
        "train/b/rgba.png.jpg": (50, 20),  # re-encoded as RGB JPEG
        "train/b/tall.jpg": (58, 64),
        "val/a/v.png.jpg": (64, 51),
        "val/b/v.png.jpg": (64, 51),
    }
    assert (out / "train/a/small.jpg").read_bytes() == (source / "train/a/small.jpg").read_bytes()
    assert Image.open(out / "train/b/rgba.png.jpg").mode == "RGB"
    info = json.loads((out / "smlp_prepared.json").read_text())
    assert info == {
        "format": "smlp_jax prepared folder",
        "version": 1,
        "source": str(source),
        "max_side": 64,
        "quality": 90,
        "resample": "lanczos",
        "splits": {
            "train": {"images": 4, "resized": 2, "re-encoded": 1, "copied": 1},
            "val": {"images": 2, "resized": 2, "re-encoded": 0, "copied": 0},
        },
        "max_image_side": 64,
        "unreadable": ["train/b/bad.jpg"],
    }
    # Training reads it knowingly: its longest side sizes the device-resize canvas.
    config = ml_collections.ConfigDict(
        dict(dataset=f"prepared:{out}", data_dir=None, image_size=32, batch_size=4,
             eval_batch_size=2, seed=0)
    )  # fmt: skip
    config.input = data.default_input_config()
    config.input.num_workers = 0
    config.input.on_device = "resize_and_augment"
    info = data.get_dataset_info(config)
    assert (info.num_classes, info.num_train, info.num_eval) == (2, 4, 2)
    assert info.max_image_side == 64 and info.name == f"prepared:{out}/train"
    batch = next(data.create_train_iterator(config, process_index=0, process_count=1))
    assert batch["image"].shape == (4, 64, 64, 3)


def test_a_prepared_copy_without_its_info_is_one_line(tmp_path, capsys):
    from smlp_jax import data
    from smlp_jax.data import prepared

    source = _photo_folder(tmp_path / "photos")
    out = tmp_path / "prepared"
    assert prepare_data.main([f"folder:{source}", "--out", str(out), "--max-side", "64"]) == 0
    (out / "smlp_prepared.json").unlink()  # as a copy cut short leaves it
    with pytest.raises(data.DataError) as err:
        prepared.open_prepared_split(str(out), "train")
    assert str(err.value) == (
        f"prepared:{out} has no smlp_prepared.json, which prepare_data writes last: the copy "
        f"is not a finished one; prepare it again (python -m smlp_jax.tools.prepare_data "
        f"folder:SOURCE --out {out} --max-side 512) or train on it as folder:{out}."
    )
    capsys.readouterr()
    # Writing into it again is refused (not empty), as is a folder without --max-side.
    assert prepare_data.main([f"folder:{source}", "--out", str(out), "--max-side", "64"]) == 2
    assert prepare_data.main([f"folder:{source}", "--out", str(tmp_path / "new")]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert lines == [
        f"error: --out {out} exists and is not empty; give a new or empty folder.",
        f"error: folder:{source}: a folder is prepared as a copy with each image's longer side "
        "capped; give --out NEW_FOLDER and --max-side (e.g. 512).",
    ]
