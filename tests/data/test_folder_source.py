"""folder:/path datasets: layout, modes, corrupt files, hold-out split, errors."""

import io
import logging
import os

import numpy as np
import pytest
from PIL import Image

from smlp_jax import data
from smlp_jax.data import folder_source
from tests.data.conftest import make_config

CLASSES = ("cat", "dog", "fish")
SHADE = {0: 40, 1: 120, 2: 200}  # every image of class c has grey level SHADE[c]


def _save(path, img, fmt):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    img.save(path, format=fmt)


def _make_split(root, per_class):
    """JPEG RGB (varied sizes), grayscale PNG and RGBA PNG images; grey level = class."""
    for label, name in enumerate(CLASSES):
        v = SHADE[label]
        for i in range(per_class):
            size = (30 + 7 * i, 24 + 5 * (i % 3))
            kind = i % 3
            if kind == 0:
                _save(f"{root}/{name}/rgb_{i}.jpg", Image.new("RGB", size, (v, v, v)), "JPEG")
            elif kind == 1:
                _save(f"{root}/{name}/gray_{i}.png", Image.new("L", size, v), "PNG")
            else:
                rgba = Image.new("RGBA", size, (v, v, v, 90))
                _save(f"{root}/{name}/rgba_{i}.png", rgba, "PNG")


@pytest.fixture
def image_folder(tmp_path):
    root = tmp_path / "images"
    _make_split(f"{root}/train", per_class=4)  # 12 good training images
    _make_split(f"{root}/val", per_class=2)
    # Corrupt files: garbage bytes and a truncated JPEG, not next to each other in file order.
    (root / "train/fish/a_broken.jpg").write_bytes(b"this is not an image")
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 200, 200)).save(buffer, format="JPEG")
    (root / "train/fish/z_truncated.jpg").write_bytes(buffer.getvalue()[:200])
    (root / "val/dog/broken.png").write_bytes(b"\x89PNG not really")
    (root / "train/cat/notes.txt").write_text("ignored: not an image extension")
    return root


def _config(root, **overrides):
    return make_config(f"folder:{root}", batch_size=7, eval_batch_size=4, **overrides)


def _label_of(image):
    grey = (image.mean() * 0.5 + 0.5) * 255  # simple preset: mean = std = 0.5
    return min(SHADE, key=lambda c: abs(SHADE[c] - grey))


def test_folder_info_counts_image_files(image_folder):
    info = data.get_dataset_info(_config(image_folder))
    assert info.num_classes == 3
    assert (info.num_train, info.num_eval) == (14, 7)  # 12 + 2 corrupt; 6 + 1 corrupt
    source = folder_source.open_folder_split(str(image_folder), "train")
    assert source.classes == list(CLASSES)


def test_train_skips_corrupt_files_by_name_and_counts_them(image_folder, caplog):
    config = _config(image_folder, **{"input.pad": 0})
    iterator = data.create_train_iterator(config, process_index=0, process_count=1)
    with caplog.at_level(logging.WARNING, logger="smlp_jax.data"):
        batches = [next(iterator) for _ in range(2)]  # 14 examples = exactly one epoch
    for batch in batches:
        assert batch["image"].shape == (7, 16, 16, 3) and set(batch) == {"image", "label"}
        # Grayscale and RGBA became RGB with equal channels; the label matches the pixels.
        np.testing.assert_allclose(batch["image"][..., 0], batch["image"][..., 2], atol=0.02)
        assert [_label_of(im) for im in batch["image"]] == batch["label"].tolist()
    assert iterator.skipped_total == 2
    messages = "\n".join(r.getMessage() for r in caplog.records)
    assert "a_broken.jpg" in messages and "z_truncated.jpg" in messages
    assert "epoch 0 skipped 2 unreadable image(s)" in messages
    # The count is part of the checkpointed state.
    assert iterator.get_state()["skipped_total"] == 2


def test_corrupt_files_keep_batches_deterministic(image_folder):
    config = _config(image_folder, preset="imagenet")
    runs = []
    for _ in range(2):
        iterator = data.create_train_iterator(config, process_index=0, process_count=1)
        runs.append([next(iterator)["image"] for _ in range(3)])
    for a, b in zip(*runs):
        np.testing.assert_array_equal(a, b)


def test_eval_masks_out_corrupt_files(image_folder, caplog):
    evaluation = data.create_eval_iterator(_config(image_folder), process_index=0, process_count=1)
    with caplog.at_level(logging.WARNING, logger="smlp_jax.data"):
        batches = list(evaluation)
    assert len(batches) == len(evaluation) == 2  # 7 files, batch 4
    mask = np.concatenate([b["mask"] for b in batches])
    labels = np.concatenate([b["label"] for b in batches])
    images = np.concatenate([b["image"] for b in batches])
    assert mask.sum() == 6 and evaluation.skipped == 1
    assert [_label_of(im) for im in images[mask]] == labels[mask].tolist()
    assert sorted(labels[mask].tolist()) == [0, 0, 1, 1, 2, 2]
    assert "broken.png" in caplog.text


def test_eval_stops_at_a_file_it_cannot_read(image_folder):
    """Masking an unreadable (not corrupt) file would score the model on fewer images than
    the split holds: the evaluation raises the one-line DataError instead."""
    evaluation = data.create_eval_iterator(_config(image_folder), process_index=0, process_count=1)
    gone = image_folder / "val" / CLASSES[1] / "rgb_0.jpg"
    gone.unlink()
    with pytest.raises(data.DataError, match=f"could not read {gone}: No such file"):
        list(evaluation)


def test_holdout_split_without_val_folder(tmp_path):
    _make_split(f"{tmp_path}/pics/train", per_class=10)
    root = f"{tmp_path}/pics"
    train = folder_source.open_folder_split(root, "train", val_fraction=0.2)
    held = folder_source.open_folder_split(root, "val", val_fraction=0.2)
    train_paths = {train.path(i) for i in range(len(train))}
    held_paths = {held.path(i) for i in range(len(held))}
    assert (len(train_paths), len(held_paths)) == (24, 6)
    assert train_paths.isdisjoint(held_paths)
    assert np.bincount([held[i][1] for i in range(len(held))]).tolist() == [2, 2, 2]
    # The hold-out follows val_split_seed, not the training seed.
    info_a = data.get_dataset_info(_config(root, seed=1))
    info_b = data.get_dataset_info(_config(root, seed=2, **{"input.val_fraction": 0.2}))
    assert (info_a.num_train, info_a.num_eval, info_b.num_eval) == (27, 3, 6)
    other = folder_source.open_folder_split(root, "val", val_fraction=0.2, val_split_seed=5)
    assert {other.path(i) for i in range(len(other))} != held_paths


def test_class_folders_directly_under_the_path(tmp_path):
    _make_split(str(tmp_path / "flat"), per_class=5)
    info = data.get_dataset_info(_config(tmp_path / "flat"))
    assert (info.num_classes, info.num_train, info.num_eval) == (3, 12, 3)


def test_empty_folder_or_class_is_an_error(tmp_path):
    (tmp_path / "empty" / "train").mkdir(parents=True)
    with pytest.raises(data.DataError, match="No class subfolders"):
        data.get_dataset_info(_config(tmp_path / "empty"))
    _make_split(str(tmp_path / "one/train"), per_class=2)
    (tmp_path / "one/train/zebra").mkdir()
    (tmp_path / "one/train/zebra/readme.txt").write_text("no images here")
    with pytest.raises(data.DataError, match=r"without any .* image .*\['zebra'\]"):
        data.create_train_iterator(_config(tmp_path / "one"), process_index=0, process_count=1)
    with pytest.raises(data.DataError, match="does not exist"):
        data.get_dataset_info(_config(tmp_path / "missing"))


@pytest.mark.parametrize("workers", [0, 1])
def test_a_listed_file_that_cannot_be_read_stops_the_pipeline_in_one_line(image_folder, workers):
    """A file gone after the listing (or behind permissions, a lost mount) is not a corrupt
    image: the pipeline raises one DataError naming it instead of skipping it."""
    config = _config(image_folder, **{"input.num_workers": workers})
    gone = image_folder / "train" / CLASSES[0] / "rgb_0.jpg"
    assert gone.exists()
    iterator = data.create_train_iterator(config, process_index=0, process_count=1)
    gone.unlink()
    with pytest.raises(data.DataError) as caught:
        for _ in range(4):  # two epochs: the file is drawn in each
            next(iterator)
    iterator.close()
    assert str(caught.value) == (
        f"could not read {gone}: No such file or directory; the image may well be intact, so "
        "the run stopped rather than go on without it: make it readable (permissions, the "
        "mount, the storage) and run again (training resumes from its last checkpoint)."
    )
