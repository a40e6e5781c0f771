"""`config.init_head`: a head whose shape fits is loaded ("keep") or starts from the model's
own initialisation ("fresh", vit_jax's transfer), from our checkpoints (as saved and
resampled to another grid) and from official weights; anything else is one line."""

import json

import jax
import numpy as np
import pytest

from smlp_jax.train import checkpoint, cli, init_from, trainer
from smlp_jax.train.sharding import path_name
from tests.train.tiny import REPO, tiny_config


def _bits(tree) -> dict[str, np.ndarray]:
    """'/'-joined path -> the leaf's raw bits (bit-for-bit comparison, NaN-safe)."""
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {path_name(p): np.asarray(v).view(np.uint8) for p, v in leaves}


def _same(a, b) -> bool:
    a, b = _bits(a), _bits(b)
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def _load(config, capsys):
    """(fresh state, state after init_from, the console's lines)."""
    setup = trainer.build(config)
    fresh = trainer.create_state(setup.make_state, setup.shardings)
    capsys.readouterr()
    state = init_from.load_model_weights(config, fresh, setup.abstract, setup.info.num_classes)
    return fresh, state, capsys.readouterr().out


def _saved(config, workdir) -> dict:
    setup = trainer.build(config)
    with checkpoint.Checkpointer(str(workdir), async_save=False, read_only=True) as ckpt:
        return ckpt.restore(setup.abstract)[1]


@pytest.mark.parametrize("init_head", ["keep", "fresh"])
def test_init_head_on_our_checkpoint(trained_demo_run, capsys, init_head):
    """The tiny run's checkpoint (10 classes) into the same model: "fresh" gives this run's
    own head initialisation and the checkpoint's body and BatchNorm statistics, bit for
    bit, with a line saying so; "keep" loads the checkpoint's head too."""
    source, tiny = trained_demo_run
    config = tiny_config(tiny["data_dir"], init_from=str(source), init_head=init_head, seed=3)
    fresh, state, out = _load(config, capsys)
    saved = _saved(tiny_config(tiny["data_dir"]), source)
    body = lambda params: {k: v for k, v in params.items() if k != "head"}
    assert _same(body(state["params"]), body(saved["params"]))
    assert _same(state["model_state"], saved["model_state"])
    if init_head == "fresh":
        assert _same(state["params"]["head"], fresh["params"]["head"])
        assert not _same(state["params"]["head"], saved["params"]["head"])
        assert f"init_from {source}: config.init_head='fresh'; the 'head' layer starts fresh" in out
    else:
        assert _same(state["params"]["head"], saved["params"]["head"])
        assert "starts fresh" not in out


def test_init_head_fresh_with_the_grid_resampled(trained_demo_run, capsys):
    """init_resample_to_grid (16 -> 32 px): the head is still the fresh one."""
    source, tiny = trained_demo_run
    config = tiny_config(
        tiny["data_dir"],
        init_from=str(source),
        init_head="fresh",
        init_resample_to_grid=True,
        image_size=32,
    )
    fresh, state, out = _load(config, capsys)
    saved = _saved(tiny_config(tiny["data_dir"]), source)
    assert _same(state["params"]["head"], fresh["params"]["head"])
    assert _same(state["params"]["stems"], saved["params"]["stems"])  # not grid-tied
    assert "config.init_head='fresh'; the 'head' layer starts fresh" in out


def test_init_head_fresh_on_official_weights(demo_data_dir, tmp_path, capsys):
    """The 10-class official-layout sMLPNet fixture into the 10-class demo digits: the
    official head fits, and "fresh" still replaces it with the model's own."""
    with np.load(REPO / "tests/fixtures/smlpnet_tiny.npz", allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    arch = json.loads(str(arrays.pop("config")))
    assert arch["num_classes"] == 10
    weights = {k.removeprefix("weights/"): v for k, v in arrays.items() if k.startswith("weights/")}
    np.savez(tmp_path / "official.npz", **weights)
    changes = {"model_kwargs.dim": arch["dim"], "model_kwargs.depths": tuple(arch["depths"])}
    common = dict(image_size=arch["image_size"], **changes)
    config = tiny_config(
        demo_data_dir, init_from=str(tmp_path / "official.npz"), init_head="fresh", **common
    )
    fresh, state, out = _load(config, capsys)
    assert "config.init_head='fresh'; mlp_head.0.weight, mlp_head.0.bias start fresh" in out
    assert _same(state["params"]["head"], fresh["params"]["head"])
    kept = tiny_config(demo_data_dir, init_from=str(tmp_path / "official.npz"), **common)
    _, loaded, out = _load(kept, capsys)
    assert "start fresh" not in out
    assert not _same(loaded["params"]["head"], fresh["params"]["head"])
    body = lambda params: {k: v for k, v in params.items() if k != "head"}
    assert _same(body(state["params"]), body(loaded["params"]))


def test_bad_init_head_is_one_line_before_training(demo_data_dir, tmp_path, capsys):
    assert cli.run(tiny_config(demo_data_dir, init_head="zero"), str(tmp_path)) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err, err
    assert "config.init_head='zero'; use one of keep, fresh" in err, err
    assert not (tmp_path / "checkpoints").exists()
