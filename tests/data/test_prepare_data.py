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
