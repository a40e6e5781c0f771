"""Input pipelines: tfds / image-folder / demo sources through grain, timm-style transforms;
the augmentation after the crop (optionally) and Mixup/CutMix on device. See each module
and docs/data.md."""

from smlp_jax.data import input_plan, repeated_aug
from smlp_jax.data.base import DataError, DatasetInfo
from smlp_jax.data.config import (
    check_loading,
    default_input_config,
    default_mixup_config,
    worker_count,
)
from smlp_jax.data.device_augment import DeviceAugment
from smlp_jax.data.device_resize import resize_batch
from smlp_jax.data.mixup import MODES as MIXUP_MODES
from smlp_jax.data.mixup import (
    apply_mix,
    big_vision_mixup,
    mix_draws,
    mixup_cutmix,
    one_hot_smoothed,
)
from smlp_jax.data.mixup import check_mode as check_mixup_mode
from smlp_jax.data.pipeline import (
    EvalIterable,
    TrainIterator,
    create_eval_iterator,
    create_train_iterator,
    local_batch_size,
    open_eval_source,
    train_steps_per_epoch,
)
from smlp_jax.data.sources import get_dataset_info

__all__ = [
    "input_plan",
    "check_mixup_mode",
    "DataError",
    "DeviceAugment",
    "resize_batch",
    "MIXUP_MODES",
    "apply_mix",
    "big_vision_mixup",
    "mix_draws",
    "DatasetInfo",
    "EvalIterable",
    "TrainIterator",
    "check_loading",
    "worker_count",
    "create_eval_iterator",
    "create_train_iterator",
    "open_eval_source",
    "local_batch_size",
    "default_input_config",
    "default_mixup_config",
    "get_dataset_info",
    "mixup_cutmix",
    "one_hot_smoothed",
    "repeated_aug",
    "train_steps_per_epoch",
]
