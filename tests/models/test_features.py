"""timm's feature interface on every family (`smlp_jax.models.features`).

Shapes: every registered model's `forward_intermediates` against its `feature_info`,
traced with `jax.eval_shape` (no compile) on the registered variant with fewer blocks
(`SMALL`: the same stages, widths, strides and grid; tracing all 33 full-size models
measured ~420 s, these 33 ~25 s). The full-size `feature_info` is checked statically
(built abstractly, not traced) on the variant of each family with the fewest blocks.
Values, on one tiny model a family (one compile each): `model(x)` equals
`forward_head(forward_features(x))` exactly, and the intermediates end in the final
features. Then `reset_classifier`, the output formats and the index errors. The file
measured 71 s on the 2-core CPU.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import smlp_jax
from smlp_jax.models import get_entry

# Fewer blocks, same structure: the stage layout, widths and strides of the variant.
SMALL = {
    "smlpnet": lambda d: dict(depths=(1,) * len(d["depths"])),
    "mixer": lambda d: dict(num_blocks=2),
    "convmixer": lambda d: dict(depth=2),
    "dynamixer": lambda d: dict(layers=(1,) * len(d["layers"])),
    "permutator": lambda d: dict(layers=(1,) * len(d["layers"])),
    "as_mlp": lambda d: dict(depths=(1,) * len(d["depths"])),
    "hire_mlp": lambda d: dict(layers=(2,) * len(d["layers"])),  # a shifted block each
    "raft_mlp": lambda d: dict(depths=(1,) * len(d["depths"])),
    "sparse_mlp": lambda d: dict(num_blocks=3, sparse_blocks=(1, 2)),
}
# The hyperparameter that sets the number of feature indices: a per-stage tuple (one
# index a stage) or a block count (isotropic families: one index a block).
DEPTH = {
    "smlpnet": "depths",
    "mixer": "num_blocks",
    "convmixer": "depth",
    "dynamixer": "layers",
    "permutator": "layers",
    "as_mlp": "depths",
    "hire_mlp": "layers",
    "raft_mlp": "depths",
    "sparse_mlp": "num_blocks",
}
TOKEN_FAMILIES = ("mixer", "sparse_mlp")  # forward_features gives (B, N, C), as timm's Mixer

# One tiny model a family, for the tests that compute.
TINY = {
    "smlpnet_t": dict(dim=8, depths=(1, 1, 1, 1)),
    "mixer_s16": dict(
        hidden_dim=32, num_blocks=2, tokens_mlp_dim=16, channels_mlp_dim=64, patch_size=8
    ),
    "convmixer_256_8": dict(dim=16, depth=2, kernel_size=3, patch_size=4),
    "dynamixer_s": dict(
        layers=(1, 1),
        transitions=(True, False),
        embed_dims=(8, 8),
        num_heads=(2, 2),
        reduced_dims=(2, 2),
        patch_size=4,
    ),
    "vip_s7": dict(
        layers=(1, 1),
        embed_dims=(16, 24),
        transitions=(True, False),
        segment_dim=(8, 4),
        patch_size=4,
    ),
    "asmlp_t": dict(embed_dim=8, depths=(1, 1, 1), patch_size=2),
    "hiremlp_t": dict(
        layers=(2, 1),
        embed_dims=(16, 24),
        mlp_ratios=(2, 2),
        pixel=(4, 3),
        step_stride=(2, 1),
        step_dilation=(2, 1),
    ),
    "raftmlp_s": dict(
        dims=(8, 12), depths=(1, 1), patch_sizes=(4, 2), embedding_kernels=((4, 8), (2,))
    ),
    "sparse_mlp_s": dict(
        patch_size=8,
        hidden_dim=16,
        num_blocks=2,
        tokens_mlp_dim=8,
        channels_mlp_dim=32,
        sparse_blocks=(1,),  # a Mixer block, then a Sparse one
    ),
}
SIDE = 32


def _family(name: str) -> str:
    return get_entry(name).family


def _image_size(name: str) -> int:
    return 32 if name == "convmixer_256_8" else 224  # the CIFAR-10 setting's own size


def _small(name: str) -> nnx.Module:
    entry = get_entry(name)
    overrides = SMALL[entry.family](entry.defaults)
    return nnx.eval_shape(
        lambda: smlp_jax.models.make_model(name, image_size=_image_size(name), **overrides)
    )


def _tiny(name: str, abstract: bool = True) -> nnx.Module:
    """The tiny model; abstract (shapes only, built in no time) unless it must compute."""
    build = functools.partial(
        smlp_jax.create_model, name, num_classes=5, image_size=SIDE, **TINY[name]
    )
    model = nnx.eval_shape(build) if abstract else build()
    model.eval()
    return model


def _trace(model: nnx.Module, fn, *args):
    """`fn(model, *args)`'s output shapes, traced on the abstract state (no compile)."""
    graphdef, state = nnx.split(model)
    return jax.eval_shape(lambda state, *a: fn(nnx.merge(graphdef, state), *a), state, *args)


def _resolve(model: nnx.Module, path: str):
    for part in path.split("."):
        model = model[int(part)] if part.isdigit() else getattr(model, part)
    return model


def _num_indices(family: str, hparams: dict) -> int:
    depth = hparams[DEPTH[family]]
    return depth if isinstance(depth, int) else len(depth)


def test_every_family_has_a_small_build():
    families = {_family(n) for n in smlp_jax.list_models()}
    assert families == set(SMALL) == set(DEPTH) == {_family(n) for n in TINY}


@pytest.mark.parametrize("name", smlp_jax.list_models())
def test_intermediates_agree_with_feature_info(name):
    model, family = _small(name), _family(name)
    info = model.feature_info
    side = _image_size(name)
    x = jax.ShapeDtypeStruct((2, side, side, 3), jnp.float32)
    final, intermediates = _trace(model, lambda m, x: m.forward_intermediates(x), x)
    small = {**get_entry(name).defaults, **SMALL[family](get_entry(name).defaults)}
    assert len(info) == len(intermediates) == _num_indices(family, small)
    for spec, y in zip(info, intermediates):
        grid = side // spec["reduction"]
        assert y.shape == (2, grid, grid, spec["num_chs"]), (spec, y.shape)
        assert isinstance(_resolve(model, spec["module"]), nnx.Module), spec
    assert len({spec["module"] for spec in info}) == len(info)
    assert [s["reduction"] for s in info] == sorted(s["reduction"] for s in info)
    grid, channels = side // info[-1]["reduction"], info[-1]["num_chs"]
    assert channels == model.num_features
    expected = (2, grid * grid, channels) if family in TOKEN_FAMILIES else (2, grid, grid, channels)
    assert final.shape == expected


def _fewest_blocks_of_each_family() -> list[str]:
    fewest = {}
    for name in smlp_jax.list_models():
        family = _family(name)
        depth = smlp_jax.models.hyperparameters(name)[DEPTH[family]]
        blocks = depth if isinstance(depth, int) else sum(depth)
        if family not in fewest or blocks < fewest[family][0]:
            fewest[family] = (blocks, name)
    return sorted(name for _, name in fewest.values())


@pytest.mark.parametrize("name", _fewest_blocks_of_each_family())
def test_full_size_feature_info(name):
    """The registered (full-size) variant's feature_info, statically: one index a stage
    or block, each naming a module the network has."""
    model, family = nnx.eval_shape(lambda: smlp_jax.create_model(name)), _family(name)
    info = model.feature_info
    assert len(info) == _num_indices(family, smlp_jax.models.hyperparameters(name))
    for spec in info:
        assert isinstance(_resolve(model, spec["module"]), nnx.Module), spec
    assert info[-1]["num_chs"] == model.num_features == model.head.kernel.shape[0]


@functools.partial(nnx.jit, static_argnums=2)
def _outputs(model, x, token_family):
    features = model.forward_features(x)
    final, intermediates = model.forward_intermediates(x, norm=True)
    last = intermediates[-1]
    if token_family:
        last = last.reshape(features.shape)
    return dict(
        logits=model(x),
        head_of_features=model.forward_head(features),
        pre_logits=model.forward_head(features, pre_logits=True),
        features=features,
        final=final,
        last_normed=last,
    )


@pytest.mark.parametrize("name", sorted(TINY))
def test_call_is_head_of_features(name):
    model = _tiny(name, abstract=False)
    x = jax.random.normal(jax.random.key(0), (2, SIDE, SIDE, 3))
    out = _outputs(model, x, _family(name) in TOKEN_FAMILIES)
    np.testing.assert_array_equal(out["logits"], out["head_of_features"])
    assert out["logits"].shape == (2, 5)
    assert out["pre_logits"].shape == (2, model.num_features)
    assert out["pre_logits"].dtype == jnp.float32
    np.testing.assert_array_equal(out["final"], out["features"])
    # norm=True: the last intermediate is the normalised final features.
    np.testing.assert_allclose(out["last_normed"], out["features"], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", sorted(TINY))
def test_reset_classifier(name):
    model = _tiny(name)
    x = jax.ShapeDtypeStruct((2, SIDE, SIDE, 3), jnp.float32)
    width = model.num_features
    model.reset_classifier(0)
    assert model.head is None and model.get_classifier() is None and model.num_classes == 0
    assert _trace(model, lambda m, x: m(x), x).shape == (2, width)
    model.reset_classifier(7, rngs=3)
    assert model.num_classes == 7 and model.head.kernel[...].shape == (width, 7)
    assert _trace(model, lambda m, x: m(x), x).shape == (2, 7)
    if hasattr(model, "model_spec"):  # the registry's record follows the new head
        assert model.model_spec.num_classes == 7
    # A fresh head is concrete even on the abstract model; the same seed, the same head.
    again = _tiny(name)
    again.reset_classifier(7, rngs=3)
    np.testing.assert_array_equal(again.head.kernel[...], model.head.kernel[...])


def test_reset_classifier_uses_the_official_head_init():
    mixer = _tiny("mixer_s16")
    mixer.reset_classifier(3, rngs=1)
    assert not np.any(mixer.head.kernel[...])  # vit_jax: a zero kernel
    vip = _tiny("vip_s7")
    vip.reset_classifier(3, rngs=1)
    # The official trunc-normal(0.02) kernel and zero bias, not PyTorch's U(+-1/sqrt(24)).
    assert np.std(vip.head.kernel[...]) < 0.04 and not np.any(vip.head.bias[...])
    with pytest.raises(ValueError, match="global mean only"):
        vip.reset_classifier(3, global_pool="max")


def test_num_classes_zero_is_a_feature_extractor():
    model = nnx.eval_shape(
        lambda: smlp_jax.create_model(
            "smlpnet_t", num_classes=0, image_size=SIDE, **TINY["smlpnet_t"]
        )
    )
    x = jax.ShapeDtypeStruct((2, SIDE, SIDE, 3), jnp.float32)
    assert model.head is None
    assert _trace(model, lambda m, x: m(x), x).shape == (2, model.num_features)


def test_output_formats_and_index_selection():
    x = jax.ShapeDtypeStruct((2, SIDE, SIDE, 3), jnp.float32)
    staged = _tiny("smlpnet_t")  # strides 4, 8, 16, 32; channels 8, 16, 32, 64

    def shapes(model, **kw):
        out = _trace(model, lambda m, x: m.forward_intermediates(x, **kw), x)
        return [y.shape for y in (out if kw.get("intermediates_only") else out[1])]

    assert shapes(staged, indices=2, output_fmt="NCHW") == [(2, 32, 2, 2), (2, 64, 1, 1)]
    assert shapes(staged, indices=[-1, 0], output_fmt="NLC") == [(2, 64, 8), (2, 1, 64)]
    assert shapes(staged, indices=[1], intermediates_only=True) == [(2, 4, 4, 16)]
    final, _ = _trace(staged, lambda m, x: m.forward_intermediates(x, [1], stop_early=True), x)
    assert final.shape == (2, 4, 4, 16)  # stopped after stage 1
    tokens = _tiny("mixer_s16")  # 2 blocks, a 4x4 grid of 32 channels
    assert shapes(tokens) == [(2, 4, 4, 32)] * 2
    assert shapes(tokens, indices=1, output_fmt="NLC") == [(2, 16, 32)]
    assert shapes(tokens, indices=[0], output_fmt="NCHW") == [(2, 32, 4, 4)]


@pytest.mark.parametrize(
    ("indices", "message"),
    [
        ([4], r"MlpMixer has 2 feature indices: index 4 is out of range \(0 to 1, or -2 to -1\)"),
        ([0, -3], r"index -3 is out of range \(0 to 1, or -2 to -1\)"),
        (3, r"MlpMixer has 2 feature indices: indices=3 \(the last n\) must be 1 to 2\."),
        (0, r"must be 1 to 2"),
    ],
)
def test_bad_indices_fail_in_one_line(indices, message):
    model = _tiny("mixer_s16")
    with pytest.raises(ValueError, match=message) as error:
        model.forward_intermediates(jnp.zeros((1, SIDE, SIDE, 3)), indices=indices)
    assert "\n" not in str(error.value)


def test_bad_output_format_fails():
    with pytest.raises(ValueError, match="output_fmt must be one of"):
        _tiny("smlpnet_t").forward_intermediates(jnp.zeros((1, SIDE, SIDE, 3)), output_fmt="HWC")


@pytest.mark.parametrize("name", sorted(TINY))
def test_non_float_images_are_refused_in_one_line_at_trace_time(name):
    """A uint8 batch of raw 0-255 pixels (or ints) is refused on its dtype alone, while
    tracing (shapes only here: no value is looked at), with how to normalise; float
    images of any width pass."""
    model = _tiny(name)
    calls = {
        "call": lambda m, x: m(x),
        "forward_features": lambda m, x: m.forward_features(x),
        "forward_intermediates": lambda m, x: m.forward_intermediates(x),
    }
    for dtype in (jnp.uint8, jnp.int32):
        images = jax.ShapeDtypeStruct((2, SIDE, SIDE, 3), dtype)
        for call in calls.values():
            with pytest.raises(TypeError) as error:
                _trace(model, call, images)
            message = str(error.value)
            assert "\n" not in message
            assert f"not {jnp.dtype(dtype)} pixels" in message
            assert "(images.astype(np.float32) / 255 - mean) / std" in message
    for dtype in (jnp.float32, jnp.bfloat16):
        images = jax.ShapeDtypeStruct((2, SIDE, SIDE, 3), dtype)
        assert _trace(model, calls["call"], images).shape == (2, 5)
