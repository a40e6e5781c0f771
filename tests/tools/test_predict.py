"""`python -m smlp_jax.tools.predict`: top-k names and probabilities from our trainer's
weights and from official-layout weights; bad images and mismatched weights are one line."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from smlp_jax.tools import predict
from smlp_jax.tools.trained import load_config
from tests.train.tiny import REPO, subprocess_env

CONFIG = str(REPO / "configs" / "smlpnet.py") + ":demo"
FIXTURE = REPO / "tests" / "fixtures" / "smlpnet_tiny.npz"


def test_imagenet_class_names_are_1000_unique():
    names = predict.imagenet_class_names()
    assert len(names) == 1000 and len(set(names)) == 1000
    assert names[:3] == ["tench", "goldfish", "great white shark"]
    assert names[207] == "golden retriever" and names[999] == "toilet tissue"


@pytest.fixture(scope="module")
def trained(trained_demo_run):
    """A tiny sMLPNet trained 4 steps by the trainer: (workdir, its --config.* flags, written
    as for main.py: the tools parse them by the same rules)."""
    workdir, overrides = trained_demo_run
    return workdir, [f"--config.{k}={v}" for k, v in overrides.items()]


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """Two generated digit-like images (different sizes and modes) and a corrupt file."""
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (40, 28), np.uint8), mode="L").save(folder / "a.png")
    Image.fromarray(rng.integers(0, 255, (30, 50, 3), np.uint8)).save(folder / "b.jpg")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    return folder


def _args(*argv):
    return predict.parse_args([str(a) for a in argv])


def test_prediction_is_one_compiled_forward(trained, images):
    """Run op by op, the forward compiled each op on its own (193 compilations for the
    demo's sMLPNet); now the whole batch goes through one program."""
    import jax

    workdir, flags = trained
    args, overrides = _args(images / "a.png", "--checkpoint", workdir, "--config", CONFIG, *flags)
    model, transform, names = predict.build_classifier(args, overrides)
    compiles = []

    def count(event, duration, **kwargs):
        if event == "/jax/core/compile/backend_compile_duration":
            compiles.append(duration)

    jax.monitoring.register_event_duration_secs_listener(count)
    try:
        predict.predict(model, transform, names, [str(images / "a.png"), str(images / "b.jpg")])
    finally:
        jax.monitoring.unregister_event_duration_listener(count)
    assert len(compiles) == 1, compiles


def test_checkpoint_predictions_are_the_models_softmax(trained, images):
    workdir, flags = trained
    args, overrides = _args(
        images / "a.png", images / "b.jpg", "--checkpoint", workdir, "--config", CONFIG, *flags
    )
    model, transform, names = predict.build_classifier(args, overrides)
    # The demo digits' label names, from the run record (tfds names the ClassLabel's classes).
    assert names == [str(i) for i in range(10)]
    results = predict.predict(
        model, transform, names, [str(images / "a.png"), str(images / "b.jpg")]
    )
    batch = np.stack([transform((images / n).read_bytes()) for n in ("a.png", "b.jpg")])
    assert batch.shape == (2, 16, 16, 3)
    logits = np.asarray(model(batch), np.float64)
    expected = np.exp(logits - logits.max(-1, keepdims=True))
    expected /= expected.sum(-1, keepdims=True)
    for result, row in zip(results, expected):
        order = np.argsort(-row)[:5]
        assert result.indices == order.tolist()
        np.testing.assert_allclose(result.probabilities, row[order], rtol=1e-5)
        assert result.probabilities == sorted(result.probabilities, reverse=True)
    # The trained weights, not a fresh initialisation: their logits differ.
    from smlp_jax.train.state import build_model

    fresh = build_model(load_config(CONFIG, overrides), 10, seed=0)
    fresh.eval()
    assert not np.allclose(np.asarray(fresh(batch)), logits, atol=1e-4)


def test_cli_prints_top5_with_class_names(trained, images, tmp_path):
    """...and keeps the compiled forward in the compilation cache (here the test's own)."""
    workdir, flags = trained
    cache = tmp_path / "cache"
    names_file = tmp_path / "digits.txt"
    names_file.write_text("\n".join(f"digit {i}" for i in range(10)) + "\n")
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "smlp_jax.tools.predict",
            str(images / "a.png"),
            "--checkpoint",
            str(workdir),
            "--config",
            CONFIG,
            "--class-names",
            str(names_file),
            *flags,
        ],
        env=subprocess_env(cache_dir=str(cache)),
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    assert out.returncode == 0, out.stderr
    assert [p.name for p in cache.glob("jit__lambda-*")], sorted(p.name for p in cache.iterdir())
    lines = out.stdout.strip().splitlines()
    assert lines[0] == str(images / "a.png") and len(lines) == 6
    percents = [float(line.rsplit(None, 1)[-1].rstrip("%")) for line in lines[1:]]
    assert all(line.split(". ", 1)[1].startswith("digit ") for line in lines[1:])
    assert percents == sorted(percents, reverse=True) and 0 < sum(percents) <= 100.01


def test_official_weights_use_imagenet_names_for_1000_classes(tmp_path, images, capsys):
    """The sMLPNet fixture's official-layout weights, with a 1000-class head swapped in."""
    with np.load(FIXTURE, allow_pickle=False) as f:
        config = json.loads(str(f["config"]))
        weights = {k.removeprefix("weights/"): f[k] for k in f.files if k.startswith("weights/")}
    rng = np.random.default_rng(1)
    for key in [k for k in weights if k.startswith("mlp_head.")]:
        old = weights[key]
        weights[key] = rng.normal(size=(1000, *old.shape[1:])).astype(np.float32)
    path = tmp_path / "smlp_tiny.npz"
    np.savez(path, **weights)
    hyper = [
        f"--model-arg={k}={v}" for k, v in config.items() if k not in ("num_classes", "image_size")
    ]
    args, _ = _args(
        images / "b.jpg",
        "--model",
        "smlpnet_t",
        "--pretrained",
        path,
        "--image-size",
        config["image_size"],
        *hyper,
    )
    model, transform, names = predict.build_classifier(args, [])
    (result,) = predict.predict(model, transform, names, [str(images / "b.jpg")])
    assert len(result.names) == 5
    assert result.names == [predict.imagenet_class_names()[i] for i in result.indices]
    # The same file for a 10-class head: the weights do not fit, one line says so.
    err = _cli_error(
        capsys,
        images / "b.jpg",
        "--model",
        "smlpnet_t",
        "--pretrained",
        path,
        "--num-classes",
        10,
        "--image-size",
        config["image_size"],
        *hyper,
    )
    assert "mlp_head" in err


def test_model_defaults_are_its_pretrained_cfg_and_flags_override(images):
    """--model: size, mean/std, crop_pct, filter and class count come from the model's
    pretrained configuration (ConvMixer-256/8's: the CIFAR-10 setting, not ImageNet's)."""
    from smlp_jax.data.randaugment import INTERPOLATIONS
    from smlp_jax.models import pretrained_cfg

    cfg = pretrained_cfg("convmixer_256_8")
    args, _ = _args(images / "b.jpg", "--model", "convmixer_256_8")
    _, transform, names = predict.build_classifier(args, [])
    assert (transform.size, transform.scale_size) == (32, 32) == cfg.input_size[1:]
    np.testing.assert_allclose(transform.normalize.offset, np.float32(cfg.mean) * 255)
    np.testing.assert_allclose(transform.normalize.scale, 1 / (np.float32(cfg.std) * 255))
    assert transform.resample == INTERPOLATIONS[cfg.interpolation]
    assert names == [f"class {i}" for i in range(cfg.num_classes)]  # 10, no names file
    overrides = ["--image-size", 64, "--crop-pct", 0.5, "--interpolation", "nearest"]
    overrides += ["--mean", 0, 0, 0, "--std", 1, 1, 1, "--num-classes", 3]
    args, _ = _args(images / "b.jpg", "--model", "convmixer_256_8", *overrides)
    _, transform, names = predict.build_classifier(args, [])
    assert (transform.size, transform.scale_size) == (64, 128) and len(names) == 3
    assert transform.resample == INTERPOLATIONS["nearest"]
    np.testing.assert_allclose(transform.normalize.offset, 0.0)
    np.testing.assert_allclose(transform.normalize.scale, 1 / 255)


def test_the_compilation_cache_is_the_runs(trained, images, monkeypatch, capsys):
    """The run's `config.compilation_cache_dir` (an override too) decides where the forward's
    executable goes; `--model` takes main.py's default (off in the tests: the conftest's
    empty $JAX_COMPILATION_CACHE_DIR)."""
    workdir, flags = trained
    asked = []
    enable = predict.compilation_cache.enable
    monkeypatch.setattr(
        predict.compilation_cache, "enable", lambda value: asked.append(value) or enable(None)
    )
    argv = [images / "a.png", "--checkpoint", workdir, "--config", CONFIG, *flags]
    assert predict.main([str(a) for a in argv]) == 0
    assert predict.main([str(a) for a in [*argv, "--config.compilation_cache_dir="]]) == 0
    model = ["--model", "smlpnet_t", "--num-classes", "3", "--image-size", "64"]
    assert predict.main([str(images / "a.png"), *model]) == 0
    assert asked == ["default", "", "default"]
    capsys.readouterr()


def _cli_error(capsys, *argv) -> str:
    """Runs the CLI's main() in-process (no new interpreter, no recompiles): -> stderr."""
    assert predict.main([str(a) for a in argv]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    return err


def test_unreadable_image_is_one_line(trained, images, capsys):
    workdir, flags = trained
    err = _cli_error(
        capsys,
        images / "a.png",
        images / "broken.png",
        "--checkpoint",
        workdir,
        "--config",
        CONFIG,
        *flags,
    )
    assert f"cannot read image {images / 'broken.png'}" in err
    err = _cli_error(
        capsys, images / "missing.png", "--checkpoint", workdir, "--config", CONFIG, *flags
    )
    assert "missing.png" in err


def test_model_weights_mismatch_is_one_line(trained, images, capsys, tmp_path):
    workdir, flags = trained
    # The run trained dim 32; a dim-24 model does not fit its weights.
    wider = [f for f in flags if not f.startswith("--config.model_kwargs.dim=")]
    argv = [images / "a.png", "--checkpoint", workdir, "--config", CONFIG, *wider]
    err = _cli_error(capsys, *argv, "--config.model_kwargs.dim=24")
    # The run record names the model it trained: the --config is refused before any read.
    assert "--config describes another model" in err and "model_kwargs.dim 32 -> 24" in err
    # A run made before records: the weights themselves say it, when they are read.
    old_run = tmp_path / "old_run"
    shutil.copytree(workdir, old_run)
    for record in old_run.glob("checkpoints/*/record"):
        shutil.rmtree(record)
    argv[2] = old_run
    assert predict.main([str(a) for a in [*argv, "--config.model_kwargs.dim=24"]]) == 1
    note, err = capsys.readouterr().err.strip().splitlines()  # one line each
    assert note.startswith(f"note: {old_run} has no run record; using --config"), note
    assert err.startswith("error: ") and "Traceback" not in err
    assert "Could not load init_from checkpoint" in err and "must be the one trained" in err
    # Checked from the metadata before any read: the line names an array and both shapes.
    assert "differ in shape" in err and "in the checkpoint" in err and "24" in err


def test_a_non_image_is_refused_before_a_model_is_built(images, tmp_path, capsys, monkeypatch):
    """The check comes first (a model takes seconds to build) and names no stream object."""

    def no_model(*args):
        raise AssertionError("a model was built for an input that cannot be read")

    monkeypatch.setattr(predict, "build_classifier", no_model)
    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    err = _cli_error(capsys, images / "a.png", text, "--model", "smlpnet_t")
    reason = "not an image file PIL can decode (JPEG, PNG, ...)"
    assert err == f"error: cannot read image {text}: {reason}"
    err = _cli_error(capsys, tmp_path / "missing.png", "--model", "smlpnet_t")
    assert "missing.png" in err and "BytesIO" not in err
