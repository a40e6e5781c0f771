r"""ConvMixer on ImageNet-1k with the official recipe, and a `demo` on the digits.

Variants: `1536_20`, `768_32` (ReLU), `1024_20`, and `256_8` (the CIFAR-10 model of
locuslab/convmixer-cifar10: kernel 5, patch 2). The ImageNet recipe is the locuslab
README's command ("exactly the settings we used"): timm AdamW eps 1e-3, lr 0.01 at batch
640 (10 GPUs x 64, not scaled), weight decay 2e-5 (timm's default), gradient clipping at
norm 1, 150 epochs (300 for 768/32), RandAugment m9 mstd0.5, mixup 0.5 / cutmix 0.5
switch 0.5, label smoothing 0.1, random erasing 0.25 (pixel), no drop path, eval crop
0.96:

    python main.py --config=configs/convmixer.py:1536_20 --workdir=workdirs/convmixer \
        --config.data_dir=/data/tfds

The official "OneCycle" schedule (linear 0 -> lr at 40% of training, -> lr/20 at 80%,
-> 0) has no knob here; these configs warm up linearly over the first 40% and then decay
by cosine, which the authors expect to work as well ("one could likely just as well train
ConvMixers with the built-in cosine schedule"). The paper reports 81.4 / 80.2 / 79.5
top-1 (1536/20, 768/32, 1024/20); not run for the full schedule here (no accelerator).

`256_8` with `--config.dataset=cifar10 --config.image_size=32` is the locuslab CIFAR
model; this file keeps the ImageNet recipe for it.

`demo`: ConvMixer-64/2 (kernel 5, patch 4: an 8x8 map) on the 32x32 digits, plain AdamW,
no mixup:

    python main.py --config=configs/convmixer.py:demo --workdir=workdirs/convmixer_demo

Result: eval top-1 96.8% (top-5 99.9%, loss 0.132) after the 400 steps, 132 s wall on
the shared 2-core CPU machine (no accelerator).
"""

from __future__ import annotations

from configs import common

EPOCHS = {"1536_20": 150.0, "768_32": 300.0, "1024_20": 150.0, "256_8": 150.0}


def get_config(arg: str = "1536_20"):
    config = common.base_config()
    if arg == "demo":
        return demo_config(config)
    if arg not in EPOCHS:
        raise ValueError(
            f"configs/convmixer.py: unknown variant {arg!r}; use {', '.join(EPOCHS)} or demo."
        )
    config.model = f"convmixer_{arg}"
    config.dataset = "imagenet2012"
    config.image_size = 224
    config.input.crop_pct = 0.96
    config.batch_size = 640
    config.eval_batch_size = 640
    config.total_epochs = EPOCHS[arg]
    config.optimizer.lr = 0.01
    config.optimizer.lr_base_batch = 0
    config.optimizer.eps = 1e-3
    config.optimizer.weight_decay = 2e-5
    config.optimizer.warmup_epochs = 0.4 * EPOCHS[arg]
    config.optimizer.warmup_init_lr = 0.0
    config.optimizer.min_lr = 0.0
    config.grad_clip = 1.0
    config.mixup.mixup_alpha = 0.5
    config.mixup.cutmix_alpha = 0.5
    config.mixup.switch_prob = 0.5
    config.mixup.prob = 1.0
    config.mixup.label_smoothing = 0.1
    config.eval_every = 2000  # one epoch at batch 640
    config.checkpoint_every = 2000
    config.lock()
    return config


def demo_config(config):
    from smlp_jax import data

    config.model = "convmixer_256_8"
    config.model_kwargs.dim = 64
    config.model_kwargs.depth = 2
    config.model_kwargs.patch_size = 4
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
