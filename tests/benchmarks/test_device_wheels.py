"""benchmarks/device_wheels.py, offline parts only (its `download` needs PyPI): the
image's packages are never carried, and `install` without wheels is one clear line."""

import sys

from tests.train.tiny import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
import device_wheels  # noqa: E402


def test_names_are_normalised_and_the_image_keeps_its_own_jax_and_torch():
    image = {device_wheels._name(n) for n in device_wheels.IMAGE}
    assert {"jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "torch", "timm"} <= image
    assert device_wheels._name("ML_Collections") == "ml-collections"
    # What the device lacks is resolved and carried, not assumed present.
    assert not {"grain", "clu", "ml-collections", "tensorflow-datasets", "simplejpeg"} & image


def test_install_without_wheels_says_what_to_do(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(device_wheels, "WHEELS", tmp_path / "wheels")
    assert device_wheels.main(["install"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("no wheels in ") and "run `download` here" in err and "\n" not in err
