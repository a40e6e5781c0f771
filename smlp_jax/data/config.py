"""Default configs of the input pipeline: `config.input` and `config.mixup`.

The data side owns these keys; the trainer's configs do
`config.input = data.default_input_config()` and override fields. Two presets:

- "imagenet": the official sMLPNet (DeiT/timm) recipe. Train: RandomResizedCrop scale
  (0.08, 1) ratio (3/4, 4/3) bicubic, horizontal flip 0.5, RandAugment
  `rand-m9-mstd0.5-inc1`, normalise, random erasing p 0.25 'pixel'. Eval: resize the short
  side to floor(size / crop_pct) bicubic, centre crop, normalise.
- "simple": for small inputs such as the 28x28 demo digits. Train: resize to
  image_size, random translation by up to `pad` pixels (zero pad + random crop), flip with
  prob `hflip` (0 by default: digits are not mirror symmetric), normalise. Eval: resize,
  normalise.
"""

from __future__ import annotations

import os
from typing import Any

import ml_collections

from smlp_jax.data.base import DataError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
PRESETS = ("imagenet", "simple")
# config.input.on_device: how much of the train input's work the train step does.
ON_DEVICE = ("", "augment", "resize_and_augment")


def default_input_config(preset: str = "imagenet") -> ml_collections.ConfigDict:
    """Every knob of the input pipeline, with the defaults of `preset`."""
    if preset not in PRESETS:
        raise ValueError(f"Unknown input preset {preset!r}; choose one of {PRESETS}.")
    simple = preset == "simple"
    cfg = ml_collections.ConfigDict()
    cfg.preset = preset
    # Splits: tfds split names (slicing such as "train[:90%]" works); "" picks the eval split
    # automatically ("validation" if the dataset has one, else "test"; "val" for folders).
    cfg.train_split = "train"
    cfg.eval_split = ""
    # folder:/path without a val/ subfolder: this fraction of each class is held out, chosen
    # with val_split_seed (not config.seed: the split must not move with the training seed).
    cfg.val_fraction = 0.1
    cfg.val_split_seed = 0
    # Loading: worker processes that decode and augment. -1 chooses from the cores this
    # process may use (`worker_count`: none under 4 cores, else all but two, at most 32);
    # 0 decodes in the main process (debugging).
    cfg.num_workers = -1
    cfg.num_threads = 2  # threads per worker, each building whole batches
    cfg.prefetch = 2  # batches buffered per worker
    # Worker processes stack each batch straight into shared memory (grain's
    # SharedMemoryArray) as their last op, instead of stacking it and then copying it there:
    # one copy of every batch fewer (pipeline.py). False: grain's own copy, as before.
    cfg.shared_memory = True
    # Decoded images kept in memory, up to this many MB per split and process (0: off;
    # data/decoded_cache.py): each image decoded once, for small datasets whose decoding
    # costs more than the train step (the demo). Without worker processes a thread fills
    # the train split's cache while the step compiles. Images past it are decoded each
    # time. JPEG crops then come from full-size pixels (jpeg_draft is off), cached or not.
    cfg.cache_decoded_mb = 0
    cfg.shuffle = True
    # Repeated augmentation (DeiT's RASampler, smlp_jax/data/repeated_aug.py): each image
    # `repeated_aug` times an epoch (0 = off; DeiT/SPACH: 3), over `repeated_aug_replicas`
    # replicas that split every batch (the official runs: their GPU count; 0 = one per
    # process). It replaces `shuffle`: the order is the official one, seeded by the epoch.
    cfg.repeated_aug = 0
    cfg.repeated_aug_replicas = 0
    # Train: decode JPEGs at a reduced DCT scale when the crop is downscaled by >= 2x anyway
    # (eval always decodes at full resolution, as timm does).
    cfg.jpeg_draft = True
    # How much of the train input's work after decoding runs in the train step, jitted on
    # the accelerator (smlp_jax/data/input_plan.py): "" none (the host crops, resizes and
    # augments: transforms.py, the reference), "augment" (the host sends uint8 crops; flip,
    # RandAugment, normalise and random erasing run in the step: device_augment.py), or
    # "resize_and_augment" (the host only decodes and sends the image zero-padded to
    # (resize_max, resize_max) with its crop box; the step resamples it as Pillow does,
    # device_resize.py, then augments; larger images are resized on the host). 640 holds
    # 640x480 photos (1.2 MB a padded image).
    cfg.on_device = ""
    cfg.resize_max = 640
    # Train transforms.
    cfg.interpolation = "bicubic"  # "bicubic" | "bilinear" | "nearest" | "random" (timm's)
    cfg.scale = (0.08, 1.0)  # RandomResizedCrop area range
    cfg.ratio = (3.0 / 4.0, 4.0 / 3.0)  # RandomResizedCrop aspect range
    cfg.pad = 0 if not simple else 2  # simple preset: translation range in pixels
    cfg.hflip = 0.0 if simple else 0.5
    cfg.randaugment = "" if simple else "rand-m9-mstd0.5-inc1"  # "" = off
    cfg.re_prob = 0.0 if simple else 0.25  # random erasing
    cfg.re_mode = "pixel"  # "pixel" (normal noise per pixel) | "rand" (per channel) | "const"
    cfg.re_count = 1
    # Normalisation (per model: override from the model's pretrained config).
    cfg.mean = (0.5, 0.5, 0.5) if simple else IMAGENET_MEAN
    cfg.std = (0.5, 0.5, 0.5) if simple else IMAGENET_STD
    # Eval: resize short side to floor(image_size / crop_pct), centre crop; the resize
    # filter is eval_interpolation ("": the train one, bicubic if that is "random").
    cfg.eval_interpolation = ""
    cfg.crop_pct = 1.0 if simple else 0.875
    return cfg


def default_mixup_config() -> ml_collections.ConfigDict:
    """Mixup/CutMix/label smoothing, all off. The sMLPNet recipe sets mixup_alpha=0.8,
    cutmix_alpha=1.0, switch_prob=0.5, prob=1.0, label_smoothing=0.1."""
    cfg = ml_collections.ConfigDict()
    cfg.mixup_alpha = 0.0
    cfg.cutmix_alpha = 0.0
    cfg.switch_prob = 0.5
    cfg.prob = 1.0
    cfg.label_smoothing = 0.0
    # "timm": timm's Mixup in batch mode (partner = the batch reversed); "big_vision":
    # get_mixup (a = max(a, 1 - a), partner = each device's shard rolled by one, no CutMix).
    cfg.mode = "timm"
    return cfg


def worker_count(cfg: Any) -> int:
    """The worker processes `config.input.num_workers` asks for; -1 (the default) chooses
    from the usable cores: none under 4 (the trainer's own threads need the few there are;
    on 2 cores a worker measured no faster than decoding in the trainer's process), else all
    but two (the trainer's loop and the device's host threads), at most 32."""
    asked = int(cfg["num_workers"])
    if asked != -1:
        return asked
    cores = usable_cores()
    return 0 if cores < 4 else min(cores - 2, 32)


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask: a container's or `taskset`'s
    limit, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def check_loading(cfg: Any) -> None:
    """One line (`DataError`) for loading settings that cannot work: a worker count above
    the cores this process may use (the workers would only take turns), a prefetch depth or
    thread count under 1, or values that are not whole numbers."""
    values = {}
    for key in ("num_workers", "num_threads", "prefetch"):
        value = cfg[key]
        if isinstance(value, bool) or not isinstance(value, int):
            raise DataError(f"config.input.{key}={value!r}; give a whole number.")
        values[key] = value
    cores = usable_cores()
    if values["num_workers"] < -1 or values["num_workers"] > cores:
        raise DataError(
            f"config.input.num_workers={values['num_workers']}, but this process may use "
            f"{cores} CPU core(s); use 0 (decode in this process) to {cores}, or -1 to choose "
            "from the cores."
        )
    for key, meaning in (("prefetch", "batches buffered per worker"), ("num_threads", "threads")):
        if values[key] < 1:
            raise DataError(f"config.input.{key}={values[key]}: {meaning} must be at least 1.")
    check_cache(cfg)


def check_cache(cfg: Any) -> None:
    """One line (`DataError`) for a `cache_decoded_mb` that is not a whole number >= 0 or
    is more than this machine's memory (every worker process may fill that much)."""
    value = cfg.get("cache_decoded_mb", 0)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise DataError(
            f"config.input.cache_decoded_mb={value!r}; give a whole number of MB (0: off)."
        )
    memory_mb = _memory_mb()
    if memory_mb and value > memory_mb:
        raise DataError(
            f"config.input.cache_decoded_mb={value} is more than this machine's memory "
            f"({memory_mb} MB); use at most what the decoded training images take, or 0."
        )


def _memory_mb() -> int | None:
    """This machine's physical memory in MB; None where the OS does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // (1 << 20)
    except (AttributeError, ValueError, OSError):
        return None
