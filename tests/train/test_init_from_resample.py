"""`config.init_from` = one of our own checkpoints at another image size, with
`config.init_resample_to_grid`: the grid-tied arrays are resampled by our variable paths
(the converter's `GRID_RESAMPLERS`), every other array is the checkpoint's bit for bit, and
no official layout is involved, so Sparse-MLP (which has none) resamples too. Tiny models
saved with the project's Checkpointer; the train state is built as the trainer builds it
(`train.state.build_model` + `split` from the family's demo config), without data."""

import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx

from smlp_jax.convert import export
from smlp_jax.convert import smlpnet as smlpnet_convert
from smlp_jax.convert.assign import Layout
from smlp_jax.convert.resample import axial_bias, axial_kernel, interpolate_tokens
from smlp_jax.train import checkpoint, init_from
from smlp_jax.train.state import build_model, split
from tests.train.tiny import demo_config

NUM_CLASSES = 4
SMALL, LARGE = 32, 64  # the saved run's image size and the fine-tuning one

FAMILIES = {
    "smlpnet": {"model_kwargs.dim": 8, "model_kwargs.depths": (1, 1, 1, 1)},
    "sparse_mlp": {
        "model_kwargs.hidden_dim": 16,
        "model_kwargs.num_blocks": 2,
        "model_kwargs.sparse_blocks": (1,),
        "model_kwargs.tokens_mlp_dim": 8,
        "model_kwargs.channels_mlp_dim": 32,
        "model_kwargs.patch_size": 8,
    },
}

# What each grid-tied array must become, written out here independently of the
# converters' tables: path suffix -> the resampler called on the saved array.
_tokens = functools.partial
EXPECTED = {
    "smlpnet": {
        "token_mixing/smlp/mix_h/kernel": axial_kernel,
        "token_mixing/smlp/mix_w/kernel": axial_kernel,
        "token_mixing/smlp/mix_h/bias": axial_bias,
        "token_mixing/smlp/mix_w/bias": axial_bias,
    },
    "sparse_mlp": {
        "token_mixing/fc1/kernel": _tokens(interpolate_tokens, grid=(0,), summed=(0,)),
        "token_mixing/fc2/kernel": _tokens(interpolate_tokens, grid=(1,)),
        "token_mixing/fc2/bias": _tokens(interpolate_tokens, grid=(0,)),
        "represent_in/patches/kernel": _tokens(
            interpolate_tokens, grid=(0,), line=(1,), summed=(0,)
        ),
        "represent_in/patches/bias": _tokens(interpolate_tokens, line=(0,)),
        "token_moe/router/kernel": _tokens(interpolate_tokens, line=(0,), summed=(0,)),
        "token_moe/experts/fc1_kernel": _tokens(interpolate_tokens, line=(1,), summed=(1,)),
        "token_moe/experts/fc2_kernel": _tokens(interpolate_tokens, line=(2,)),
        "token_moe/experts/fc2_bias": _tokens(interpolate_tokens, line=(1,)),
        "represent_out_tokens/kernel": _tokens(
            interpolate_tokens, line=(0,), grid=(1,), summed=(0,)
        ),
        "represent_out_tokens/bias": _tokens(interpolate_tokens, grid=(0,)),
    },
}


def _config(family, image_size, **changes):
    return demo_config(family, {**FAMILIES[family], "image_size": image_size, **changes})


def _train_state(config, num_classes, seed):
    """params / model_state / rngs as the trainer holds them, and their abstract twin."""
    _, params, rngs, model_state = split(build_model(config, num_classes, seed))
    state = {
        "step": jnp.zeros((), jnp.int32),
        "params": params,
        "model_state": model_state,
        "rngs": rngs,
    }
    abstract = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), state
    )
    return state, abstract


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def saved_run(request, tmp_path_factory):
    """(family, workdir, saved train state): a tiny model of the family at SMALL px,
    trained-looking (BatchNorm statistics moved off their defaults), one checkpoint."""
    family = request.param
    state, _ = _train_state(_config(family, SMALL), NUM_CLASSES, seed=1)
    state["model_state"] = jax.tree.map(
        lambda x: x + 0.25 if jnp.issubdtype(x.dtype, jnp.floating) else x, state["model_state"]
    )
    workdir = tmp_path_factory.mktemp(f"{family}_run")
    with checkpoint.Checkpointer(workdir, async_save=False) as ckpt:
        ckpt.save(3, state)
    return family, workdir, state


def _flat(tree):
    return {k: np.asarray(v) for k, v in export.flatten_arrays(tree).items()}


def _init_at(family, workdir, image_size, num_classes=NUM_CLASSES, **changes):
    config = _config(
        family,
        image_size,
        init_from=str(workdir),
        init_resample_to_grid=True,
        **changes,
    )
    fresh, abstract = _train_state(config, num_classes, seed=0)
    return config, fresh, init_from.load_model_weights(config, fresh, abstract, num_classes)


def test_fine_tuning_our_checkpoint_at_another_image_size(saved_run):
    family, workdir, saved = saved_run
    config, _, state = _init_at(family, workdir, LARGE)
    expected = EXPECTED[family]
    resampled = set()
    for part in ("params", "model_state"):
        old, new = _flat(saved[part]), _flat(state[part])
        assert old.keys() == new.keys()
        for name, array in new.items():
            rule = next((fn for suffix, fn in expected.items() if name.endswith(suffix)), None)
            if rule is None:
                assert array.dtype == old[name].dtype and np.array_equal(array, old[name]), name
                continue
            assert array.shape != old[name].shape, name  # every grid-tied array grew
            np.testing.assert_array_equal(array, rule(old[name], array.shape), err_msg=name)
            resampled.add(name)
    # Each declared kind of grid-tied array was met (sMLPNet: 4 stages x 4; Sparse-MLP:
    # the dense block's 3 and the Sparse block's 8).
    assert len(resampled) == {"smlpnet": 16, "sparse_mlp": 11}[family], sorted(resampled)

    # The loaded state is a working model at the new size.
    model = build_model(config, NUM_CLASSES, 0)
    graphdef, _, rngs, _ = split(model)
    model = nnx.merge(graphdef, state["params"], rngs, state["model_state"])
    model.eval()
    logits = model(jnp.ones((2, LARGE, LARGE, 3)))
    assert logits.shape == (2, NUM_CLASSES) and bool(jnp.all(jnp.isfinite(logits)))


@pytest.fixture
def no_official_layout(monkeypatch):
    """Every road into or out of an official layout raises."""

    def refuse(*args, **kwargs):
        raise AssertionError("the official layout was used")

    monkeypatch.setattr(export, "official_arrays", refuse)
    monkeypatch.setattr(smlpnet_convert, "official_rules", refuse)
    monkeypatch.setattr(Layout, "to_official", refuse)
    monkeypatch.setattr(Layout, "to_ours", refuse)
    monkeypatch.setattr(init_from, "load_pretrained", refuse)
    monkeypatch.setattr(init_from, "rules_for", refuse)


def test_no_official_layout_on_the_way(saved_run, no_official_layout):
    family, workdir, saved = saved_run
    _, _, state = _init_at(family, workdir, LARGE)
    assert state["params"]["head"]["kernel"].shape == saved["params"]["head"]["kernel"].shape


def test_another_class_count_starts_a_fresh_head(saved_run, capsys):
    family, workdir, saved = saved_run
    _, fresh, state = _init_at(family, workdir, LARGE, num_classes=3)
    assert "class count differs; the 'head' layer starts fresh" in capsys.readouterr().out
    for name, array in _flat(state["params"]["head"]).items():
        np.testing.assert_array_equal(array, np.asarray(_flat(fresh["params"]["head"])[name]))
    old, new = _flat(saved["params"]["norm"]), _flat(state["params"]["norm"])
    assert all(np.array_equal(old[k], new[k]) for k in old)


def test_same_image_size_loads_the_checkpoint_unchanged(saved_run):
    family, workdir, saved = saved_run
    _, _, state = _init_at(family, workdir, SMALL)
    for part in ("params", "model_state"):
        old, new = _flat(saved[part]), _flat(state[part])
        assert old.keys() == new.keys() and all(np.array_equal(old[k], new[k]) for k in old)


def test_an_array_not_tied_to_the_grid_is_named_in_one_line(saved_run):
    family, workdir, _ = saved_run
    if family == "smlpnet":  # a wider model: channel weights, not grid-tied ones, differ
        changes, match = (
            {"model_kwargs.dim": 16},
            r"differ in shape and are not resampled to the grid",
        )
    else:  # a wider token MLP: the grid-tied array's other axis cannot be resampled
        changes = {"model_kwargs.tokens_mlp_dim": 16}
        match = (
            r"cannot resample 'blocks/0/token_mixing/fc1/kernel' from \(16, 8\) to \(64, 16\): "
            r"axis 1 is not tied to the grid"
        )
    with pytest.raises(checkpoint.CheckpointError, match=match) as raised:
        _init_at(family, workdir, LARGE, **changes)
    assert "\n" not in str(raised.value)


@pytest.mark.parametrize("model", ["vip_s7", "raftmlp_s"])
def test_a_family_tied_to_the_grid_without_a_resampler_is_refused_in_one_line(model, tmp_path):
    config = ml_collections.ConfigDict(
        {"model": model, "init_from": str(tmp_path), "init_resample_to_grid": True}
    )
    state = {"params": {}, "model_state": {}}
    with pytest.raises(checkpoint.CheckpointError, match="cannot resample to another grid") as e:
        init_from.load_model_weights(config, state, state, NUM_CLASSES)
    assert str(e.value).startswith(f"config.init_resample_to_grid: {model}: ")
    assert "\n" not in str(e.value)
