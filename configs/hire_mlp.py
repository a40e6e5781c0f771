r"""Hire-MLP on ImageNet-1k with the official recipe, and a `demo` on the offline digits.

Variants: `t`, `s`, `b`, `l` (official ggjy/Hire-Wave-MLP.pytorch README commands and its
DeiT-style train.py defaults: AdamW eps 1e-8, weight decay 0.05, lr 5e-4 x batch/512,
20 warm-up epochs from 1e-6 then cosine to 1e-5, 300 epochs, label smoothing 0.1, mixup
0.8 / cutmix 1.0 switch 0.5, RandAugment m9 mstd0.5, random erasing 0.25, no EMA, no
clipping; batch 2048 for T and 1024 for B; drop path 0.0 (T) and 0.2 (B) per the README,
0.1 (S) and 0.2 (L) our choice; 224 px, eval crop 0.9). The official runs also use
repeated augmentation, which the data pipeline here does not do.

    python main.py --config=configs/hire_mlp.py:t --workdir=workdirs/hiremlp_t \
        --config.data_dir=/data/tfds

The paper reports top-1 79.7 / 82.1 / 83.2 / 83.8 (T / S / B / L); these configs have
not been run for 300 epochs here (no accelerator).

`demo`: a tiny Hire-MLP (widths 16-64, 32x32, so regions wrap around the small grids)
on the 5,000 MNIST digits bundled with the package, plain AdamW, no mixup:

    python main.py --config=configs/hire_mlp.py:demo --workdir=workdirs/hiremlp_demo

Result (CPU, shared 2-core machine, 400 steps): eval top-1 97.6%, loss 0.077.
"""

from __future__ import annotations

from configs import common

VARIANTS = {
    "t": dict(drop_path_rate=0.0, batch_size=2048),
    "s": dict(drop_path_rate=0.1, batch_size=2048),
    "b": dict(drop_path_rate=0.2, batch_size=1024),
    "l": dict(drop_path_rate=0.2, batch_size=1024),
}


def get_config(arg: str = "t"):
    config = common.base_config()
    if arg == "demo":
        return demo_config(config)
    if arg not in VARIANTS:
        raise ValueError(f"configs/hire_mlp.py: unknown variant {arg!r}; use t, s, b, l or demo.")
    batch = VARIANTS[arg]["batch_size"]
    config.model = f"hiremlp_{arg}"
    config.model_kwargs.drop_path_rate = VARIANTS[arg]["drop_path_rate"]
    config.dataset = "imagenet2012"
    config.image_size = 224
    config.input.crop_pct = 0.9
    config.batch_size = batch
    config.eval_batch_size = 1024
    config.total_epochs = 300.0
    config.optimizer.lr = 5e-4
    config.optimizer.lr_base_batch = 512
    config.optimizer.warmup_epochs = 20.0
    config.optimizer.warmup_init_lr = 1e-6
    config.optimizer.min_lr = 1e-5
    config.mixup.mixup_alpha = 0.8
    config.mixup.cutmix_alpha = 1.0
    config.mixup.switch_prob = 0.5
    config.mixup.prob = 1.0
    config.mixup.label_smoothing = 0.1
    config.eval_every = 1_281_167 // batch  # one epoch
    config.checkpoint_every = 1_281_167 // batch
    config.lock()
    return config


def demo_config(config):
    from smlp_jax import data

    config.model = "hiremlp_t"
    config.model_kwargs.layers = (2, 2, 1, 1)
    config.model_kwargs.embed_dims = (16, 32, 48, 64)
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
