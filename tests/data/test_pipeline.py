"""The grain pipelines on tfds sources: batches, labels, determinism, resume, shards, eval."""

import json

import numpy as np
import pytest

from smlp_jax import data
from smlp_jax.data import sources, transforms
from tests.data.conftest import TINY_SPLITS, make_config, tiny_index

MEAN = STD = (0.5, 0.5, 0.5)  # the simple preset's normalisation


def _take(iterator, n):
    return [next(iterator) for _ in range(n)]


def _tiny(tiny_data_dir, **overrides):
    return make_config("smlp_test_tiny", tiny_data_dir, **overrides)


def test_demo_train_batches_have_interface_shapes(demo_data_dir):
    config = make_config("demo", demo_data_dir, image_size=32)
    info = data.get_dataset_info(config)
    assert info == data.DatasetInfo("smlp_demo_digits", 10, 4000, 1000)
    batch = next(data.create_train_iterator(config, process_index=0, process_count=1))
    assert set(batch) == {"image", "label"}
    assert batch["image"].shape == (8, 32, 32, 3) and batch["image"].dtype == np.float32
    assert batch["label"].shape == (8,) and batch["label"].dtype == np.int32
    assert batch["image"].min() >= -1.0 and batch["image"].max() <= 1.0
    assert batch["image"].max() > 0.5  # white strokes on black: both ends present
    # Grayscale digits become 3 equal channels.
    np.testing.assert_array_equal(batch["image"][..., 0], batch["image"][..., 2])
    assert np.all((batch["label"] >= 0) & (batch["label"] < 10))


def test_train_labels_match_images_and_one_epoch_covers_shard(tiny_data_dir):
    config = _tiny(tiny_data_dir, batch_size=8, **{"input.pad": 0})
    seen = []
    for batch in _take(data.create_train_iterator(config, process_index=0, process_count=1), 5):
        for image, label in zip(batch["image"], batch["label"]):
            index, colour_label = tiny_index(image, MEAN, STD)
            assert label == colour_label == index % 3
            seen.append(index)
    assert sorted(seen) == list(range(TINY_SPLITS["train"]))  # 5 x 8 = one epoch, shuffled
    assert seen != sorted(seen)


def test_two_processes_read_disjoint_shards_that_cover_the_split(tiny_data_dir):
    config = _tiny(tiny_data_dir, batch_size=8, **{"input.pad": 0})
    shards = []
    for process in (0, 1):
        iterator = data.create_train_iterator(config, process_index=process, process_count=2)
        batches = _take(iterator, 5)  # 20 examples per process, local batch 4
        assert all(b["image"].shape[0] == 4 for b in batches)
        shards.append({tiny_index(im, MEAN, STD)[0] for b in batches for im in b["image"]})
    assert len(shards[0]) == len(shards[1]) == 20
    assert shards[0].isdisjoint(shards[1])
    assert shards[0] | shards[1] == set(range(TINY_SPLITS["train"]))


def test_same_seed_same_batches_other_seed_differs(demo_data_dir):
    config = make_config("demo", demo_data_dir, preset="imagenet", **{"input.randaugment": ""})
    first = _take(data.create_train_iterator(config, process_index=0, process_count=1), 2)
    again = _take(data.create_train_iterator(config, process_index=0, process_count=1), 2)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a["image"], b["image"])
        np.testing.assert_array_equal(a["label"], b["label"])
    other = make_config("demo", demo_data_dir, preset="imagenet", seed=1)
    assert not np.array_equal(
        first[0]["image"], next(data.create_train_iterator(other, process_count=1))["image"]
    )


def test_restored_state_gives_the_same_next_batches_bit_for_bit(demo_data_dir):
    config = make_config("demo", demo_data_dir, preset="imagenet")  # full recipe with RA + RE
    iterator = data.create_train_iterator(config, process_index=0, process_count=1)
    _take(iterator, 3)
    state = json.loads(json.dumps(iterator.get_state()))  # what a checkpoint stores
    expected = _take(iterator, 2)
    fresh = data.create_train_iterator(config, process_index=0, process_count=1)
    fresh.set_state(state)
    for want, got in zip(expected, _take(fresh, 2)):
        np.testing.assert_array_equal(want["image"], got["image"])
        np.testing.assert_array_equal(want["label"], got["label"])


@pytest.mark.parametrize(
    "state, complaint",
    [
        ([3, 0, 0], "a dict expected, got list"),
        ({"step": 3, "skipped_epoch": 0}, "missing skipped_total"),
        ({"step": 3, "skipped_epoch": 0, "skipped_total": 0, "pos": 1}, "unknown pos"),
        ({"step": "abc", "skipped_epoch": 0, "skipped_total": 0}, "step='abc', an integer"),
        ({"step": -1, "skipped_epoch": 0, "skipped_total": 0}, r"step=-1, an integer in \[0"),
        ({"step": 3.0, "skipped_epoch": 0, "skipped_total": 0}, "step=3.0"),
        ({"step": True, "skipped_epoch": 0, "skipped_total": 0}, "step=True"),
        ({"step": 2**48, "skipped_epoch": 0, "skipped_total": 0}, "step=281474976710656"),
        ({"step": 3, "skipped_epoch": 2, "skipped_total": 1}, "skipped_epoch=2 exceeds"),
    ],
)
def test_train_state_is_validated(tiny_data_dir, state, complaint):
    """What a checkpoint restore checks before resuming the input (TrainIterator.check_state),
    and set_state for library callers: an invalid state changes nothing."""
    good = {"step": 3, "skipped_epoch": 1, "skipped_total": 2}
    data.TrainIterator.check_state(good)
    data.TrainIterator.check_state({**good, "step": np.int64(3)})  # numpy ints are ints
    with pytest.raises(ValueError, match=complaint):
        data.TrainIterator.check_state(state)
    config = _tiny(tiny_data_dir, batch_size=8)
    iterator = data.create_train_iterator(config, process_index=0, process_count=1)
    iterator.set_state(good)
    with pytest.raises(ValueError, match=complaint):
        iterator.set_state(state)
    assert iterator.get_state() == good


@pytest.mark.parametrize("shared_memory", [True, False])
def test_worker_processes_give_the_same_batches_and_resume_across_worker_counts(
    demo_data_dir, shared_memory
):
    """With `input.shared_memory` (workers stack batches straight into shared memory) or
    without, worker processes give the in-process batches, resumed mid-stream, and the
    same eval batches."""
    config = make_config("demo", demo_data_dir, preset="imagenet", eval_batch_size=96)
    in_process = data.create_train_iterator(config, process_index=0, process_count=1)
    expected = _take(in_process, 4)
    workers = make_config(
        "demo",
        demo_data_dir,
        preset="imagenet",
        eval_batch_size=96,
        **{"input.num_workers": 2, "input.shared_memory": shared_memory},
    )
    parallel = data.create_train_iterator(workers, process_index=0, process_count=1)
    parallel.set_state({"step": 1, "skipped_epoch": 0, "skipped_total": 0})
    try:
        for want, got in zip(expected[1:], _take(parallel, 3)):
            assert set(got) == set(want)
            for key in want:
                assert got[key].dtype == want[key].dtype, key
                np.testing.assert_array_equal(want[key], got[key])
        assert parallel.get_state()["step"] == 4
    finally:
        parallel.close()
    evaluation = list(data.create_eval_iterator(config, process_index=0, process_count=1))
    parallel_eval = data.create_eval_iterator(workers, process_index=0, process_count=1)
    for want, got in zip(evaluation, parallel_eval, strict=True):
        assert set(got) == set(want)
        for key in want:
            assert got[key].dtype == want[key].dtype, key
            np.testing.assert_array_equal(want[key], got[key])


def test_batches_are_stacked_into_shared_memory_as_grain_stacks_them():
    from grain.multiprocessing import SharedMemoryArray

    from smlp_jax.data import pipeline

    rng = np.random.default_rng(0)
    examples = [
        {"image": rng.random((4, 4, 3), np.float32), "label": np.int32(i), "_skipped": 0}
        for i in range(3)
    ]
    batch = pipeline._stack_into_shared_memory(examples)
    for key in examples[0]:
        want = np.stack([e[key] for e in examples])
        assert isinstance(batch[key], SharedMemoryArray) and batch[key].dtype == want.dtype
        np.testing.assert_array_equal(batch[key], want)
        batch[key].unlink_on_del()  # the owner frees the block (the trainer process does)


@pytest.mark.parametrize("process_count", [1, 3])
def test_eval_covers_the_split_exactly_once_with_mask(tiny_data_dir, process_count):
    config = _tiny(tiny_data_dir, eval_batch_size=3 * process_count, **{"input.crop_pct": 1.0})
    source = sources.open_split(config, "validation")
    transform = transforms.EvalTransform(config.input.to_dict(), config.image_size)
    lengths, seen = set(), []
    for process in range(process_count):
        evaluation = data.create_eval_iterator(
            config, process_index=process, process_count=process_count
        )
        batches = list(evaluation)
        lengths.add((len(evaluation), len(batches)))
        images = np.concatenate([b["image"] for b in batches])
        labels = np.concatenate([b["label"] for b in batches])
        mask = np.concatenate([b["mask"] for b in batches])
        assert all(b["image"].shape[0] == 3 for b in batches) and mask.dtype == bool
        expected = list(range(process, TINY_SPLITS["validation"], process_count))
        assert mask.tolist() == [True] * len(expected) + [False] * (len(mask) - len(expected))
        for position, index in enumerate(expected):
            data_bytes, label, _ = source[index]
            np.testing.assert_array_equal(images[position], transform(data_bytes))
            assert labels[position] == label
        assert not images[~mask].any()
        seen += expected
    assert len(lengths) == 1  # every process runs the same number of eval steps
    assert sorted(seen) == list(range(TINY_SPLITS["validation"]))


def test_eval_split_defaults_to_validation_then_test(tiny_data_dir, demo_data_dir):
    assert sources.eval_split(_tiny(tiny_data_dir)) == "validation"
    assert sources.eval_split(make_config("demo", demo_data_dir)) == "test"
    info = data.get_dataset_info(_tiny(tiny_data_dir, **{"input.train_split": "train[:30]"}))
    assert (info.num_classes, info.num_train, info.num_eval) == (3, 30, 10)


def test_batch_size_must_divide_over_processes(demo_data_dir):
    config = make_config("demo", demo_data_dir, batch_size=6)
    with pytest.raises(ValueError, match="multiple of the number of processes"):
        data.create_train_iterator(config, process_index=0, process_count=4)


def test_the_default_worker_count_follows_the_usable_cores(monkeypatch):
    from smlp_jax.data import config as data_config

    cfg = data.default_input_config()
    assert cfg.num_workers == -1  # chosen from the cores
    for cores, workers in ((1, 0), (2, 0), (3, 0), (4, 2), (16, 14), (96, 32)):
        monkeypatch.setattr(data_config, "usable_cores", lambda cores=cores: cores)
        assert data.worker_count(cfg) == workers, cores
        data.check_loading(cfg)  # -1 is valid whatever the cores
    assert data.worker_count({"num_workers": 3}) == 3  # asked for: as asked
    with pytest.raises(data.DataError, match=r"num_workers=-2.*or -1 to choose from the cores"):
        data.check_loading({**cfg.to_dict(), "num_workers": -2})
