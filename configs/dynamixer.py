r"""DynaMixer on ImageNet-1k with the official recipe, and a `demo` on the digits.

Variants: `s`, `m`, `l`. The recipe is the ziyuwwang/DynaMixer README commands with its
main.py defaults: AdamW, lr 2e-3 (not scaled) at batch 2048 / 1024 / 512 (8 GPUs x 256 /
128 / 64) for S / M / L, weight decay 0.05, 20 warm-up epochs from 1e-6 then cosine to
1e-5, 300 epochs, label smoothing 0.1, mixup 0.8 / cutmix 1.0 switch 0.5, RandAugment m9
mstd0.5, random erasing 0.25 (pixel), model EMA 0.99996, drop path 0.1 / 0.1 / 0.3, eval
crop 0.9 / 0.9 / 0.875:

    python main.py --config=configs/dynamixer.py:s --workdir=workdirs/dynamixer_s \
        --config.data_dir=/data/tfds

The paper reports top-1 82.7 / 83.7 / 84.3; not run for 300 epochs here (no
accelerator). timm also adds 10 cool-down epochs at the minimum lr (`total_epochs=310`).

`demo`: a tiny two-stage DynaMixer on the 32x32 digits (patch 4: an 8x8 grid, a stride-2
transition to 4x4), plain AdamW, no mixup:

    python main.py --config=configs/dynamixer.py:demo --workdir=workdirs/dynamixer_demo

Result: eval top-1 79.0% (top-5 98.4%, loss 0.653) after the 400 steps, 75 s wall on the
shared 2-core CPU machine (no accelerator); its small trunc-normal(0.02) init makes it
the slowest of the three to leave chance level.
"""

from __future__ import annotations

from configs import common

VARIANTS = {
    "s": dict(batch_size=2048, drop_path_rate=0.1, crop_pct=0.9),
    "m": dict(batch_size=1024, drop_path_rate=0.1, crop_pct=0.9),
    "l": dict(batch_size=512, drop_path_rate=0.3, crop_pct=0.875),
}


def get_config(arg: str = "s"):
    config = common.base_config()
    if arg == "demo":
        return demo_config(config)
    if arg not in VARIANTS:
        raise ValueError(f"configs/dynamixer.py: unknown variant {arg!r}; use s, m, l or demo.")
    variant = VARIANTS[arg]
    config.model = f"dynamixer_{arg}"
    config.model_kwargs.drop_path_rate = variant["drop_path_rate"]
    config.dataset = "imagenet2012"
    config.image_size = 224
    config.input.crop_pct = variant["crop_pct"]
    config.batch_size = variant["batch_size"]
    config.eval_batch_size = 1024
    config.total_epochs = 300.0
    config.optimizer.lr = 2e-3
    config.optimizer.lr_base_batch = 0
    config.optimizer.weight_decay = 0.05
    config.optimizer.warmup_epochs = 20.0
    config.optimizer.warmup_init_lr = 1e-6
    config.optimizer.min_lr = 1e-5
    config.ema.decay = 0.99996
    config.mixup.mixup_alpha = 0.8
    config.mixup.cutmix_alpha = 1.0
    config.mixup.switch_prob = 0.5
    config.mixup.prob = 1.0
    config.mixup.label_smoothing = 0.1
    steps_per_epoch = 1_281_167 // variant["batch_size"]
    config.eval_every = steps_per_epoch
    config.checkpoint_every = steps_per_epoch
    config.lock()
    return config


def demo_config(config):
    from smlp_jax import data

    config.model = "dynamixer_s"
    config.model_kwargs.layers = (1, 1)
    config.model_kwargs.transitions = (True, False)
    config.model_kwargs.embed_dims = (32, 48)
    config.model_kwargs.num_heads = (4, 4)
    config.model_kwargs.reduced_dims = (2, 2)
    config.model_kwargs.patch_size = 4
    config.model_kwargs.drop_path_rate = 0.0
    config.dataset = "demo"
    config.image_size = 32
    config.input = data.default_input_config("simple")
    config.batch_size = 64
    config.eval_batch_size = 200
    config.total_steps = 400
    config.optimizer.lr = 2e-3
    config.optimizer.lr_base_batch = 0
    config.optimizer.warmup_steps = 20
    config.log_every = 50
    config.eval_every = 200
    config.checkpoint_every = 200
    config.lock()
    return config
