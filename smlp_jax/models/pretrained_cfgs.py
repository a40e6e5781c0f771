"""Each registered model's pretrained configuration (timm's `pretrained_cfg`): the input its
official weights expect, how the official code evaluates them, and where they come from.

The eval transform these values describe: resize the short side to floor(S / crop_pct)
with `interpolation`, centre-crop S (S = input_size[-1]), scale to [0, 1], subtract `mean`,
divide by `std`. Every value is read from the official repository's eval code, named in
`source` (its transform, or the timm `_cfg` that its validate/train script resolves);
`smlp_jax.models.pretrained_cfg(name)` looks a model's up, and predict and the configs take
their defaults from it.

`classifier` / `first_conv` are our attribute paths on the built module (every family's
head is `head`); `official_classifier` / `official_first_conv` are the same layers' key
prefixes in the layout of the file at `url` (what `smlp_jax.convert` reads).
"""

from __future__ import annotations

import dataclasses
import re

# timm.data.constants; `smlp_jax.data.config.IMAGENET_MEAN/STD` hold the same numbers.
IMAGENET_DEFAULT_MEAN = (0.485, 0.456, 0.406)
IMAGENET_DEFAULT_STD = (0.229, 0.224, 0.225)
IMAGENET_INCEPTION_MEAN = (0.5, 0.5, 0.5)  # [-1, 1] input (vit_jax, big_vision)
IMAGENET_INCEPTION_STD = (0.5, 0.5, 0.5)
INTERPOLATIONS = ("bicubic", "bilinear", "nearest")


@dataclasses.dataclass(frozen=True)
class PretrainedCfg:
    """How a model's official weights were trained and are evaluated, and where they are.

    Attributes:
      input_size: (C, H, W) of the official evaluation, as timm writes it.
      mean, std: per-channel normalisation of [0, 1] pixels.
      crop_pct: centre-crop fraction of the eval resize (the short side goes to
        floor(H / crop_pct), then an H x W centre crop).
      interpolation: the eval resize filter, "bicubic" | "bilinear" | "nearest".
      num_classes: classes of the official head.
      classifier, first_conv: our attribute paths of the head and the stem's first layer
        (dots; list indices as numbers, e.g. "stems.0").
      official_classifier, official_first_conv: the same layers' key prefixes in the
        official weights ("" where there is no official code).
      url: the official weights' download: a direct link, or the share page where the
        authors give only that (Google Drive, OneDrive); "" where none is published.
      file_name: the official weights' file name (the one the official scripts use).
      release: the page that lists the weights (or the repository, where none are).
      license: the official code's / weights' license, as the repository states it.
      source: the official file these values are read from.
    """

    input_size: tuple[int, int, int] = (3, 224, 224)
    mean: tuple[float, ...] = IMAGENET_DEFAULT_MEAN
    std: tuple[float, ...] = IMAGENET_DEFAULT_STD
    crop_pct: float = 0.875
    interpolation: str = "bicubic"
    num_classes: int = 1000
    classifier: str = "head"
    first_conv: str = "stem"
    official_classifier: str = "head"
    official_first_conv: str = ""
    url: str = ""
    file_name: str = ""
    release: str = ""
    license: str = ""
    source: str = ""

    def __post_init__(self):
        channels, height, width = self.input_size
        if height != width:
            raise ValueError(f"input_size {self.input_size}: the models take square inputs.")
        if not (len(self.mean) == len(self.std) == channels):
            raise ValueError(f"mean {self.mean} / std {self.std}: need {channels} values each.")
        if not 0 < self.crop_pct <= 1:
            raise ValueError(f"crop_pct must be in (0, 1], got {self.crop_pct}.")
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(
                f"interpolation {self.interpolation!r}; use one of {', '.join(INTERPOLATIONS)}."
            )

    @property
    def image_size(self) -> int:
        """The side S of the square input (`create_model`'s `image_size`)."""
        return self.input_size[-1]

    @property
    def hf_hub_id(self) -> str:
        """The Hugging Face Hub repository the official file is in (`url` on
        huggingface.co), or ""."""
        match = re.match(r"https://huggingface\.co/([^/]+/[^/]+)/resolve/", self.url)
        return match.group(1) if match else ""


def _family(base: PretrainedCfg, **variants: dict) -> dict[str, PretrainedCfg]:
    return {name: dataclasses.replace(base, **changes) for name, changes in variants.items()}


# sMLPNet: SPACH's datasets.py eval: Resize(int(256 / 224 * S), bicubic) + CenterCrop(S),
# IMAGENET_DEFAULT_MEAN/STD (DeiT's). README: sMLPNet-T has no released file.
_SPACH = "https://github.com/microsoft/SPACH/releases/download/v1.0/"
SMLPNET = PretrainedCfg(
    first_conv="stems.0",
    official_first_conv="to_patch_embedding.0.0",
    official_classifier="mlp_head.0",
    release="https://github.com/microsoft/SPACH/releases/tag/v1.0",
    license="MIT",
    source="microsoft/SPACH datasets.py build_transform",
)

# MLP-Mixer: timm mlp_mixer.py `_cfg` (0.875, bicubic, mean = std = 0.5) for the vit_jax
# weights, whose own eval (vit_jax/input_pipeline.py) resizes to S x S with no crop.
# Files: vit_jax.ipynb's `gsutil ls gs://mixer_models/*` listing (Flax tree, tanh GELU).
_GCS = "https://storage.googleapis.com/mixer_models/"
MIXER = PretrainedCfg(
    mean=IMAGENET_INCEPTION_MEAN,
    std=IMAGENET_INCEPTION_STD,
    official_first_conv="stem",
    release="https://console.cloud.google.com/storage/mixer_models/",
    license="Apache-2.0",
    source="timm models/mlp_mixer.py _cfg",
)

# ConvMixer: timm convmixer.py `_cfg` (= the locuslab fork's timm/models/convmixer.py
# `_cfg`, which its validate.py resolves): crop 0.96, bicubic. Files: timm's copies of the
# locuslab release (tmp-iclr/convmixer v1.0) in the layout smlp_jax.convert reads.
_TIMM_HUB = "https://huggingface.co/timm/{}/resolve/main/model.safetensors"
CONVMIXER = PretrainedCfg(
    crop_pct=0.96,
    official_first_conv="stem.0",
    file_name="model.safetensors",
    release="https://github.com/locuslab/convmixer#evaluation",
    license="MIT",
    source="timm models/convmixer.py _cfg",
)

# DynaMixer: models/configs/conf_dynamixer.py default_cfgs over vision_model.py `_cfg`,
# read by main.py's resolve_data_config. No weights are published (README).
DYNAMIXER = PretrainedCfg(
    official_first_conv="patch_embed.proj",
    release="https://github.com/ziyuwwang/DynaMixer",
    license="MIT",
    source="ziyuwwang/DynaMixer models/configs/conf_dynamixer.py default_cfgs",
)

# AS-MLP: data/build.py eval with config.py's TEST.CROP True, DATA.INTERPOLATION bicubic:
# Resize(int(256 / 224 * S), bicubic) + CenterCrop(S), IMAGENET_DEFAULT_MEAN/STD. Weights:
# README's OneDrive links; file names as train_scripts/test.sh (the yaml's MODEL.NAME).
ASMLP = PretrainedCfg(
    first_conv="patch_embed",
    official_first_conv="patch_embed.proj",
    release="https://github.com/svip-lab/AS-MLP#main-results-on-imagenet-with-pretrained-models",
    license="MIT",
    source="svip-lab/AS-MLP data/build.py build_transform",
)
_ONEDRIVE = "https://shanghaitecheducn-my.sharepoint.com/:u:/g/personal/liandz_shanghaitech_edu_cn/"

# Vision Permutator: models/vip.py default_cfgs at the repo's last change to it (5888c42:
# S 0.9, M 0.9, L 0.875; earlier commits differ), read by validate.py's
# resolve_data_config. Weights: README's Google Drive links (none for S/14).
VIP = PretrainedCfg(
    first_conv="patch_embed",
    official_first_conv="patch_embed.proj",
    release="https://github.com/houqb/VisionPermutator#comparison-with-recent-mlp-like-models",
    license="MIT",
    source="houqb/VisionPermutator models/vip.py default_cfgs",
)
_DRIVE = "https://drive.google.com/file/d/{}/view?usp=sharing"

# Hire-MLP: datasets.py eval: Resize(int(256 / 224 * S), bicubic) + CenterCrop(S),
# IMAGENET_DEFAULT_MEAN/STD; the model's `_cfg` crop_pct 0.9 is never read by train.py.
_HIRE = "https://github.com/ggjy/Hire-Wave-MLP.pytorch/releases/download/log/"
HIREMLP = PretrainedCfg(
    first_conv="patch_embed.proj",
    official_first_conv="patch_embed.proj",
    release="https://github.com/ggjy/Hire-Wave-MLP.pytorch#hire-mlp-on-imagenet-1k-classification",
    license="MIT",
    source="ggjy/Hire-Wave-MLP.pytorch datasets.py build_transform",
)

# RaftMLP: libs/datasets.py ImageNetGetter.test_transform: Resize(256) + CenterCrop(224)
# with torchvision's default (bilinear) filter, ImageNet mean/std. No weights are
# published; the training writes `last_model_0.pt` (README's detection section).
RAFTMLP = PretrainedCfg(
    interpolation="bilinear",
    first_conv="embeddings.0.fc",
    official_first_conv="levels.0.fn.0.fc",
    official_classifier="classifier",
    file_name="last_model_0.pt",
    release="https://github.com/okojoalg/raft-mlp",
    license="Apache-2.0",
    source="okojoalg/raft-mlp libs/datasets.py ImageNetGetter",
)

# Sparse-MLP: no official code or weights (arXiv 2109.02008); the DeiT eval of our recipe
# (configs/sparse_mlp.py), our choice.
SPARSE_MLP = PretrainedCfg(
    official_classifier="",
    source="none (no official code): DeiT's eval, our choice",
)

PRETRAINED_CFGS: dict[str, PretrainedCfg] = {
    **_family(
        SMLPNET,
        smlpnet_t={},
        smlpnet_s=dict(url=_SPACH + "smlp_s.pth", file_name="smlp_s.pth"),
        smlpnet_b=dict(url=_SPACH + "smlp_b.pth", file_name="smlp_b.pth"),
    ),
    **_family(
        MIXER,
        mixer_s32=dict(url=_GCS + "gsam/Mixer-S_32.npz", file_name="Mixer-S_32.npz"),
        mixer_s16=dict(url=_GCS + "gsam/Mixer-S_16.npz", file_name="Mixer-S_16.npz"),
        mixer_b32=dict(url=_GCS + "sam/Mixer-B_32.npz", file_name="Mixer-B_32.npz"),
        mixer_b16=dict(url=_GCS + "imagenet1k/Mixer-B_16.npz", file_name="Mixer-B_16.npz"),
        mixer_l32={},
        mixer_l16=dict(url=_GCS + "imagenet1k/Mixer-L_16.npz", file_name="Mixer-L_16.npz"),
    ),
    **_family(
        CONVMIXER,
        convmixer_1536_20=dict(url=_TIMM_HUB.format("convmixer_1536_20.in1k")),
        convmixer_768_32=dict(url=_TIMM_HUB.format("convmixer_768_32.in1k")),
        convmixer_1024_20=dict(url=_TIMM_HUB.format("convmixer_1024_20_ks9_p14.in1k")),
        # locuslab/convmixer-cifar10 train.py: CIFAR-10 at 32 px, test_transform is
        # ToTensor + Normalize(cifar10_mean, cifar10_std) (no resize: crop 1.0). No weights.
        convmixer_256_8=dict(
            input_size=(3, 32, 32),
            mean=(0.4914, 0.4822, 0.4465),
            std=(0.2471, 0.2435, 0.2616),
            crop_pct=1.0,
            num_classes=10,
            file_name="",
            release="https://github.com/locuslab/convmixer-cifar10",
            source="locuslab/convmixer-cifar10 train.py test_transform",
        ),
    ),
    **_family(
        DYNAMIXER,
        dynamixer_s=dict(crop_pct=0.9),
        dynamixer_m=dict(crop_pct=0.9),
        dynamixer_l=dict(crop_pct=0.875),
    ),
    **_family(
        ASMLP,
        asmlp_t=dict(
            url=_ONEDRIVE + "Eb2lPJI2BshEjJxf9CmRkCUBnB63Wj25-FVVc6zJvgRg6w?e=dEQd5q",
            file_name="asmlp_tiny_patch4_shift5_224.pth",
        ),
        asmlp_s=dict(
            url=_ONEDRIVE + "EVIbw8xHKk1Aq9MBQL-cRbIBVJA_hJE-HEVNf_GVgkw2iQ?e=QIIp2e",
            file_name="asmlp_small_patch4_shift5_224.pth",
        ),
        asmlp_b=dict(
            url=_ONEDRIVE + "EZVBFW_LKctLqgrnnINy88wBRtGFava9wp_65emsvVW2KQ?e=clNjuw",
            file_name="asmlp_base_patch4_shift5_224.pth",
        ),
    ),
    **_family(
        VIP,
        vip_s14=dict(crop_pct=0.9),
        vip_s7=dict(
            crop_pct=0.9,
            url=_DRIVE.format("1cX6eauDrsGsLSZnqsX7cl0oiKX8Dzv5z"),
            file_name="vip_s7.pth",  # eval.sh
        ),
        vip_m7=dict(crop_pct=0.9, url=_DRIVE.format("15y5WMypthpbBFdc01E3mJCZit7q0Yn8m")),
        vip_l7=dict(crop_pct=0.875, url=_DRIVE.format("14F5IXGXmB_3jrwK33Efae-WEb5D_G85c")),
    ),
    **_family(
        HIREMLP,
        hiremlp_t=dict(url=_HIRE + "hire_mlp_tiny.pth", file_name="hire_mlp_tiny.pth"),
        hiremlp_s=dict(url=_HIRE + "hire_mlp_small.pth", file_name="hire_mlp_small.pth"),
        hiremlp_b=dict(url=_HIRE + "hire_mlp_base.pth", file_name="hire_mlp_base.pth"),
        hiremlp_l={},  # README: no checkpoint for Large
    ),
    **_family(RAFTMLP, raftmlp_s={}, raftmlp_m={}, raftmlp_l={}),
    **_family(SPARSE_MLP, sparse_mlp_s={}, sparse_mlp_b={}, sparse_mlp_l={}),
}
