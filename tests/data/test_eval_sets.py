"""The ImageNet test sets' label handling (smlp_jax/data/eval_sets.py), on tiny stand-ins in
their real formats: the shipped label maps, the 200-class subsets, ImageNet-v2's numbered
folders, ReaL's multi-labels (unlabeled images kept, marked by an empty multi-hot), and
ImageNet-C's aggregation against numbers computed here by hand."""

from pathlib import Path

import numpy as np
import pytest
import tensorflow_datasets as tfds

from smlp_jax.data import eval_sets, folder_source
from smlp_jax.data.base import DataError
from tests.data.imagenet_sets import image_folder, real_folder, tfds_set, wnid


def _items(source) -> list[tuple]:
    return [source[i] for i in range(len(source))]


def test_the_shipped_label_maps():
    synsets = eval_sets.imagenet_synsets()
    assert len(synsets) == 1000 and list(synsets) == sorted(set(synsets))
    # The same list as the one tfds ships beside its imagenet2012 builder (offline file).
    tfds_labels = Path(tfds.__file__).parent / "datasets" / "imagenet2012" / "labels.txt"
    assert tuple(tfds_labels.read_text().split()) == synsets
    for name, first in (("imagenet_a", [6, 11, 13, 15, 17]), ("imagenet_r", [1, 2, 4, 6, 8])):
        indices = eval_sets.subset_indices(name)
        assert len(indices) == 200 and len(set(indices.tolist())) == 200
        assert indices.tolist() == sorted(indices.tolist())  # in ImageNet's class order
        assert indices[:5].tolist() == first  # the published lists' first entries
        assert [synsets[i] for i in indices] == list(eval_sets.subset_wnids(name))
    assert eval_sets.subset_indices("imagenet") is None


def test_imagenet_a_and_r_folders_label_positions_in_their_200(tmp_path):
    a = eval_sets.subset_indices("imagenet_a")
    root = image_folder(tmp_path / "a", {wnid(a[0]): 2, wnid(a[199]): 1})
    data = eval_sets.open_imagenet_set("imagenet_a", f"folder:{root}", "", "")
    assert data.classes == "imagenet_a" and not data.multi_label
    assert [item[1] for item in _items(data.source)] == [0, 0, 199]
    # A class ImageNet-A does not have (tench, index 0) is refused by name.
    image_folder(tmp_path / "a", {wnid(0): 1})
    with pytest.raises(DataError, match=rf"folder .*{wnid(0)} is not one of the 200 wnids"):
        eval_sets.open_imagenet_set("imagenet_a", f"folder:{root}", "", "")
    r = eval_sets.subset_indices("imagenet_r")
    root = image_folder(tmp_path / "r", {wnid(r[5]): 1})
    data = eval_sets.open_imagenet_set("imagenet_r", f"folder:{root}", "", "")
    assert data.classes == "imagenet_r" and _items(data.source)[0][1] == 5


def test_imagenet_v2_folders_are_class_indices_not_sorted_names(tmp_path):
    root = image_folder(tmp_path / "v2", {"2": 1, "10": 2, "999": 1})
    data = eval_sets.open_imagenet_set("imagenet_v2", f"folder:{root}", "", "")
    assert sorted(item[1] for item in _items(data.source)) == [2, 10, 10, 999]
    image_folder(tmp_path / "v2", {"1000": 1})
    with pytest.raises(DataError, match="is not a class index 0..999"):
        eval_sets.open_imagenet_set("imagenet_v2", f"folder:{root}", "", "")


def test_tfds_sets_read_with_their_builders_features(tmp_path):
    """The tfds builders label A/R with ImageNet-1k indices: mapped to positions in the 200;
    v2 and sketch keep the 1000; ImageNet-C reads one builder config per (corruption,
    severity), each example tagged with its group."""
    a = eval_sets.subset_indices("imagenet_a")
    tfds_set(
        tmp_path, "imagenet_a", "test", [{"label": int(a[k]), "file_name": "x"} for k in (3, 7)]
    )
    tfds_set(tmp_path, "imagenet_v2", "test", [{"label": 10, "file_name": "x"}], "topimages")
    tfds_set(tmp_path, "imagenet_sketch", "test", [{"label": 5, "file_name": "x"}])
    for corruption, severity, label in (("fog", 1, 3), ("fog", 2, 4), ("snow", 1, 5)):
        examples = [{"label": label, "file_name": "x"}] * 2
        tfds_set(
            tmp_path, "imagenet2012_corrupted", "validation", examples, f"{corruption}_{severity}"
        )

    data = eval_sets.open_imagenet_set("imagenet_a", "", "", str(tmp_path))
    assert data.classes == "imagenet_a" and sorted(i[1] for i in _items(data.source)) == [3, 7]
    data = eval_sets.open_imagenet_set("imagenet_v2", "", "", str(tmp_path), variant="topimages")
    assert data.classes == "imagenet" and [i[1] for i in _items(data.source)] == [10]
    data = eval_sets.open_imagenet_set("imagenet_sketch", "", "", str(tmp_path))
    assert [i[1] for i in _items(data.source)] == [5]
    data = eval_sets.open_imagenet_set(
        "imagenet_c", "", "", str(tmp_path), corruptions=("fog", "snow"), severities=(1,)
    )
    assert data.groups == (("fog", 1), ("snow", 1))
    assert [(i[1], int(i[3]["group"])) for i in _items(data.source)] == [(3, 0)] * 2 + [(5, 1)] * 2
    with pytest.raises(DataError, match=r"'imagenet2012_corrupted/snow_2' is not prepared"):
        eval_sets.open_imagenet_set(
            "imagenet_c", "", "", str(tmp_path), corruptions=("snow",), severities=(2,)
        )
    with pytest.raises(DataError, match="unknown \\['smog'\\]"):
        eval_sets.open_imagenet_set("imagenet_c", "", "", str(tmp_path), corruptions=("smog",))
    with pytest.raises(DataError, match="variant 'matched'"):
        eval_sets.open_imagenet_set("imagenet_v2", "", "", str(tmp_path), variant="matched")


def test_real_labels_from_tfds_and_from_a_folder(tmp_path):
    """Each example carries its ReaL multi-hot beside the original label; an image without
    ReaL labels has an all-False one (the evaluator leaves it out)."""
    images = [(1, [1]), (2, [1, 2]), (3, []), (999, [998, 999])]
    examples = [
        {"original_label": o, "real_label": r, "file_name": f"ILSVRC2012_val_{n:08d}.JPEG"}
        for n, (o, r) in enumerate(images, start=1)
    ]
    tfds_set(tmp_path / "tfds", "imagenet2012_real", "validation", examples)
    from_tfds = eval_sets.open_imagenet_set("imagenet_real", "", "", str(tmp_path / "tfds"))
    val, real = real_folder(tmp_path / "folder", images)
    from_folder = eval_sets.open_imagenet_set(
        "imagenet_real", f"folder:{val}", "", "", real_labels=str(real)
    )
    for data in (from_tfds, from_folder):
        assert data.multi_label and data.source.extra_spec["real"][0] == (1000,)
        got = sorted((i[1], np.flatnonzero(i[3]["real"]).tolist()) for i in _items(data.source))
        assert got == sorted((o, sorted(r)) for o, r in images)
    with pytest.raises(DataError, match="needs the ReaL labels"):
        eval_sets.open_imagenet_set("imagenet_real", f"folder:{val}", "", "")
    (tmp_path / "short.json").write_text("[[1]]")
    with pytest.raises(DataError, match="n in 1..1 of"):
        eval_sets.open_imagenet_set(
            "imagenet_real", f"folder:{val}", "", "", real_labels=str(tmp_path / "short.json")
        )


def test_another_dataset_maps_to_the_models_classes_by_name(tmp_path):
    model = ["cat", "dog", "fox"]
    root = image_folder(tmp_path / "f", {"fox": 1, "cat": 2})
    source = folder_source.open_folder_split(str(root), "train", val_fraction=0.5)
    mapped = eval_sets.map_to_classes(source, model, 3, "x")
    assert sorted(item[1] for item in _items(mapped)) == [0, 2]  # cat -> 0, fox -> 2
    with pytest.raises(DataError, match=r"x: its classes \['fox'\] are not among the model's 2"):
        eval_sets.map_to_classes(source, ["cat", "dog"], 2, "x")
    source.classes = []  # a source without names: the counts must agree
    with pytest.raises(DataError, match="its 2 classes do not fit the model's 3"):
        eval_sets.map_to_classes(source, (), 3, "x")


# The AlexNet errors of augmix's imagenet.py, typed here from its source (module docstring).
ALEXNET = {
    "gaussian_noise": 0.886428, "shot_noise": 0.894468, "impulse_noise": 0.922640,
    "defocus_blur": 0.819880, "glass_blur": 0.826268, "motion_blur": 0.785948,
    "zoom_blur": 0.798360, "snow": 0.866816, "frost": 0.826572, "fog": 0.819324,
    "brightness": 0.564592, "contrast": 0.853204, "elastic_transform": 0.646056,
    "pixelate": 0.717840, "jpeg_compression": 0.606500,
}  # fmt: skip


def test_imagenet_c_aggregation_against_hand_computed_numbers():
    assert eval_sets.ALEXNET_ERRORS == ALEXNET and eval_sets.ALEXNET_CLEAN_ERROR == 0.4348
    # Every corruption: accuracies 0.9 .. 0.5 over severities 1..5, mean 0.7, error 0.3.
    top1 = {(c, s): 1.0 - 0.1 * s for c in ALEXNET for s in range(1, 6)}
    out = eval_sets.corruption_summary(top1, clean_top1=0.8)
    assert out["fog/3/top1"] == pytest.approx(0.7) and out["fog/top1"] == pytest.approx(0.7)
    assert out["fog/ce"] == pytest.approx(0.3 / 0.819324)
    assert out["fog/relative_ce"] == pytest.approx((0.3 - 0.2) / (0.819324 - 0.4348))
    assert out["mce"] == pytest.approx(sum(0.3 / e for e in ALEXNET.values()) / 15)
    assert out["relative_mce"] == pytest.approx(
        sum(0.1 / (e - 0.4348) for e in ALEXNET.values()) / 15
    )
    # AlexNet's own errors score 100% on both.
    alexnet = {(c, s): 1.0 - e for c, e in ALEXNET.items() for s in range(1, 6)}
    out = eval_sets.corruption_summary(alexnet, clean_top1=1.0 - 0.4348)
    assert out["mce"] == pytest.approx(1.0) and out["relative_mce"] == pytest.approx(1.0)
    # Without every severity of a corruption (or every corruption) there is no CE / mCE; the
    # extra corruptions have top-1 only; without the clean accuracy, no relative numbers.
    partial = {k: v for k, v in top1.items() if k != ("fog", 5)}
    partial[("speckle_noise", 1)] = 0.25
    out = eval_sets.corruption_summary(partial)
    assert "fog/ce" not in out and "mce" not in out and "snow/relative_ce" not in out
    assert out["fog/top1"] == pytest.approx(0.75) and out["snow/ce"] == pytest.approx(
        0.3 / 0.866816
    )
    assert out["speckle_noise/top1"] == 0.25 and "speckle_noise/ce" not in out
