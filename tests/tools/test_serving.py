"""Export for serving (`smlp_jax.serving`, `python -m smlp_jax.tools.export_serving`): a
saved and reloaded artifact gives the model's eval logits for any batch size, for every
family; ONNX through jax2onnx where it is installed."""

import json
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import smlp_jax
from smlp_jax import serving
from smlp_jax.tools import export_serving
from tests.models import (
    test_as_mlp,
    test_convmixer,
    test_dynamixer,
    test_hire_mlp,
    test_mixer,
    test_permutator,
    test_raft_mlp,
    test_smlpnet,
    test_sparse_mlp,
)
from tests.train.tiny import REPO

# Each family's tiny hyperparameters, from its own model tests (32x32 inputs).
TINY = {
    "smlpnet_t": test_smlpnet.TINY,
    "mixer_s16": test_mixer.TINY,
    "convmixer_256_8": test_convmixer.TINY,
    "dynamixer_s": test_dynamixer.TINY,
    "vip_s7": test_permutator.TINY,
    "asmlp_t": test_as_mlp.TINY,
    "hiremlp_t": test_hire_mlp.TINY,
    "raftmlp_s": test_raft_mlp.TINY,
    "sparse_mlp_s": test_sparse_mlp.TINY,
}
FIXTURE = REPO / "tests" / "fixtures" / "smlpnet_tiny.npz"
forward = nnx.jit(lambda model, x: model(x))


def tiny(name: str) -> nnx.Module:
    """`name` with its tiny hyperparameters and random weights and BatchNorm statistics
    (filled in from numpy: initialising op by op compiles each initialiser, seconds)."""
    kwargs = {"num_classes": 5, "image_size": 32, **TINY[name]}
    graphdef, state = nnx.split(nnx.eval_shape(lambda: smlp_jax.create_model(name, **kwargs)))
    rng = np.random.default_rng(0)

    def fill(path, leaf):
        variable = [k.key for k in path if isinstance(k, jax.tree_util.DictKey)][-1]
        if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            return jax.random.key(0)
        if not jnp.issubdtype(leaf.dtype, jnp.floating):
            return jnp.zeros(leaf.shape, leaf.dtype)
        if variable == "var":
            value = rng.uniform(0.5, 1.5, leaf.shape)
        elif variable == "scale":
            value = 1 + 0.1 * rng.normal(size=leaf.shape)
        elif len(leaf.shape) >= 2:  # kernels: unit-variance outputs, logits of order 1
            value = rng.normal(size=leaf.shape) / np.sqrt(np.prod(leaf.shape[:-1]))
        else:
            value = 0.1 * rng.normal(size=leaf.shape)
        return jnp.asarray(value, leaf.dtype)

    return nnx.merge(graphdef, jax.tree_util.tree_map_with_path(fill, state))


def images(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, 32, 32, 3)).astype(np.float32)


def reference(model, x):
    """The model's eval-mode logits (BatchNorm running statistics), model left as it was."""
    model.eval()
    logits = np.asarray(forward(model, jnp.asarray(x)))
    model.train()
    return logits


def test_one_artifact_serves_two_batch_sizes_and_records_its_input(tmp_path):
    model = tiny("smlpnet_t")
    exported = serving.export_model(model, platforms=("cpu", "cuda"))  # lowers for both
    assert exported.platforms == ("cpu", "cuda")
    assert model.norm.use_running_average is False  # the caller's model: still train mode
    folder = serving.save(
        exported, tmp_path / "art", weights=serving.serving_weights(model), model_name="smlpnet_t"
    )
    served = serving.load(folder)
    x = images(5)
    expected = reference(model, x)
    np.testing.assert_allclose(np.asarray(served(x)), expected, atol=1e-5, rtol=0)
    np.testing.assert_allclose(np.asarray(served(x[:2])), expected[:2], atol=1e-5, rtol=0)
    meta = json.loads((folder / serving.SIDECAR_FILE).read_text())
    cfg = smlp_jax.models.pretrained_cfg("smlpnet_t")
    assert meta["model"] == "smlpnet_t" and meta["image_size"] == 32
    assert meta["num_classes"] == 10 and meta["input"]["shape"] == ["b", 32, 32, 3]
    assert meta["mean"] == list(cfg.mean) and meta["std"] == list(cfg.std)
    assert meta["crop_pct"] == cfg.crop_pct and meta["jax_version"] == jax.__version__
    assert meta["platforms"] == ["cpu", "cuda"] and served.metadata == meta
    with pytest.raises(serving.ServingError, match="NHWC"):
        served(x[:, :16])


@pytest.mark.parametrize("name", sorted(set(TINY) - {"smlpnet_t"}))
def test_every_family_round_trips_through_the_artifact(name, tmp_path):
    model = tiny(name)
    folder = serving.save(
        serving.export_model(model, image_size=32),
        tmp_path,
        weights=serving.serving_weights(model),
        model_name=name,
    )
    served = serving.load(folder)
    x = images(2, seed=1)  # one batch size: the symbolic batch is tested above
    np.testing.assert_allclose(np.asarray(served(x)), reference(model, x), atol=1e-5, rtol=0)


def test_baked_weights_fixed_batch_and_clear_errors(tmp_path):
    model = tiny("convmixer_256_8")
    exported = serving.export_model(model, image_size=32, batch=2, bake_weights=True)
    with pytest.raises(serving.ServingError, match="baked in"):
        serving.save(exported, tmp_path, weights={}, model_name="convmixer_256_8")
    folder = serving.save(exported, tmp_path / "baked", model_name="convmixer_256_8")
    assert not (folder / serving.WEIGHTS_FILE).exists()
    served = serving.load(folder)
    x = images(2)
    np.testing.assert_allclose(np.asarray(served(x)), reference(model, x), atol=1e-5, rtol=0)
    with pytest.raises(serving.ServingError, match="exported for 2"):
        served(x[:1])
    # Baked-in weights with a forward that writes a variable (MoE's auxiliary loss).
    assert serving.export_model(tiny("sparse_mlp_s"), bake_weights=True).in_avals[0].shape[1:]
    # Weights that do not fit, an artifact for another platform, a folder without one.
    argument = serving.export_model(model, image_size=32, platforms=("cuda",))
    weights = serving.serving_weights(model)
    with pytest.raises(serving.ServingError, match="pass weights="):
        serving.save(argument, tmp_path, model_name="convmixer_256_8")
    bad = {**weights, "head/kernel": np.zeros((3, 3), np.float32)}
    with pytest.raises(serving.ServingError, match=r"head/kernel is float32\[3, 3\]"):
        serving.save(argument, tmp_path, weights=bad, model_name="convmixer_256_8")
    cuda_only = serving.save(argument, tmp_path / "cuda", weights=weights, model_name="x", **CFG)
    with pytest.raises(serving.ServingError, match="exported for cuda, and JAX runs on cpu"):
        serving.load(cuda_only)
    with pytest.raises(serving.ServingError, match="no serving artifact"):
        serving.load(tmp_path / "missing")


CFG = dict(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), crop_pct=1.0, interpolation="bilinear")


def test_cli_artifact_gives_the_official_codes_logits(tmp_path, capsys):
    """`--model --pretrained`: the sMLPNet fixture's official-layout weights; the artifact
    reproduces the logits the official PyTorch code gave on the fixture's images."""
    with np.load(FIXTURE, allow_pickle=False) as f:
        config = json.loads(str(f["config"]))
        weights = {k.removeprefix("weights/"): f[k] for k in f.files if k.startswith("weights/")}
        x, logits = f["input"], f["logits"]
    np.savez(tmp_path / "smlp_tiny.npz", **weights)
    argv = ["--model", "smlpnet_t", "--pretrained", str(tmp_path / "smlp_tiny.npz")]
    argv += ["--num-classes", str(config.pop("num_classes"))]
    argv += ["--image-size", str(config.pop("image_size")), "--out", str(tmp_path / "out")]
    argv += [f"--model-arg={k}={tuple(v) if isinstance(v, list) else v}" for k, v in config.items()]
    assert export_serving.main(argv) == 0
    assert capsys.readouterr().out.split() == [
        str(tmp_path / "out" / name)
        for name in (serving.FORWARD_FILE, serving.WEIGHTS_FILE, serving.SIDECAR_FILE)
    ]
    served = serving.load(tmp_path / "out")
    np.testing.assert_allclose(np.asarray(served(x)), logits, atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--model", "smlpnet_tt"], "unknown model 'smlpnet_tt'"),
        (["--model", "smlpnet_t", "--pretrained", "nope.pth"], "--pretrained nope.pth: no"),
        (["--checkpoint", "nope", "--config", "configs/smlpnet.py:demo"], "no such workdir"),
        (["--checkpoint", "tests"], "has no run record"),  # a folder, not one of our runs
    ],
)
def test_cli_bad_input_is_one_line(argv, message, tmp_path, capsys):
    assert export_serving.main([*argv, "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1, err


@pytest.mark.parametrize("name", ["smlpnet_t", "mixer_s16", "convmixer_256_8"])
def test_onnx_export_reproduces_the_logits(name, tmp_path):
    pytest.importorskip("jax2onnx")
    onnxruntime = pytest.importorskip("onnxruntime")
    model = tiny(name)
    path = serving.export_onnx(model, tmp_path / "model.onnx", image_size=32)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = images(3)
    expected = reference(model, x)
    for n in (3, 1):
        (logits,) = session.run(["logits"], {"images": x[:n]})
        np.testing.assert_allclose(logits, expected[:n], atol=1e-5, rtol=0)


# --- a tampered artifact (issue 35): ServingError, one line, nothing deserialized or run ---


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    model = tiny("mixer_s16")
    folder = tmp_path_factory.mktemp("artifact") / "mixer"
    exported = serving.export_model(model, image_size=32)
    return serving.save(
        exported, folder, weights=serving.serving_weights(model), model_name="x", **CFG
    )


def _truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _flip(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit, mid-file: the StableHLO or an array
    path.write_bytes(bytes(data))


def _object_weights(path):
    np.savez(path, **{"head/kernel": np.array([{"a": 1}], dtype=object)})


@pytest.mark.parametrize(
    "file, tamper, line",
    [
        (serving.FORWARD_FILE, _truncate, "forward.jaxexport does not match the sha256"),
        (serving.FORWARD_FILE, _flip, "forward.jaxexport does not match the sha256"),
        (serving.WEIGHTS_FILE, _flip, "weights.npz does not match the sha256"),
        (serving.WEIGHTS_FILE, _object_weights, "weights.npz does not match the sha256"),
        (serving.SIDECAR_FILE, lambda p: p.write_text("[1, 2]"), "holds a JSON list"),
        (serving.SIDECAR_FILE, lambda p: p.write_text("{oops"), "is not valid JSON"),
        (serving.SIDECAR_FILE, lambda p: p.write_bytes(b"\xff\xfe"), "is not valid JSON"),
    ],
)
def test_a_tampered_artifact_is_one_line_and_nothing_is_run(
    artifact, file, tamper, line, tmp_path, monkeypatch
):
    import shutil

    folder = shutil.copytree(artifact, tmp_path / "copy")
    tamper(folder / file)

    def never(*args, **kwargs):
        raise AssertionError("a tampered artifact was deserialized")

    monkeypatch.setattr(jax.export, "deserialize", never)
    with pytest.raises(serving.ServingError) as err:
        serving.load(folder)
    assert line in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize(
    "file, tamper, line",
    [
        (serving.FORWARD_FILE, _truncate, "forward.jaxexport is not a readable jax.export"),
        (serving.WEIGHTS_FILE, _object_weights, "array 'head/kernel' holds Python objects"),
        (serving.WEIGHTS_FILE, _truncate, "could not read"),
    ],
)
def test_without_recorded_digests_damage_is_still_one_line(artifact, file, tamper, line, tmp_path):
    """Artifacts saved before serving.json recorded sha256 digests: the readers' own
    refusals (an unreadable artifact, object arrays, a truncated npz) are one line."""
    import shutil

    folder = shutil.copytree(artifact, tmp_path / "copy")
    sidecar = folder / serving.SIDECAR_FILE
    sidecar.write_text(json.dumps({**json.loads(sidecar.read_text()), "sha256": {}}))
    tamper(folder / file)
    with pytest.raises(serving.ServingError) as err:
        serving.load(folder)
    assert line in str(err.value) and "\n" not in str(err.value)


def test_served_model_refuses_non_float_images(artifact):
    served = serving.load(artifact)
    with pytest.raises(serving.ServingError, match=r"uint8 images: .* \(x / 255 - mean\) / std"):
        served(np.zeros((1, 32, 32, 3), np.uint8))


def test_onnx_without_jax2onnx_fails_before_the_build_and_writes_nothing(
    tmp_path, capsys, monkeypatch
):
    monkeypatch.setitem(sys.modules, "jax2onnx", None)  # as if not installed
    built = []
    monkeypatch.setattr(export_serving, "build", lambda *args: built.append(args))
    out = tmp_path / "served"
    assert export_serving.main(["--model", "smlpnet_t", "--onnx", "--out", str(out)]) == 1
    assert capsys.readouterr().err == (
        "error: --onnx needs jax2onnx, which is not installed: pip install jax2onnx (see "
        "docs/models.md, 'For serving'), or leave out --onnx.\n"
    )
    assert not built and not out.exists()


def test_a_failed_export_leaves_the_folder_as_it_was(tmp_path, capsys, monkeypatch):
    """A failure after the artifact is written (here the ONNX step) leaves no new folder,
    and an earlier artifact in `--out` untouched."""
    model = tiny("smlpnet_t")
    monkeypatch.setattr(
        export_serving,
        "build",
        lambda *args: (model, {"model_name": "smlpnet_t", "image_size": 32}),
    )
    monkeypatch.setattr(export_serving, "check_optional_dependencies", lambda args: None)

    def fails(*args, **kwargs):
        raise serving.ServingError("the ONNX step failed")

    monkeypatch.setattr(serving, "export_onnx", fails)
    out = tmp_path / "new" / "served"
    assert export_serving.main(["--model", "smlpnet_t", "--onnx", "--out", str(out)]) == 1
    assert capsys.readouterr().err == "error: the ONNX step failed\n"
    assert not out.parent.exists()

    earlier = tmp_path / "earlier"
    earlier.mkdir()
    (earlier / serving.SIDECAR_FILE).write_text("{}")
    assert export_serving.main(["--model", "smlpnet_t", "--onnx", "--out", str(earlier)]) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["earlier"]  # no staging folder left
    assert [p.name for p in earlier.iterdir()] == [serving.SIDECAR_FILE]
    assert (earlier / serving.SIDECAR_FILE).read_text() == "{}"
    # Without the failing step the same command replaces it, whole.
    monkeypatch.undo()
    monkeypatch.setattr(
        export_serving,
        "build",
        lambda *args: (model, {"model_name": "smlpnet_t", "image_size": 32}),
    )
    assert export_serving.main(["--model", "smlpnet_t", "--out", str(earlier)]) == 0
    assert sorted(p.name for p in earlier.iterdir()) == sorted(
        [serving.FORWARD_FILE, serving.WEIGHTS_FILE, serving.SIDECAR_FILE]
    )
    x = images(2)
    np.testing.assert_allclose(
        np.asarray(serving.load(earlier)(x)), reference(model, x), atol=1e-5, rtol=0
    )
