r"""ConvMixer on ImageNet-1k with the official recipe, and a `demo` on the digits.

Variants: `1536_20`, `768_32` (ReLU), `1024_20`, and `256_8` (the CIFAR-10 model of
locuslab/convmixer-cifar10: kernel 5, patch 2). The ImageNet recipe is the locuslab
README's command ("exactly the settings we used"), run by the timm fork bundled with the
repo (its train.py defaults fill the rest). Each official setting and the key that holds
it:

- `distributed_train.sh 10 ... -b 64` -> batch_size 640 (10 GPUs x 64).
- `--opt adamw --opt-eps=1e-3 --lr 0.01` (not scaled), betas (0.9, 0.999) ->
  optimizer.eps 1e-3, lr 0.01, lr_base_batch 0.
- `--weight-decay` default 2e-5, off 1-D and `.bias` parameters (create_optimizer's
  filter) -> optimizer.weight_decay 2e-5, decay_rule "timm".
- `--sched onecycle --warmup-epochs 0`: before each update of epoch e, batch i of n, the
  lr is `np.interp(e + (i + 1) / n, [0, E*2//5, E*4//5, E], [0, lr, lr/20, 0])` ->
  optimizer.schedule "onecycle" (onecycle_pct 0.4, onecycle_pct2 0.8, onecycle_div 20).
- `--epochs 150` (300 for 768/32) -> total_epochs.
- `--clip-grad 1.0` (norm) -> grad_clip 1.0.
- `--mixup 0.5 --cutmix 0.5`, prob 1, switch 0.5, batch mode; `--smoothing` 0.1 ->
  mixup.mixup_alpha / cutmix_alpha / prob / switch_prob / label_smoothing.
- RandomResizedCrop (0.08, 1), flip 0.5, `--aa rand-m9-mstd0.5-inc1`,
  `--train-interpolation` default "random" (bilinear or bicubic per resize and per
  geometric op) -> input.randaugment, input.interpolation "random".
- `--reprob 0.25 --remode pixel`, recount 1 -> input.re_prob / re_mode / re_count.
- eval: the model's default crop 0.96, bicubic -> input.crop_pct 0.96,
  eval_interpolation "bicubic" (from the model's pretrained configuration,
  `smlp_jax.models.pretrained_cfg`).
- no `--model-ema`, no `--drop-path` -> ema.decay 0, no drop path.
- one epoch: 128,117 images a GPU at 64, drop_last -> 2001 updates (eval_every).

Remaining differences, each by choice: (1) BatchNorm statistics are over the global
batch of 640 (one program over all devices), not per GPU over 64 (no sync-BN in the
command); (2) float32 compute instead of `--amp` (fp16 autocast with a loss scaler);
(3) the timm loader mixes uint8 images in its collate (FastCollateMixup, with rounding)
and erases after mixing, on the GPU; ours erases each image before mixing, in float.
tests/train/test_schedules.py checks the lr of every update of the official schedule.

    python main.py --config=configs/convmixer.py:1536_20 --workdir=workdirs/convmixer \
        --config.data_dir=/data/tfds

The paper reports 81.4 / 80.2 / 79.5 top-1 (1536/20, 768/32, 1024/20); not run for the
full schedule here (no accelerator).

`256_8` is the locuslab CIFAR-10 model (its pretrained configuration is that repo's input:
32 px, CIFAR-10 mean / std, no crop); this file trains it with the ImageNet recipe and
ImageNet's input, like the other sizes.

Fine-tuning: no transfer setting to follow. The paper and locuslab/convmixer train on
ImageNet-1k only (convmixer-cifar10, `256_8`, trains CIFAR-10 from scratch), so there is no
fine-tuning config; `config.init_from` with the fine-tuning keys (docs/training.md#fine-tune)
applies as to any family.

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
    if arg == "demo":
        return demo_config()
    config = common.variant_config("convmixer", arg, EPOCHS)
    config.model = f"convmixer_{arg}"
    # image_size 224, crop_pct 0.96, bicubic eval (256_8's own configuration is CIFAR-10's)
    like = "convmixer_768_32" if arg == "256_8" else None
    common.imagenet(config, batch_size=640, like=like)  # 10 GPUs x -b 64
    config.eval_batch_size = 640
    config.total_epochs = EPOCHS[arg]
    common.adamw(config, lr=0.01, lr_base_batch=0, weight_decay=2e-5, eps=1e-3)
    config.optimizer.schedule = "onecycle"
    config.optimizer.onecycle_pct = 0.4
    config.optimizer.onecycle_pct2 = 0.8
    config.optimizer.onecycle_div = 20.0
    config.optimizer.warmup_epochs = 0.0
    config.input.interpolation = "random"
    config.grad_clip = 1.0
    common.timm_mixup(config, mixup=0.5, cutmix=0.5, smoothing=0.1)
    common.every_epoch(config, 2001)  # at batch 640
    config.lock()
    return common.with_model_defaults(config)


def demo_config():
    config = common.base_config()
    config.model = "convmixer_256_8"
    config.model_kwargs.dim = 64
    config.model_kwargs.depth = 2
    config.model_kwargs.patch_size = 4
    common.demo_training(config)
    config.lock()
    return common.with_model_defaults(config)
