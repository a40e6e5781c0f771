"""Reading weight files safely and refusing weights that do not fit, with clear errors.

Uses a tiny sMLPNet and the checked-in fixture weights; the PyTorch-specific checks
(`weights_only` refusing pickled code, SPACH checkpoints with an argparse Namespace)
run only where torch is installed.
"""

import argparse
import os
import pickle

import numpy as np
import pytest

import smlp_jax
from smlp_jax.convert import WeightsFileError, WeightsMismatchError, load_pretrained, read_weights
from smlp_jax.convert.assign import CONV, CONV1X1_AS_DENSE, COPY, LINEAR

FIXTURE = os.path.join(os.path.dirname(__file__), "..", "fixtures", "smlpnet_tiny.npz")
TINY = dict(num_classes=10, dim=8, depths=(2, 2, 2, 2))


@pytest.fixture(scope="module")
def weights():
    with np.load(FIXTURE, allow_pickle=False) as f:
        return {k.removeprefix("weights/"): f[k] for k in f.files if k.startswith("weights/")}


@pytest.fixture(scope="module")
def model():
    return smlp_jax.create_model("smlpnet_t", image_size=64, **TINY)


def head(model):
    return np.asarray(model.head.kernel[...]).copy()


@pytest.mark.parametrize("layout", [COPY, LINEAR, CONV, CONV1X1_AS_DENSE])
def test_layout_to_official_inverts_to_ours(layout):
    official_shape = {
        COPY: (3, 5),
        LINEAR: (3, 5),
        CONV: (6, 2, 3, 5),
        CONV1X1_AS_DENSE: (6, 2, 1, 1),
    }
    official = np.random.default_rng(0).normal(size=official_shape[layout]).astype(np.float32)
    ours = layout.to_ours(official)
    assert layout.official_shape(ours.shape) == official.shape
    np.testing.assert_array_equal(layout.to_official(ours), official)


def test_missing_and_unexpected_keys_are_named(model, weights):
    broken = dict(weights)
    del broken["token_mix.3.1.proj_h.weight"]
    broken["extra.weight"] = np.zeros(3, np.float32)
    before = head(model)
    with pytest.raises(WeightsMismatchError) as e:
        load_pretrained(model, broken)
    assert "'token_mix.3.1.proj_h.weight'" in str(e.value) and "missing" in str(e.value)
    assert "'extra.weight'" in str(e.value) and "unexpected" in str(e.value)
    np.testing.assert_array_equal(head(model), before)  # nothing was written


def test_shape_mismatch_names_key_and_both_shapes(weights):
    bigger = smlp_jax.create_model("smlpnet_t", image_size=128, **TINY)
    before = head(bigger)
    with pytest.raises(WeightsMismatchError) as e:
        load_pretrained(bigger, weights, model_name="smlpnet_t")
    msg = str(e.value)
    # Stage 1's grid is 16 at 64 px and 32 at 128 px.
    assert "'token_mix.0.1.proj_h.weight' has shape (16, 16, 1, 1)" in msg
    assert "expects (32, 32, 1, 1)" in msg
    assert "image_size" in msg
    np.testing.assert_array_equal(head(bigger), before)


def test_num_classes_mismatch(weights):
    other = smlp_jax.create_model("smlpnet_t", image_size=64, **{**TINY, "num_classes": 7})
    with pytest.raises(WeightsMismatchError, match=r"mlp_head\.0\.weight.*\(10, 64\).*\(7, 64\)"):
        load_pretrained(other, weights)


def test_missing_and_corrupt_files(tmp_path, model):
    with pytest.raises(WeightsFileError, match="does not exist"):
        load_pretrained(model, str(tmp_path / "nope.npz"))
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"PK\x03\x04 this is not a zip archive")
    with pytest.raises(WeightsFileError, match="could not read"):
        load_pretrained(model, str(bad))
    unknown = tmp_path / "weights.h5"
    unknown.write_bytes(b"x")
    with pytest.raises(WeightsFileError, match="do not know how to read"):
        read_weights(str(unknown))


def test_npz_with_pickled_objects_is_refused(tmp_path):
    path = tmp_path / "objects.npz"
    np.savez(path, w=np.array([{"a": 1}], dtype=object))
    with pytest.raises(WeightsFileError):
        read_weights(str(path))


def test_nested_checkpoints_prefixes_and_keys(weights):
    nested = {"model": {f"module.{k}": v for k, v in weights.items()}, "epoch": 3}
    flat = read_weights(nested)
    assert set(flat) == set(weights)
    with pytest.raises(WeightsFileError, match="no entry 'model_ema'"):
        read_weights(nested, checkpoint_key="model_ema")


def test_torch_checkpoint_loads_without_running_pickled_code(tmp_path, weights, model):
    torch = pytest.importorskip("torch")
    # A SPACH-style training checkpoint: weights, EMA weights, args as a Namespace.
    state = {k: torch.from_numpy(v.copy()) for k, v in weights.items()}
    path = tmp_path / "smlp_tiny.pth"
    torch.save({"model": state, "model_ema": state, "args": argparse.Namespace(lr=5e-4)}, path)
    load_pretrained(model, str(path))
    np.testing.assert_array_equal(head(model), weights["mlp_head.0.weight"].T)

    # Unpickling this would create a directory; refusing it must leave none behind.
    marker = tmp_path / "pickled_code_ran"

    class Evil:
        def __reduce__(self):
            return (os.mkdir, (str(marker),))

    def legacy_save(obj, path):
        with open(path, "wb") as f:
            pickle.dump(obj, f)

    for i, save in enumerate((torch.save, legacy_save)):
        evil = tmp_path / f"evil{i}.pth"  # the zip format, then a legacy bare pickle
        save({"model": {"w": torch.zeros(2)}, "hook": Evil()}, evil)
        with pytest.raises(WeightsFileError, match="refused"):
            read_weights(str(evil))
        assert not marker.exists()
