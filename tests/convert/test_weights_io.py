"""Reading weight files safely and refusing weights that do not fit, with clear errors.

Uses a tiny sMLPNet and the checked-in fixture weights; the PyTorch-specific checks
(`weights_only` refusing pickled code, SPACH checkpoints with an argparse Namespace)
run only where torch is installed.
"""

import argparse
import io
import os
import pickle
import time
import zipfile

import numpy as np
import numpy.lib.format as npy_format
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


def crafted_npz(path, shape=(10**6, 10**6), data=b"0123456789abcdef"):
    """An .npz whose one array declares `shape` (4 TB of float32) and holds 16 bytes."""
    header = io.BytesIO()
    npy_format.write_array_header_1_0(
        header, {"descr": "<f4", "fortran_order": False, "shape": shape}
    )
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("w.npy", header.getvalue() + data)
    return path


def test_a_crafted_npz_header_is_refused_before_anything_is_read(tmp_path, monkeypatch):
    """numpy allocates what the header declares before reading: the declared shape is
    checked against the member's bytes first, so np.load is never reached."""
    path = crafted_npz(tmp_path / "crafted.npz")

    def never(*args, **kwargs):
        raise AssertionError("np.load reached")

    monkeypatch.setattr(np, "load", never)
    start = time.perf_counter()
    with pytest.raises(WeightsFileError) as err:
        read_weights(str(path))
    assert time.perf_counter() - start < 1
    assert str(err.value) == (
        f"{path}: array 'w' declares float32[1000000, 1000000] (4.0 TB) but holds 16 bytes "
        "(a truncated, damaged or crafted file)."
    )


def test_damaged_and_object_npz_are_one_line(tmp_path, weights):
    objects = tmp_path / "objects.npz"
    np.savez(objects, w=np.array([{"a": 1}], dtype=object))
    with pytest.raises(WeightsFileError, match="holds Python objects") as err:
        read_weights(str(objects))
    assert "\n" not in str(err.value)
    whole = tmp_path / "whole.npz"
    np.savez(whole, **weights)
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(WeightsFileError, match="could not read") as err:
        read_weights(str(truncated))
    assert "\n" not in str(err.value)
    assert read_weights(str(whole)).keys() == weights.keys()  # the intact file still reads


def test_create_model_reads_the_weights_before_building(tmp_path, monkeypatch):
    def never(*args, **kwargs):
        raise AssertionError("the model was built before its weights were read")

    monkeypatch.setattr(smlp_jax.factory, "make_model", never)
    with pytest.raises(WeightsFileError, match="declares float32"):
        smlp_jax.create_model("smlpnet_t", pretrained=str(crafted_npz(tmp_path / "w.npz")))
    with pytest.raises(WeightsFileError, match="does not exist"):
        smlp_jax.create_model("smlpnet_t", pretrained=str(tmp_path / "missing.npz"))


def test_the_export_tool_refuses_a_crafted_npz_in_one_line(tmp_path, capsys):
    from smlp_jax.tools import export

    path = crafted_npz(tmp_path / "crafted.npz")
    argv = ["--model", "smlpnet_t", "--pretrained", str(path), "--out", str(tmp_path / "o.npz")]
    assert export.main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: {path}: array 'w' declares") and err.count("\n") == 1, err
