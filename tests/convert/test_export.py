"""Weights out (`smlp_jax.convert.export`): every family's weights in its official layout
round-trip through our import bit for bit; the files written read back; what the official
fixtures hold comes back under the same keys; bad input is one line."""

import json
import subprocess
import sys

import jax
import numpy as np
import pytest
from flax import nnx

import smlp_jax
from benchmarks.throughput import TINY, TINY_IMAGE_SIZE
from smlp_jax.convert import WeightsMismatchError, load_pretrained, read_weights
from smlp_jax.convert.assign import assign_weights
from smlp_jax.convert.export import (
    export_state_dict,
    save_weights,
    state_arrays,
    variable_rules,
)
from smlp_jax.models.registry import get_entry
from smlp_jax.tools import export as export_tool
from smlp_jax.tools.trained import load_config, trained_model
from smlp_jax.train import checkpoint, trainer
from tests.convert.export_cases import random_model
from tests.train.tiny import REPO, subprocess_env, tiny_config, tiny_flags

FAMILIES = sorted({get_entry(n).family for n in smlp_jax.list_models()})


def tiny_model(family: str, seed: int) -> nnx.Module:
    """The family's first model at benchmark-tiny size, every array random (BatchNorm
    statistics and norm affines too, so a mis-mapped statistic shows)."""
    name = smlp_jax.list_models(module=family)[0]
    return random_model(name, seed, num_classes=5, image_size=TINY_IMAGE_SIZE, **TINY[family])


def assert_same_state(a: nnx.Module, b: nnx.Module) -> None:
    left, right = state_arrays(a), state_arrays(b)
    assert left.keys() == right.keys()
    for key in left:
        assert np.array_equal(left[key], right[key]), key


@pytest.mark.parametrize("family", FAMILIES)
def test_round_trip_is_bit_exact(family):
    source, fresh = tiny_model(family, 1), tiny_model(family, 2)
    if family == "sparse_mlp":  # no official layout: refused with a line, ours works
        with pytest.raises(WeightsMismatchError, match="no official weights"):
            export_state_dict(source)
        state = export_state_dict(source, "smlp_jax")
        assign_weights(family, variable_rules(fresh), state)
    else:
        load_pretrained(fresh, export_state_dict(source))
    assert_same_state(source, fresh)


def test_mixer_vit_jax_layout_round_trip():
    source, fresh = tiny_model("mixer", 1), tiny_model("mixer", 2)
    state = export_state_dict(source, "vit_jax")
    assert all("/" in key for key in state)  # the Flax tree's paths
    load_pretrained(fresh, state)
    assert_same_state(source, fresh)


@pytest.mark.parametrize("suffix", [".safetensors", ".npz"])
def test_files_read_back(tmp_path, suffix):
    model = tiny_model("smlpnet", 1)
    path = tmp_path / f"weights{suffix}"
    keys = save_weights(model, path)
    back = read_weights(str(path))
    assert sorted(back) == keys
    expected = export_state_dict(model)
    assert all(np.array_equal(back[k], expected[k]) for k in keys)
    # PyTorch's strict load asks for every BatchNorm's counter.
    assert any(k.endswith("num_batches_tracked") for k in keys)


def test_official_fixture_comes_back_under_its_keys():
    """SPACH's own state dict (the parity fixture): imported, then exported, it is the same
    keys with the same values."""
    with np.load(REPO / "tests/fixtures/smlpnet_tiny.npz", allow_pickle=False) as f:
        config = json.loads(str(f["config"]))
        official = {k.removeprefix("weights/"): f[k] for k in f.files if k.startswith("weights/")}
    model = smlp_jax.create_model(
        "smlpnet_t",
        num_classes=config["num_classes"],
        image_size=config["image_size"],
        dim=config["dim"],
        depths=tuple(config["depths"]),
        pretrained=official,
    )
    exported = export_state_dict(model)
    assert exported.keys() == official.keys()
    for key, value in official.items():
        if key.endswith("num_batches_tracked"):
            continue  # a counter we do not keep: exported as 0
        assert np.array_equal(exported[key], value), key


def test_weights_of_another_family_are_one_clear_error(tmp_path):
    path = tmp_path / "convmixer.safetensors"
    save_weights(tiny_model("convmixer", 1), path)
    with pytest.raises(WeightsMismatchError) as err:
        load_pretrained(tiny_model("smlpnet", 1), str(path))
    assert "missing key(s)" in str(err.value) and "unexpected key(s)" in str(err.value)


def test_cli_exports_a_trained_checkpoint(demo_data_dir, tmp_path, capsys):
    """`python -m smlp_jax.tools.export --checkpoint W --config C` writes official files the
    import reads back to the checkpoint's logits; bad input is one line."""
    # A workdir as the trainer leaves it, without training: the built state, saved.
    workdir = tmp_path / "run"
    setup = trainer.build(tiny_config(demo_data_dir))
    with checkpoint.Checkpointer(workdir, async_save=False) as ckpt:
        ckpt.save(2, trainer.create_state(setup.make_state, setup.shardings))
    config = str(REPO / "configs/smlpnet.py") + ":demo"
    flags = tiny_flags(demo_data_dir)
    out = tmp_path / "smlpnet.safetensors"
    command = [sys.executable, "-m", "smlp_jax.tools.export", "--checkpoint"]
    result = subprocess.run(
        [*command, str(workdir), "--config", config, *flags, "--out", str(out)],
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith(f"wrote {out}: ")

    trained = trained_model(load_config(config, flags), str(workdir), num_classes=10)
    spec = trained.model_spec
    reloaded = smlp_jax.create_model(
        spec.name,
        num_classes=spec.num_classes,
        image_size=spec.image_size,
        pretrained=str(out),
        **spec.kwargs(),
    )
    assert_same_state(trained, reloaded)

    # To the Hub layout: config.json and the card carry the run's preprocessing (the demo's
    # "simple" preset: mean 0.5, std 0.5, crop 1.0), not sMLPNet's official ImageNet one.
    hub = tmp_path / "hub"
    assert export_tool.main(["--checkpoint", str(workdir), "--config", config, *flags,
                             "--to", "hub", "--out", str(hub)]) == 0  # fmt: skip
    (workdir / "metrics.jsonl").write_text('{"step": 2, "eval/top1": 0.875}\n')
    assert export_tool.main(["--checkpoint", str(workdir), "--config", config, *flags,
                             "--to", "hub", "--out", str(hub)]) == 0  # fmt: skip
    run = load_config(config, flags).input
    pre = json.loads((hub / "config.json").read_text())["pretrained_cfg"]
    assert (pre["mean"], pre["std"], pre["crop_pct"]) == (list(run.mean), list(run.std), 1.0)
    assert run.mean != smlp_jax.models.pretrained_cfg("smlpnet_t").mean
    card = (hub / "README.md").read_text()
    assert f"mean {list(run.mean)} and std {list(run.std)}" in card and "1.0 centre crop" in card
    assert "Last eval: top-1 87.50% (demo)" in card and "Not recorded" not in card
    capsys.readouterr()

    # Bad input, in-process (the same main): one line on stderr, status 1.
    nowhere = str(tmp_path / "nowhere")
    assert export_tool.main(["--checkpoint", nowhere, "--config", config, "--out", "x"]) == 1
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: ") and "no such workdir or step" in line, line


def test_state_arrays_are_the_weights_and_statistics():
    model = tiny_model("sparse_mlp", 1)
    keys = state_arrays(model).keys()
    assert len(keys) == len(jax.tree.leaves(nnx.state(model, nnx.Param, nnx.BatchStat)))
    assert not any("rngs" in k or "aux_loss" in k for k in keys)
