r"""DynaMixer on ImageNet-1k with the official recipe, and a `demo` on the digits.

Variants: `s`, `m`, `l`. The recipe is the ziyuwwang/DynaMixer README commands (8 GPUs,
`--opt adamw --epochs 300 --sched cosine --apex-amp --lr 2e-3 --weight-decay 0.05
--remode pixel --reprob 0.25 --aa rand-m9-mstd0.5-inc1 --smoothing 0.1 --mixup 0.8
--cutmix 1.0 --warmup-lr 1e-6 --warmup-epochs 20` with `-b 256 / 128 / 64 --drop-path
0.1 / 0.1 / 0.3` for S / M / L), run by its main.py (timm 0.4.12's train.py). Each
official setting and the key that holds it:

- 8 GPUs x `-b 256 / 128 / 64` -> batch_size 2048 / 1024 / 512 (`common.imagenet`).
- RandomResizedCrop (0.08, 1), flip 0.5, `--aa rand-m9-mstd0.5-inc1`, `--reprob 0.25
  --remode pixel`, recount 1 -> input.* (the "imagenet" preset); `--train-interpolation`
  default "random" -> input.interpolation "random" (`--color-jitter 0.4` is unused beside
  RandAugment).
- eval: Resize(224 / crop_pct, bicubic) + CenterCrop with DynaMixer's default crop_pct,
  0.9 / 0.9 / 0.875 for S / M / L -> input.crop_pct, eval_interpolation "bicubic" (from
  the model's pretrained configuration, `smlp_jax.models.pretrained_cfg`).
- `--opt adamw` (torch AdamW, eps 1e-8, betas (0.9, 0.999)), `--lr 2e-3` used as given
  (no batch scaling in DynaMixer's main.py), `--weight-decay 0.05` off 1-D and `.bias`
  parameters (create_optimizer; DynaMixer has no `no_weight_decay()`) ->
  `common.adamw`: optimizer.lr, lr_base_batch 0, weight_decay, eps, decay_rule "timm".
- `--sched cosine --epochs 300 --warmup-epochs 20 --warmup-lr 1e-6`, `--min-lr` 1e-5,
  `--cooldown-epochs` 10, the loop calling `lr_scheduler.step(epoch + 1)` after each of
  create_scheduler's 310 epochs (epoch e at timm's value for e, the last 10 at 1e-5) ->
  `common.timm_cosine`: optimizer.schedule "timm_cosine", schedule_unit "epoch",
  schedule_lag 0, cycle_epochs 300, total_epochs 310, warmup_epochs 20, warmup_init_lr
  1e-6, min_lr 1e-5.
- `--model-ema` (on by default) with decay 0.99996: timm's ModelEma after every update,
  over parameters and buffers, from the initial weights -> ema.decay 0.99996.
- `--mixup 0.8 --cutmix 1.0`, prob 1, switch 0.5, batch mode, and `--smoothing 0.1`
  into Mixup's targets with SoftTargetCrossEntropy -> `common.timm_mixup`: mixup.*,
  loss "softmax_xent".
- `--clip-grad` None, `--drop` 0 -> grad_clip 0.
- torch's DistributedSampler (no repeated augmentation), drop_last -> shuffle; an epoch
  of 1,281,167 // batch updates -> eval_every, checkpoint_every (`common.every_epoch`).
- `--drop-path 0.1 / 0.1 / 0.3` -> model_kwargs.drop_path_rate.

Remaining differences, each by choice: (1) float32 compute instead of `--apex-amp`
(fp16, O1); (2) timm's loader mixes uint8 images in its collate (FastCollateMixup, with
rounding) and erases after mixing on the GPU; ours erases each image, then mixes in
float; (3) seeds (`42 + rank` there) and the sampler's order are not the official ones.

    python main.py --config=configs/dynamixer.py:s --workdir=workdirs/dynamixer_s \
        --config.data_dir=/data/tfds

The paper reports top-1 82.7 / 83.7 / 84.3; not run for 310 epochs here (no
accelerator).

`finetune_<variant>` (e.g. `finetune_s`): the official repository's transfer to CIFAR-10,
its `transfer_learning.py` with its defaults (`common.cifar_transfer` maps each setting to
its key and names what differs); its backbone groups are `patch_embed` and `network` (our
stem and network), the head the other; `norm` is in none, so never updated. The weights:
`init_from` "<model>.pth" (the release's file; `--config.init_from=PATH`), the head starting
fresh (10 classes). CIFAR-100: `--config.dataset=cifar100`. Not run here (no accelerator).

    python main.py --config=configs/dynamixer.py:finetune_s --workdir=workdirs/dynamixer_cifar10 \
        --config.init_from=dynamixer_s.pth --config.data_dir=/data/tfds

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
    "s": dict(batch_size=2048, drop_path_rate=0.1),
    "m": dict(batch_size=1024, drop_path_rate=0.1),
    "l": dict(batch_size=512, drop_path_rate=0.3),
}


def get_config(arg: str = "s"):
    if arg == "demo":
        return demo_config()
    if arg.startswith("finetune_"):
        return finetune_config(arg.removeprefix("finetune_"))
    config = common.variant_config("dynamixer", arg, VARIANTS)
    variant = VARIANTS[arg]
    config.model = f"dynamixer_{arg}"
    config.model_kwargs.drop_path_rate = variant["drop_path_rate"]
    common.imagenet(config, batch_size=variant["batch_size"])  # 224 px, crop_pct, bicubic eval
    config.input.interpolation = "random"
    common.adamw(config, lr=2e-3, lr_base_batch=0, weight_decay=0.05)
    common.timm_cosine(
        config, epochs=300, warmup_epochs=20, warmup_lr=1e-6, min_lr=1e-5, unit="epoch", lag=0,
        cooldown_epochs=10,
    )  # fmt: skip
    config.ema.decay = 0.99996
    common.timm_mixup(config, mixup=0.8, cutmix=1.0, smoothing=0.1)
    common.every_epoch(config, 1_281_167 // variant["batch_size"])
    config.lock()
    return common.with_model_defaults(config)


def finetune_config(arg: str):
    """The repository's CIFAR-10 transfer of `dynamixer_<arg>` (module docstring)."""
    config = common.variant_config("dynamixer", arg, VARIANTS)
    config.model = f"dynamixer_{arg}"
    config.init_from = f"{config.model}.pth"
    common.cifar_transfer(config, backbone="(stem|network)/.*", frozen=("norm/.*",))
    config.lock()
    return common.with_model_defaults(config)


def demo_config():
    config = common.base_config()
    config.model = "dynamixer_s"
    config.model_kwargs.layers = (1, 1)
    config.model_kwargs.transitions = (True, False)
    config.model_kwargs.embed_dims = (32, 48)
    config.model_kwargs.num_heads = (4, 4)
    config.model_kwargs.reduced_dims = (2, 2)
    config.model_kwargs.patch_size = 4
    config.model_kwargs.drop_path_rate = 0.0
    common.demo_training(config)
    config.lock()
    return common.with_model_defaults(config)
