"""The pretrained configuration of a registered model (timm's `pretrained_cfg`): the input
its official weights expect, how the official code evaluates them, and where they come from.

The eval transform these values describe: resize the short side to floor(S / crop_pct)
with `interpolation`, centre-crop S (S = input_size[-1]), scale to [0, 1], subtract `mean`,
divide by `std`. Every value is read from the official repository's eval code, named in
`source` (its transform, or the timm `_cfg` that its validate/train script resolves).
Each family file declares its variants' (`PRETRAINED_CFGS`, built with `variant_cfgs`)
beside its `register_model` calls, which store them in the registry;
`smlp_jax.models.pretrained_cfg(name)` looks a model's up, and predict and the configs take
their defaults from it. This module keeps the dataclass and the shared constants.

`classifier` / `first_conv` are our attribute paths on the built module (every family's
head is `head`); `official_classifier` / `official_first_conv` are the same layers' key
prefixes in the layout of the file at `url` (what `smlp_jax.convert` reads).
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

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
      timm_architecture: timm's name of the same network (`mixer_b16_224`), the
        `architecture` of timm's Hub folders, which `create_model("hf-hub:timm/...")`
        reads as this model; "" where timm has none.
      timm_model_args: (hyperparameter, value) pairs where timm's implementation
        computes differently from our defaults (Mixer: exact erf GELU), applied when
        timm's weights are read.
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
    timm_architecture: str = ""
    timm_model_args: tuple[tuple[str, Any], ...] = ()

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


def variant_cfgs(base: PretrainedCfg, **variants: dict) -> dict[str, PretrainedCfg]:
    """{variant name: `base` with that variant's changes}: a family file's table of its
    variants' pretrained configurations, each given to `register_model`."""
    return {name: dataclasses.replace(base, **changes) for name, changes in variants.items()}
