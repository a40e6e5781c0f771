"""Each registered model's pretrained configuration: present for every model, equal to the
official repositories' eval settings, naming layers that exist (ours and the official
weights'), and the one source of the family configs' input defaults."""

import importlib
import sys

import pytest
from flax import nnx

import smlp_jax
from smlp_jax.data import config as data_config
from smlp_jax.data.randaugment import INTERPOLATIONS
from smlp_jax.data.transforms import EvalTransform, eval_resample
from smlp_jax.models import PretrainedCfg, UnknownModelError, pretrained_cfg, registry
from tests.train.tiny import official_config

IMAGENET = dict(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))  # timm constants

# The official values, copied from the file each comment names (eval transform or the
# timm `_cfg` its validate/train script resolves).
OFFICIAL = {
    # microsoft/SPACH datasets.py: Resize(int(256 / 224 * 224), interpolation=3 (bicubic)),
    # CenterCrop(224), Normalize(IMAGENET_DEFAULT_MEAN/STD); README: smlp_b.pth, no T file.
    "smlpnet_b": dict(
        input_size=(3, 224, 224),
        crop_pct=0.875,
        interpolation="bicubic",
        num_classes=1000,
        official_classifier="mlp_head.0",
        url="https://github.com/microsoft/SPACH/releases/download/v1.0/smlp_b.pth",
        license="MIT",
        **IMAGENET,
    ),
    "smlpnet_t": dict(url=""),
    # timm models/mlp_mixer.py `_cfg`: crop_pct 0.875, bicubic, mean = std = 0.5,
    # classifier 'head'; vit_jax.ipynb lists gs://mixer_models/imagenet1k/Mixer-B_16.npz.
    "mixer_b16": dict(
        crop_pct=0.875,
        interpolation="bicubic",
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
        url="https://storage.googleapis.com/mixer_models/imagenet1k/Mixer-B_16.npz",
        license="Apache-2.0",
    ),
    # timm models/convmixer.py `_cfg` (= locuslab/convmixer's timm fork): crop_pct .96,
    # bicubic, IMAGENET_DEFAULT_MEAN/STD, classifier 'head', first_conv 'stem.0'.
    "convmixer_768_32": dict(
        crop_pct=0.96,
        interpolation="bicubic",
        official_first_conv="stem.0",
        license="MIT",
        **IMAGENET,
    ),
    # locuslab/convmixer-cifar10 train.py: cifar10_mean / cifar10_std, test_transform
    # ToTensor + Normalize (32 px, no resize), n_classes=10.
    "convmixer_256_8": dict(
        input_size=(3, 32, 32),
        mean=(0.4914, 0.4822, 0.4465),
        std=(0.2471, 0.2435, 0.2616),
        crop_pct=1.0,
        num_classes=10,
    ),
    # ziyuwwang/DynaMixer models/configs/conf_dynamixer.py default_cfgs: S .9, L .875.
    "dynamixer_s": dict(crop_pct=0.9, interpolation="bicubic", url="", **IMAGENET),
    "dynamixer_l": dict(crop_pct=0.875),
    # houqb/VisionPermutator models/vip.py default_cfgs (last change, 5888c42): ViP_S .9,
    # ViP_M .9, ViP_L .875; `_cfg` bicubic, IMAGENET_DEFAULT_MEAN/STD, classifier 'head'.
    "vip_s7": dict(crop_pct=0.9, interpolation="bicubic", file_name="vip_s7.pth", **IMAGENET),
    "vip_m7": dict(crop_pct=0.9),
    "vip_l7": dict(crop_pct=0.875),
    # svip-lab/AS-MLP data/build.py (TEST.CROP True, DATA.INTERPOLATION 'bicubic'):
    # Resize(int(256 / 224 * 224)) + CenterCrop(224); train_scripts/test.sh file name.
    "asmlp_t": dict(
        crop_pct=0.875,
        interpolation="bicubic",
        file_name="asmlp_tiny_patch4_shift5_224.pth",
        **IMAGENET,
    ),
    # ggjy/Hire-Wave-MLP.pytorch datasets.py: Resize(int(256 / 224 * 224), 3) +
    # CenterCrop(224) (the model's `_cfg` 0.9 is never read); README's release file.
    "hiremlp_t": dict(
        crop_pct=0.875,
        interpolation="bicubic",
        url="https://github.com/ggjy/Hire-Wave-MLP.pytorch/releases/download/log/hire_mlp_tiny.pth",
        **IMAGENET,
    ),
    "hiremlp_l": dict(url=""),
    # okojoalg/raft-mlp libs/datasets.py ImageNetGetter.test_transform: Resize(256) (torch-
    # vision's default bilinear) + CenterCrop(224); the head is `classifier` (libs/models.py).
    "raftmlp_s": dict(
        crop_pct=0.875,
        interpolation="bilinear",
        official_classifier="classifier",
        license="Apache-2.0",
        **IMAGENET,
    ),
}

# The eval resize of the official code at 224: int(256 / 224 * 224) for the DeiT / Swin /
# torchvision transforms, floor(224 / crop_pct) for timm's; ours is floor(S / crop_pct).
OFFICIAL_RESIZE = {"smlpnet_t": 256, "asmlp_t": 256, "hiremlp_t": 256, "raftmlp_s": 256}
OFFICIAL_RESIZE.update({"convmixer_1536_20": 233, "vip_s7": 248, "vip_l7": 256})


def test_every_registered_model_has_a_pretrained_cfg():
    names = smlp_jax.list_models()
    # Each family file's PRETRAINED_CFGS has a row for each of its variants, no stale rows.
    modules = {sys.modules[registry.get_entry(n).build.__module__] for n in names}
    assert {row for m in modules for row in m.PRETRAINED_CFGS} == set(names)
    for name in names:
        cfg = pretrained_cfg(name)
        assert isinstance(cfg, PretrainedCfg) and cfg is registry.get_entry(name).pretrained_cfg
        assert cfg.source, name  # names the official file its values come from
        assert cfg.url == "" or cfg.url.startswith("https://"), name
        assert cfg.image_size == cfg.input_size[-1] == cfg.input_size[-2]
    with pytest.raises(UnknownModelError, match="smlpnet_t"):
        pretrained_cfg("smlpnet_tt")


@pytest.mark.parametrize("name", sorted(OFFICIAL))
def test_values_are_the_official_ones(name):
    cfg = pretrained_cfg(name)
    for field, want in OFFICIAL[name].items():
        assert getattr(cfg, field) == want, f"{name}.{field}"


@pytest.mark.parametrize("name", sorted(OFFICIAL_RESIZE))
def test_crop_pct_gives_the_official_resize(name):
    cfg = pretrained_cfg(name)
    transform = EvalTransform(_input(cfg), cfg.image_size)
    assert transform.scale_size == OFFICIAL_RESIZE[name]
    assert transform.resample == INTERPOLATIONS[cfg.interpolation]


def _input(cfg: PretrainedCfg) -> dict:
    input_cfg = dict(data_config.default_input_config("imagenet"))
    input_cfg.update(
        mean=cfg.mean, std=cfg.std, crop_pct=cfg.crop_pct, eval_interpolation=cfg.interpolation
    )
    return input_cfg


def test_timm_constants_match_the_data_side():
    from smlp_jax.models import pretrained_cfgs

    assert pretrained_cfgs.IMAGENET_DEFAULT_MEAN == data_config.IMAGENET_MEAN
    assert pretrained_cfgs.IMAGENET_DEFAULT_STD == data_config.IMAGENET_STD


def _resolve(module, path: str):
    for part in path.split("."):
        module = module[int(part)] if part.isdigit() else getattr(module, part)
    return module


def _smallest_per_family() -> list[str]:
    by_family = {}
    for name in smlp_jax.list_models():
        family = registry.get_entry(name).family
        by_family.setdefault(family, []).append(name)
    small = {"smlpnet": "smlpnet_t", "mixer": "mixer_s32", "convmixer": "convmixer_256_8"}
    small.update(dynamixer="dynamixer_s", as_mlp="asmlp_t", permutator="vip_s7")
    small.update(hire_mlp="hiremlp_t", raft_mlp="raftmlp_s", sparse_mlp="sparse_mlp_s")
    assert set(small) == set(by_family), "a new family: add its smallest variant here"
    return sorted(small.values())


@pytest.mark.parametrize("name", _smallest_per_family())
def test_layer_names_exist_here_and_in_the_official_weights(name):
    """`classifier`/`first_conv` are our attributes; the official prefixes are keys of the
    converter's rules for the same variables (the layout of the weights at `url`)."""
    cfg = pretrained_cfg(name)
    entry = registry.get_entry(name)
    model = nnx.eval_shape(lambda: smlp_jax.models.make_model(name, **_tiny(entry.family)))
    head, stem = _resolve(model, cfg.classifier), _resolve(model, cfg.first_conv)
    assert head.kernel.shape[-1] == 1000 and stem.kernel is not None
    if not cfg.official_classifier:  # Sparse-MLP: no official code
        assert not cfg.official_first_conv and not cfg.url
        return
    converter = importlib.import_module(f"smlp_jax.convert.{entry.family}")
    # Mixer's `url` is the vit_jax .npz (its other layout, timm's, is official_rules).
    layout = converter.vit_jax_rules if entry.family == "mixer" else converter.official_rules
    rules = layout(model)
    for prefix, ours in ((cfg.official_classifier, head), (cfg.official_first_conv, stem)):
        keys = [f"{prefix}{sep}{leaf}" for sep in "./" for leaf in ("weight", "kernel")]
        (key,) = [k for k in keys if k in rules]
        assert rules[key][0] is ours.kernel, key


def _tiny(family: str) -> dict:
    """Fewer blocks: the layer names do not depend on depth, and eval_shape is faster."""
    return {
        "smlpnet": dict(depths=(1, 1, 1, 1)),
        "dynamixer": dict(layers=(1, 1, 1, 1)),
        "as_mlp": dict(depths=(1, 1, 1, 1)),
        "permutator": dict(layers=(1, 1, 1, 1)),
        "hire_mlp": dict(layers=(1, 1, 1, 1)),
        "raft_mlp": dict(depths=(1, 1, 1, 1)),
    }.get(family, {})


def test_register_model_attaches_a_given_cfg_or_refuses_to_guess(monkeypatch):
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    entry = registry.get_entry("convmixer_256_8")
    own = PretrainedCfg(input_size=(3, 64, 64), crop_pct=1.0, source="a test")
    registry.register_model("my_net", family="convmixer", build=entry.build, pretrained_cfg=own)
    registry.register_model("my_other_net", family="convmixer", build=entry.build)
    assert smlp_jax.models.pretrained_cfg("my_net") is own
    with pytest.raises(UnknownModelError, match="without a pretrained configuration"):
        pretrained_cfg("my_other_net")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (dict(interpolation="area"), "interpolation 'area'"),
        (dict(crop_pct=0.0), "crop_pct"),
        (dict(mean=(0.5, 0.5)), "3 values"),
        (dict(input_size=(3, 224, 192)), "square"),
    ],
)
def test_bad_values_fail_at_construction(changes, message):
    with pytest.raises(ValueError, match=message):
        PretrainedCfg(**changes)


CONFIG_VARIANTS = [
    ("smlpnet", ("t", "s", "b")),
    ("mixer", ("s32", "s16", "b32", "b16", "l32", "l16")),
    ("convmixer", ("1536_20", "768_32", "1024_20", "256_8")),
    ("dynamixer", ("s", "m", "l")),
    ("permutator", ("s14", "s7", "m7", "l7")),
    ("as_mlp", ("t", "s", "b")),
    ("hire_mlp", ("t", "s", "b", "l")),
    ("raft_mlp", ("s", "m", "l")),
    ("sparse_mlp", ("s", "b", "l")),
]


@pytest.mark.parametrize(("family", "variants"), CONFIG_VARIANTS)
def test_family_configs_take_their_input_from_the_cfg(family, variants):
    for variant in variants:
        config = official_config(family, variant)
        # ConvMixer-256/8's own cfg is locuslab's CIFAR-10 input; its ImageNet recipe here
        # takes ImageNet's input from the other sizes.
        cfg = pretrained_cfg("convmixer_768_32" if variant == "256_8" else config.model)
        assert config.image_size == cfg.image_size
        assert tuple(config.input.mean) == cfg.mean and tuple(config.input.std) == cfg.std
        assert config.input.crop_pct == cfg.crop_pct
        want = cfg.interpolation
        if family == "mixer":  # big_vision's resize_small recipe, not timm's bicubic eval
            want = "bilinear"
        assert eval_resample(config.input) == INTERPOLATIONS[want], (family, variant)
