"""Repeated augmentation: DeiT's RASampler order, through the grain pipeline.

The official index lists (`reference/make_recipe_fixture.py`: timm 0.5.4's release of
DeiT's RASampler, N = 4,000 demo train digits, 2 replicas, epochs 0 and 1) must be what
each of 2 processes reads, and one process with 2 virtual replicas must read the same
global batches.
"""

import numpy as np
import pytest

from smlp_jax.data import DataError, repeated_aug, train_steps_per_epoch
from smlp_jax.data.pipeline import create_train_iterator
from tests.train.tiny import tiny_config

FIXTURE = "tests/fixtures/recipe_smlpnet.npz"
N, B = 4000, 64


@pytest.fixture(scope="module")
def official():
    with np.load(FIXTURE) as f:
        return {k: f[k] for k in f.files if k.startswith("ra/")}


def test_torch_randperm_without_torch_matches_recorded_permutation(official):
    # ra/0/0 starts with the permutation's first entries, each 3 times over 2 ranks.
    perm = repeated_aug.torch_randperm(N, 0)
    assert sorted(perm.tolist()) == list(range(N))
    lists = repeated_aug.epoch_lists(N, 0, 2)
    interleaved = np.stack([lists[0], lists[1]], axis=1).reshape(-1)
    np.testing.assert_array_equal(interleaved[:30], np.repeat(perm, 3)[:30])


@pytest.mark.parametrize("epoch", [0, 1])
def test_epoch_lists_equal_the_official_sampler(official, epoch):
    lists = repeated_aug.epoch_lists(N, epoch, 2)
    for rank in (0, 1):
        np.testing.assert_array_equal(lists[rank], official[f"ra/{epoch}/{rank}"])


def test_two_processes_read_the_official_lists_for_two_epochs(official):
    steps = repeated_aug.check_settings(N, B, 3, 2)
    assert steps == 1920 // 32  # floor(4000 // 256 * 256 / 2) samples, 32 a step each
    for process in (0, 1):
        ra = repeated_aug.RepeatedAugIndices(N, B, 3, 2, process, 2)
        read = [ra(q) for q in range(2 * steps * 32)]
        expected = np.concatenate([official[f"ra/0/{process}"], official[f"ra/1/{process}"]])
        np.testing.assert_array_equal(read, expected[: 2 * steps * 32])


def test_pipeline_batches_do_not_depend_on_the_process_count(demo_data_dir):
    config = tiny_config(
        demo_data_dir,
        **{"input.repeated_aug": 3, "input.repeated_aug_replicas": 2, "batch_size": B},
    )
    one = create_train_iterator(config, process_index=0, process_count=1)
    two = [create_train_iterator(config, process_index=p, process_count=2) for p in (0, 1)]
    for _ in range(2):
        whole = next(one)
        halves = [next(it) for it in two]
        for key in ("image", "label"):
            np.testing.assert_array_equal(whole[key], np.concatenate([h[key] for h in halves]))
    # Resuming at batch 1 gives batch 1.
    state = one.get_state()
    again = create_train_iterator(config, process_index=0, process_count=1)
    again.set_state(state)
    np.testing.assert_array_equal(next(again)["image"], next(one)["image"])
    for it in (one, again, *two):
        it.close()
    assert train_steps_per_epoch(config, N) == 60


def test_labels_follow_the_official_order(demo_data_dir, official):
    from smlp_jax.data import sources

    config = tiny_config(
        demo_data_dir,
        **{"input.repeated_aug": 3, "input.repeated_aug_replicas": 2, "batch_size": B},
    )
    source = sources.open_split(config, sources.train_split(config))
    it = create_train_iterator(config, process_index=0, process_count=1)
    labels = next(it)["label"]
    it.close()
    expected = [source[int(i)][1] for i in official["ra/0/0"][:32]]
    expected += [source[int(i)][1] for i in official["ra/0/1"][:32]]
    np.testing.assert_array_equal(labels, expected)


@pytest.mark.parametrize(
    ("batch", "repeats", "replicas", "message"),
    [
        (64, 3, 3, "repeated_aug_replicas=3 does not divide config.batch_size=64"),
        (64, -1, 2, "repeated_aug=-1"),
        (4096, 3, 2, "fewer than its batch of 2048"),
    ],
)
def test_settings_that_cannot_work_say_so(batch, repeats, replicas, message):
    with pytest.raises(DataError, match=message):
        repeated_aug.check_settings(N, batch, repeats, replicas)
