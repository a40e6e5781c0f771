"""The official constructors' argument names (timm's Mixer, RaftMLP's `layers`,
DynaMixer's `mlp_ratios`, Hire-MLP's padding modes) build the same network as ours, or
are refused with a line naming ours. Abstract models only (`nnx.eval_shape`)."""

import pytest
from flax import nnx

import smlp_jax


def spec(name, **kw):
    return nnx.eval_shape(lambda: smlp_jax.create_model(name, **kw)).model_spec


def test_timm_mixer_names():
    timm = spec("mixer_b16", embed_dim=32, mlp_ratio=(0.75, 2.0), num_blocks=2, image_size=32)
    ours = spec(
        "mixer_b16",
        hidden_dim=32,
        tokens_mlp_dim=24,
        channels_mlp_dim=64,
        num_blocks=2,
        image_size=32,
    )
    assert timm == ours


def test_raft_mlp_official_layers_list():
    levels = [(1, 8, 4), (1, 16, 2), (2, 16, 2), (1, 32, 2)]
    layers = [dict(depth=d, dim=c, patch_size=p, raft_size=2) for d, c, p in levels]
    official = spec("raftmlp_s", layers=layers, image_size=64)
    ours = spec(
        "raftmlp_s",
        depths=(1, 1, 2, 1),
        dims=(8, 16, 16, 32),
        patch_sizes=(4, 2, 2, 2),
        raft_size=2,
        image_size=64,
    )
    assert official == ours
    layers[1]["raft_size"] = 4
    with pytest.raises(TypeError, match=r"raft sizes \[2, 4\]: here one raft_size"):
        spec("raftmlp_s", layers=layers)


def test_dynamixer_and_hire_mlp():
    assert spec("dynamixer_s", mlp_ratios=[3, 3, 3, 3]) == spec("dynamixer_s", mlp_ratio=3.0)
    with pytest.raises(TypeError, match="one mlp_ratio for every stage"):
        spec("dynamixer_s", mlp_ratios=[3, 4, 3, 3])
    assert spec("hiremlp_t", step_pad_mode="c", pixel_pad_mode="c") == spec("hiremlp_t")
    with pytest.raises(TypeError, match="only 'c' .* is built here"):
        spec("hiremlp_t", step_pad_mode="0")


def test_img_size_and_in_channels():
    with pytest.raises(TypeError, match="img_size: pass create_model's image_size="):
        spec("smlpnet_t", img_size=64)
    assert spec("convmixer_256_8", in_channels=1) == spec("convmixer_256_8", in_chans=1)
