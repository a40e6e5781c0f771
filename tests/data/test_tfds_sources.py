"""The demo dataset builds offline without TensorFlow; tfds errors never download."""

import subprocess
import sys
import textwrap

import numpy as np
import pytest

from smlp_jax import data
from smlp_jax.data import demo_dataset, sources
from tests.data.conftest import make_config

# Runs in a fresh interpreter where any socket use raises; TensorFlow must never be imported
# (the training install does not have it; with the [prepare] extra it is there but unused).
_OFFLINE_BUILD = textwrap.dedent(
    """
    import socket, sys
    def _no_network(*args, **kwargs):
        raise AssertionError("network access attempted")
    socket.socket.connect = _no_network
    socket.create_connection = _no_network
    socket.getaddrinfo = _no_network
    from smlp_jax.data import demo_dataset, tfds_source
    demo_dataset.ensure_built(sys.argv[1])
    for split in ("train", "test"):
        source = tfds_source.open_tfds_split(demo_dataset.TFDS_NAME, split, sys.argv[1])
        print(split, len(source), source.num_classes)
    assert "tensorflow" not in sys.modules
    """
)


def test_demo_builds_offline_without_tensorflow(tmp_path):
    result = subprocess.run(
        [sys.executable, "-c", _OFFLINE_BUILD, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split() == ["train", "4000", "10", "test", "1000", "10"]


def test_demo_split_rule_and_class_balance(demo_data_dir):
    images, labels = demo_dataset.load_digits()
    assert images.shape == (5000, 28, 28) and np.bincount(labels).tolist() == [500] * 10
    config = make_config("demo", demo_data_dir)
    from PIL import Image

    from smlp_jax.data import transforms

    for split, per_class in (("train", 400), ("test", 100)):
        source = sources.open_split(config, split)
        got_labels = np.array([source[i][1] for i in range(len(source))])
        assert np.bincount(got_labels, minlength=10).tolist() == [per_class] * 10
        # The split rule: per class the first 400 rows of the file train, the last 100 test.
        rows = demo_dataset.split_indices(labels)[split]
        want = {images[r].tobytes(): int(labels[r]) for r in rows}
        for i in range(0, len(source), 97):
            encoded, label, _ = source[i]
            pixels = np.asarray(transforms.open_image(encoded))
            assert want[pixels.reshape(28, 28).tobytes()] == label
        assert isinstance(transforms.open_image(source[0][0]), Image.Image)


def test_unprepared_tfds_dataset_names_the_prepare_command(tmp_path, monkeypatch):
    import socket

    def no_network(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    config = make_config("cifar10", str(tmp_path))
    with pytest.raises(data.DataError) as error:
        data.get_dataset_info(config)
    message = str(error.value)
    assert "not prepared" in message
    assert f"python -m smlp_jax.tools.prepare_data cifar10 --data_dir {tmp_path}" in message
    with pytest.raises(data.DataError, match="not prepared"):
        data.create_train_iterator(config, process_index=0, process_count=1)


def test_unknown_dataset_and_split_are_clear_errors(tmp_path, tiny_data_dir):
    with pytest.raises(data.DataError, match="Unknown dataset 'no_such_dataset_xyz'"):
        data.get_dataset_info(make_config("no_such_dataset_xyz", str(tmp_path)))
    config = make_config("smlp_test_tiny", tiny_data_dir, **{"input.eval_split": "test"})
    with pytest.raises(data.DataError, match="has no split 'test'"):
        data.create_eval_iterator(config, process_index=0, process_count=1)


def _truncated_copy(data_dir: str, to, at_block: bool = False) -> str:
    """A copy of the tfds data dir `data_dir` whose train shard lost its second half: a
    download or copy cut short mid-block ("Corrupted Riegeli/records file"), or at a 64 kB
    block boundary (`at_block`: its records then read back empty)."""
    import shutil

    copy = shutil.copytree(data_dir, to)
    (shard,) = copy.glob("*/*/*-train.array_record-*")
    cut = shard.stat().st_size // 2 // 65536 * 65536 if at_block else shard.stat().st_size // 2
    shard.write_bytes(shard.read_bytes()[: cut + (0 if at_block else 100)])
    return str(copy)


def test_a_truncated_tfds_cache_names_the_folder_and_the_command(tmp_path, tiny_data_dir):
    data_dir = _truncated_copy(tiny_data_dir, tmp_path / "tfds")
    folder = f"{data_dir}/smlp_test_tiny/1.0.0"
    with pytest.raises(data.DataError) as error:
        data.get_dataset_info(make_config("smlp_test_tiny", data_dir))
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith(f"tfds dataset 'smlp_test_tiny' (train): the files in {folder} ")
    assert "are damaged (RuntimeError: " in message and "Riegeli" in message
    assert message.endswith(
        "delete that folder and prepare it again: python -m smlp_jax.tools.prepare_data "
        f"smlp_test_tiny --data_dir {data_dir}."
    )
    # Cut at a block boundary, the reader gives empty records instead of an error.
    data_dir = _truncated_copy(tiny_data_dir, tmp_path / "at_block", at_block=True)
    with pytest.raises(data.DataError, match=r"are damaged \(record 0 reads back empty\)"):
        data.get_dataset_info(make_config("smlp_test_tiny", data_dir))


def test_a_damaged_demo_set_rebuilds_itself(tmp_path, demo_data_dir, caplog):
    data_dir = _truncated_copy(demo_data_dir, tmp_path / "tfds")
    config = make_config("demo", data_dir)
    with caplog.at_level("WARNING", logger="smlp_jax.data.demo_dataset"):
        info = data.get_dataset_info(config)
    assert (info.num_train, info.num_eval) == (4000, 1000)
    (record,) = [r for r in caplog.records if r.name == "smlp_jax.data.demo_dataset"]
    assert record.getMessage().startswith(
        f"The demo digits in {data_dir}/smlp_demo_digits/1.0.0 are damaged (RuntimeError: "
    )
    assert record.getMessage().endswith("; building them again.")
    source = sources.open_split(config, "train")
    assert source[len(source) - 1][1] in range(10)  # the rebuilt set reads to the end


def test_main_py_on_a_truncated_tfds_cache_is_one_line(tmp_path, demo_data_dir):
    """Through main.py: the demo's files under their tfds name (no self-repair there)."""
    from tests.train.tiny import run_main

    data_dir = _truncated_copy(demo_data_dir, tmp_path / "tfds")
    result = run_main(tmp_path / "workdir", data_dir, dataset="smlp_demo_digits")
    assert result.returncode == 1, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: tfds dataset 'smlp_demo_digits' (train): the files in ")
    assert "Traceback" not in result.stderr
    assert last.endswith(f"prepare_data smlp_demo_digits --data_dir {data_dir}.")
