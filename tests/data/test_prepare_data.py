"""The prepare-data command: demo offline; tfds datasets need the [prepare] extra; capped
copies of a folder (as a folder) and of a tfds dataset (as ArrayRecord shards)."""

import importlib.util
import io
import json
import pickle
import shutil

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from smlp_jax import data
from smlp_jax.data import prepared, sources
from smlp_jax.tools import prepare_data
from tests.data.conftest import make_config


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
        f"0 copied; 1 unreadable kept as they were, skipped in training): train on it with "
        f"--config.dataset=prepared:{out}\n"
    )
    # The unreadable file is kept as it is, so the copy holds the same files (and splits).
    assert (out / "train/b/bad.jpg").read_bytes() == (source / "train/b/bad.jpg").read_bytes()
    images = sorted(p for p in out.rglob("*.jpg") if p.name != "bad.jpg")
    sizes = {str(p.relative_to(out)): Image.open(p).size for p in images}
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
        "layout": "folder",
        "source": str(source),
        "max_side": 64,
        "quality": 90,
        "resample": "lanczos",
        "splits": {
            "train": {"images": 4, "resized": 2, "re-encoded": 1, "copied": 1, "unreadable": 1},
            "val": {"images": 2, "resized": 2, "re-encoded": 0, "copied": 0, "unreadable": 0},
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
    assert (info.num_classes, info.num_train, info.num_eval) == (2, 5, 2)  # bad.jpg too
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


# A copy of a tfds dataset, as ArrayRecord shards.


@pytest.fixture(scope="module")
def demo_copy(demo_data_dir, tmp_path_factory):
    """The demo's splits with the longer side capped at 16 px (the digits are 28, so every
    one is resized), in 1 MB shards: train (4,000 JPEGs of ~0.7 kB) spans several."""
    out = tmp_path_factory.mktemp("demo_copy") / "copy"
    argv = ["demo", "--data_dir", demo_data_dir, "--out", str(out), "--max-side", "16"]
    assert prepare_data.main([*argv, "--shard-mb", "1", "--workers", "1"]) == 0
    return out


def _pixels(encoded: bytes, size: int | None = None) -> np.ndarray:
    """RGB pixels as float, resized (Lanczos, as prepare_data does) to a longer side `size`."""
    img = Image.open(io.BytesIO(encoded)).convert("RGB")
    if size is not None:
        img = img.resize((size, size), Image.Resampling.LANCZOS)  # the digits are square
    return np.asarray(img, np.float32)


def _same_examples(copy, source, size: int, tolerance: float, stride: int = 1) -> None:
    """`copy` holds `source`'s examples in order: labels all equal, and every `stride`-th
    image within JPEG error of the source's, capped to `size`."""
    assert len(copy) == len(source)
    assert [copy[i][1] for i in range(len(copy))] == [source[i][1] for i in range(len(source))]
    for i in range(0, len(copy), stride):
        image = _pixels(copy[i][0])
        assert image.shape == (size, size, 3)
        assert np.abs(image - _pixels(source[i][0], size)).mean() < tolerance


def test_a_tfds_dataset_is_copied_as_array_record_with_its_info(demo_copy, demo_data_dir):
    out = demo_copy
    info = json.loads((out / "smlp_prepared.json").read_text())
    shards = {split: counts.pop("shards") for split, counts in info["splits"].items()}
    assert info == {
        "format": "smlp_jax prepared folder",
        "version": 1,
        "layout": "array_record",
        "source": {
            "name": "demo",
            "tfds_name": "smlp_demo_digits",
            "tfds_version": "1.0.0",
            "data_dir": demo_data_dir,
        },
        "max_side": 16,
        "quality": 90,
        "resample": "lanczos",
        "record": "int64 little-endian label, then the JPEG bytes",
        "splits": {
            "train": {
                "images": 4000,
                "resized": 4000,
                "re-encoded": 0,
                "copied": 0,
                "unreadable": 0,
            },
            "test": {
                "images": 1000,
                "resized": 1000,
                "re-encoded": 0,
                "copied": 0,
                "unreadable": 0,
            },
        },
        "num_classes": 10,
        "classes": [str(label) for label in range(10)],
        "max_image_side": 16,
        "unreadable": [],
    }
    assert len(shards["train"]) > 1 and len(shards["test"]) == 1
    for split, count in (("train", 4000), ("test", 1000)):
        assert sum(shard["records"] for shard in shards[split]) == count
        for index, shard in enumerate(shards[split]):
            assert shard["file"] == f"{split}-{index:05d}-of-{len(shards[split]):05d}.array_record"
            assert shard["bytes"] == (out / shard["file"]).stat().st_size
    files = [shard["file"] for split in shards.values() for shard in split]
    assert sorted(p.name for p in out.iterdir()) == sorted([*files, "smlp_prepared.json"])


def test_a_tfds_copy_reads_back_the_sources_examples_in_order(demo_copy, demo_data_dir):
    copy_config = make_config(f"prepared:{demo_copy}")
    demo_config = make_config("demo", demo_data_dir)
    for split in ("train", "test"):
        copy = sources.open_split(copy_config, split)
        _same_examples(copy, sources.open_split(demo_config, split), 16, 8.0, stride=97)
        assert (copy.num_classes, copy.max_image_side, copy.split) == (10, 16, split)
        assert copy[7][2] == f"prepared:{demo_copy}/{split}[7]"
        # Picklable for grain's workers: the readers open again on the other side.
        assert pickle.loads(pickle.dumps(copy))[len(copy) - 1] == copy[len(copy) - 1]
    with pytest.raises(IndexError):
        copy[len(copy)]


@pytest.mark.parametrize(
    "split", ["train[:95%]", "train[1000:]", "train[-5%:]", "train[1500:2700]", "test+train[:3]"]
)
def test_a_tfds_copy_is_sliced_as_tfds_slices_its_source(demo_copy, demo_data_dir, split):
    copy = sources.open_split(make_config(f"prepared:{demo_copy}"), split)
    source = sources.open_split(make_config("demo", demo_data_dir), split)
    _same_examples(copy, source, 16, 8.0, stride=301)


def test_training_and_eval_read_a_tfds_copy_knowingly(demo_copy):
    config = make_config(
        f"prepared:{demo_copy}",
        preset="imagenet",
        image_size=8,
        **{"input.num_workers": 0, "input.on_device": "resize_and_augment"},
    )
    assert sources.eval_split(config) == "test"  # no validation split written
    info = data.get_dataset_info(config)
    assert (info.num_classes, info.num_train, info.num_eval) == (10, 4000, 1000)
    assert info.name == f"prepared:{demo_copy}" and info.max_image_side == 16
    assert info.class_names == tuple(str(label) for label in range(10))
    batch = next(data.create_train_iterator(config, process_index=0, process_count=1))
    assert batch["image"].shape == (8, 16, 16, 3)  # the canvas is the copy's longest side
    batch = next(iter(data.create_eval_iterator(config, process_index=0, process_count=1)))
    assert batch["image"].shape == (8, 8, 8, 3)


def test_a_cap_above_the_images_re_encodes_them_and_splits_are_chosen(
    tmp_path, demo_data_dir, capsys
):
    out = tmp_path / "copy"
    argv = ["demo", "--data_dir", demo_data_dir, "--out", str(out), "--max-side", "32"]
    assert prepare_data.main([*argv, "--quality", "95", "--splits", "test", "--workers", "1"]) == 0
    assert capsys.readouterr().out == (
        f"Prepared demo in {out} as array_record (longer side <= 32, JPEG quality 95; test: "
        "1000 images in 1 shard, 0 resized, 1000 re-encoded, 0 copied): train on it with "
        f"--config.dataset=prepared:{out}\n"
    )
    info = json.loads((out / "smlp_prepared.json").read_text())
    assert list(info["splits"]) == ["test"] and info["max_image_side"] == 28
    config = make_config(f"prepared:{out}")
    assert sources.eval_split(config) == "test"
    copy = sources.open_split(config, "test")
    source = sources.open_split(make_config("demo", demo_data_dir), "test")
    _same_examples(copy, source, 28, 2.0, stride=37)  # the PNGs as JPEGs of quality 95
    with pytest.raises(data.DataError) as error:
        sources.open_split(config, "train")
    assert str(error.value) == f"prepared:{out} has no split 'train'; it has ['test']."


class SmlpTestMixed(tfds.core.GeneratorBasedBuilder):
    """train: a JPEG above the cap, a JPEG within it, an RGBA PNG, a corrupt file, a grey PNG
    (labels 0 1 0 1 0); validation: one JPEG."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self,
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(shape=(None, None, 3)),
                    "label": tfds.features.ClassLabel(names=["cat", "dog"]),
                }
            ),
            supervised_keys=("image", "label"),
        )

    def _split_generators(self, dl_manager):
        rng = np.random.default_rng(0)

        def encoded(width, height, mode="RGB", fmt="JPEG"):
            channels = {"RGB": 3, "RGBA": 4, "L": 1}[mode]
            pixels = rng.integers(0, 256, (height, width, channels), np.uint8)
            buffer = io.BytesIO()
            Image.fromarray(pixels.squeeze(-1) if mode == "L" else pixels, mode).save(
                buffer, fmt, **({"quality": 95} if fmt == "JPEG" else {})
            )
            return buffer.getvalue()

        train = [
            encoded(120, 60),
            encoded(30, 20),
            encoded(20, 40, "RGBA", "PNG"),
            b"not an image",
            encoded(10, 12, "L", "PNG"),
        ]
        return {
            "train": self._generate_examples(train),
            "validation": self._generate_examples([encoded(50, 50)]),
        }

    def _generate_examples(self, images):
        for index, image in enumerate(images):
            yield index, {"image": image, "label": index % 2}


@pytest.fixture(scope="module")
def mixed_data_dir(tmp_path_factory) -> str:
    data_dir = tmp_path_factory.mktemp("mixed_tfds")
    SmlpTestMixed(data_dir=str(data_dir), file_format="array_record").download_and_prepare(
        download_config=tfds.download.DownloadConfig(try_download_gcs=False)
    )
    return str(data_dir)


def test_a_tfds_copy_keeps_small_jpegs_and_unreadable_images_in_their_places(
    tmp_path, mixed_data_dir
):
    """A JPEG within the cap is kept byte for byte; an unreadable image is kept as it is
    (named in the info), so every record keeps its tfds index and a slice of the copy
    selects what the same slice of the source does."""
    out = tmp_path / "copy"
    info = prepared.write_tfds_copy("smlp_test_mixed", str(out), 32, data_dir=mixed_data_dir)
    (shard,) = info["splits"]["train"].pop("shards")
    assert info["splits"]["train"] == {
        "images": 4, "resized": 2, "re-encoded": 1, "copied": 1, "unreadable": 1
    }  # fmt: skip
    assert (shard["file"], shard["records"]) == ("train-00000-of-00001.array_record", 5)
    assert (info["classes"], info["max_image_side"]) == (["cat", "dog"], 32)
    config = make_config(f"prepared:{out}")
    assert sources.eval_split(config) == "validation"
    # tfds orders a split by its examples' hashed keys: the source says where each one is.
    source = sources.open_split(make_config("smlp_test_mixed", mixed_data_dir), "train")
    originals = [source[i] for i in range(len(source))]
    bad = [name for image, _, name in originals if image == b"not an image"]
    assert info["unreadable"] == bad and len(bad) == 1
    copy = sources.open_split(config, "train")
    assert [copy[i][1] for i in range(len(copy))] == [label for _, label, _ in originals]
    capped = {(120, 60): (32, 16), (30, 20): (30, 20), (20, 40): (16, 32), (10, 12): (10, 12)}
    for index, (original, _, name) in enumerate(originals):
        if name in bad:
            assert copy[index][0] == original  # as it was: training skips it, as the original
            continue
        written = Image.open(io.BytesIO(copy[index][0]))
        assert (written.format, written.mode) == ("JPEG", "RGB")
        assert written.size == capped[Image.open(io.BytesIO(original)).size]
        if written.size == (30, 20):  # a JPEG within the cap: the same bytes
            assert copy[index][0] == original


def test_a_damaged_or_unfinished_tfds_copy_is_one_line(tmp_path, demo_copy, demo_data_dir):
    copy = shutil.copytree(demo_copy, tmp_path / "copy")
    config = make_config(f"prepared:{copy}")
    redo = (
        f"delete {copy} and prepare it again: python -m smlp_jax.tools.prepare_data demo "
        f"--data_dir {demo_data_dir} --out {copy} --max-side 16 --quality 90 --splits test train."
    )

    def error(split: str) -> str:
        with pytest.raises(data.DataError) as raised:
            sources.open_split(config, split)
        assert "\n" not in str(raised.value)
        return str(raised.value)

    assert error("validation") == (
        f"prepared:{copy} has no split 'validation'; it has ['test', 'train']."
    )
    assert error("train[:1O]").startswith(f"prepared:{copy}: split 'train[:1O]' cannot be read (")
    # A shard cut short (a copy interrupted, a full disk) or lost: found when the split opens.
    shard = sorted(copy.glob("train-00001-of-*.array_record"))[0]
    size = shard.stat().st_size
    shard.write_bytes(shard.read_bytes()[: size // 2])
    assert error("train") == (
        f"prepared:{copy} (train) is damaged ({shard.name} has {size // 2} bytes, its info "
        f"says {size}); {redo}"
    )
    assert len(sources.open_split(config, "train[:100]")) == 100  # the first shard is whole
    shard.unlink()
    assert (
        error("train[1000:]")
        == f"prepared:{copy} (train[1000:]) is damaged ({shard.name} is missing); {redo}"
    )
    # An info that is not ours, or none: the copy was not finished.
    (copy / "smlp_prepared.json").write_text(json.dumps({"format": "something else"}))
    assert error("test").endswith(
        "smlp_prepared.json is not a prepare_data info file; delete it "
        f"and prepare it again (python -m smlp_jax.tools.prepare_data NAME --data_dir DATA_DIR "
        f"--out {copy} --max-side 512)."
    )
    (copy / "smlp_prepared.json").unlink()
    assert error("test") == (
        f"prepared:{copy} has no smlp_prepared.json, which prepare_data writes last: the copy is "
        "not a finished one; delete it and prepare it again (python -m smlp_jax.tools.prepare_data "
        f"NAME --data_dir DATA_DIR --out {copy} --max-side 512)."
    )


def test_bad_tfds_copy_arguments_are_one_line(tmp_path, demo_copy, demo_data_dir, capsys):
    tfds_args = ["demo", "--data_dir", demo_data_dir, "--workers", "1"]
    new = str(tmp_path / "new")
    assert prepare_data.main([*tfds_args, "--out", new, "--max-side", "16", "--splits", "val"]) == 2
    assert prepare_data.main([*tfds_args, "--out", str(demo_copy), "--max-side", "16"]) == 2
    assert prepare_data.main([*tfds_args, "--out", new]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "error: tfds dataset 'smlp_demo_digits' has no split 'val'; --splits takes some of "
        "['train', 'test'] (slices such as train[:95%] are read from the copy).",
        f"error: --out {demo_copy} exists and is not empty; give a new or empty folder.",
        f"error: demo --out {new}: a copy has each image's longer side capped; give --max-side "
        "(e.g. 512).",
    ]
    assert not (tmp_path / "new").exists()


def test_tfds_copy_options_elsewhere_are_one_line_not_ignored(tmp_path, capsys):
    folder = ["folder:" + str(tmp_path), "--out", str(tmp_path / "copy"), "--max-side", "16"]
    assert prepare_data.main([*folder, "--splits", "train", "--shard-mb", "8"]) == 2
    assert prepare_data.main(["cifar10", "--workers", "2"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "error: --splits --shard-mb only apply to a tfds copy (NAME --out DST --max-side N), "
        "not to a folder copy.",
        "error: --workers only apply to a tfds copy (NAME --out DST --max-side N), not to "
        "building a tfds dataset (no --out).",
    ]
    assert not (tmp_path / "copy").exists()
