r"""Vision Permutator on ImageNet-1k with the official recipe, and a `demo` on the digits.

Variants: `s14`, `s7`, `m7`, `l7`. The recipe is the houqb/VisionPermutator README
command (8 GPUs: `vip_s7 -b 256 --opt adamw --epochs 300 --sched cosine --apex-amp
--drop-path 0.1 --lr 2e-3 --weight-decay 0.05 --remode pixel --reprob 0.25 --aa
rand-m9-mstd0.5-inc1 --smoothing 0.1 --mixup 0.8 --cutmix 1.0 --warmup-lr 1e-6
--warmup-epochs 20`), run by its main.py (timm 0.4.5's train.py). Each official setting
and the key that holds it:

- 8 GPUs x `-b 256` -> batch_size 2048 (`common.imagenet`).
- RandomResizedCrop (0.08, 1), flip 0.5, `--aa rand-m9-mstd0.5-inc1`, `--reprob 0.25
  --remode pixel`, recount 1 -> input.* (the "imagenet" preset); `--train-interpolation`
  default "random" -> input.interpolation "random" (`--color-jitter 0.4` is unused beside
  RandAugment).
- eval: Resize(224 / crop_pct, bicubic) + CenterCrop with ViP's default crop_pct, 0.9
  for S and M, 0.875 for L (models/vip.py as last changed) -> input.crop_pct,
  eval_interpolation "bicubic" (from the model's pretrained configuration,
  `smlp_jax.models.pretrained_cfg`).
- `--opt adamw` (torch AdamW, eps 1e-8, betas (0.9, 0.999)), `--lr 2e-3` used as given
  (no batch scaling in ViP's main.py), `--weight-decay 0.05` off 1-D and `.bias`
  parameters (create_optimizer; ViP has no `no_weight_decay()`) -> `common.adamw`:
  optimizer.lr, lr_base_batch 0, weight_decay, eps, decay_rule "timm".
- `--sched cosine --epochs 300 --warmup-epochs 20 --warmup-lr 1e-6`, `--min-lr` 1e-5,
  `--cooldown-epochs` 10, the loop calling `lr_scheduler.step(epoch + 1)` after each of
  create_scheduler's 310 epochs (epoch e at timm's value for e, the last 10 at 1e-5) ->
  `common.timm_cosine`: optimizer.schedule "timm_cosine", schedule_unit "epoch",
  schedule_lag 0, cycle_epochs 300, total_epochs 310, warmup_epochs 20, warmup_init_lr
  1e-6, min_lr 1e-5.
- no `--model-ema` (its default is off since the repo's "we don't use ema in vip"
  commit) -> ema.decay 0.
- `--mixup 0.8 --cutmix 1.0`, prob 1, switch 0.5, batch mode, and `--smoothing 0.1`
  into Mixup's targets with SoftTargetCrossEntropy -> `common.timm_mixup`: mixup.*,
  loss "softmax_xent".
- `--clip-grad` None, `--drop` 0 -> grad_clip 0.
- torch's DistributedSampler (no repeated augmentation), drop_last -> shuffle; an epoch
  of 1,281,167 // 2048 = 625 updates -> eval_every, checkpoint_every
  (`common.every_epoch`).
- `--drop-path 0.1`; the README gives no command for M/7 and L/7: 0.1 and 0.3 (the
  paper's larger-model setting) are ours -> model_kwargs.drop_path_rate.

Remaining differences, each by choice: (1) float32 compute instead of `--apex-amp`
(fp16, O1); (2) timm's loader mixes uint8 images in its collate (FastCollateMixup, with
rounding) and erases after mixing on the GPU; ours erases each image, then mixes in
float; (3) seeds (`42 + rank` there) and the sampler's order are not the official ones.

    python main.py --config=configs/permutator.py:s7 --workdir=workdirs/vip_s7 \
        --config.data_dir=/data/tfds

The paper reports top-1 81.5 / 82.7 / 83.2 (S/7, M/7, L/7); these configs have not been
run for 310 epochs here (no accelerator).

`finetune_<variant>` (e.g. `finetune_s7`): the paper's transfer to CIFAR-10, the
repository's `transfer_learning.py` with its defaults (`common.cifar_transfer` maps each
setting to its key and names what differs); its backbone group is `net.network` (our stages
and downsamples), the head the other; `patch_embed` and `norm` are in neither, so never
updated. The weights: `init_from` "<model>.pth" (the release's file;
`--config.init_from=PATH`), the head starting fresh (10 classes). CIFAR-100:
`--config.dataset=cifar100`. Not run here (no accelerator).

    python main.py --config=configs/permutator.py:finetune_s7 --workdir=workdirs/vip_cifar10 \
        --config.init_from=vip_s7.pth --config.data_dir=/data/tfds

`demo`: a tiny two-stage ViP on 32x32 digits (patch 4: an 8x8 grid with segment_dim 8,
then 4x4 with segment_dim 4), plain AdamW, no mixup:

    python main.py --config=configs/permutator.py:demo --workdir=workdirs/vip_demo

Result (CPU, shared 2-core machine, 400 steps): eval top-1 89.3%, loss 0.383. The tiny
ViP sits near chance for its first ~50 steps (its Linears start at N(0, 0.02), the
official init) before it learns.
"""

from __future__ import annotations

from configs import common

DROP_PATH = {"s14": 0.1, "s7": 0.1, "m7": 0.1, "l7": 0.3}


def get_config(arg: str = "s7"):
    if arg == "demo":
        return demo_config()
    if arg.startswith("finetune_"):
        return finetune_config(arg.removeprefix("finetune_"))
    config = common.variant_config("permutator", arg, DROP_PATH)
    config.model = f"vip_{arg}"
    config.model_kwargs.drop_path_rate = DROP_PATH[arg]
    common.imagenet(config, batch_size=2048)  # image_size 224, crop_pct, bicubic eval
    config.input.interpolation = "random"
    # The official lr is for batch 2048 as it stands.
    common.adamw(config, lr=2e-3, lr_base_batch=0, weight_decay=0.05)
    common.timm_cosine(
        config, epochs=300, warmup_epochs=20, warmup_lr=1e-6, min_lr=1e-5, unit="epoch", lag=0,
        cooldown_epochs=10,
    )  # fmt: skip
    config.ema.decay = 0.0
    common.timm_mixup(config, mixup=0.8, cutmix=1.0, smoothing=0.1)
    common.every_epoch(config, 625)  # at batch 2048
    config.lock()
    return common.with_model_defaults(config)


def finetune_config(arg: str):
    """The repository's CIFAR-10 transfer of `vip_<arg>` (module docstring)."""
    config = common.variant_config("permutator", arg, DROP_PATH)
    config.model = f"vip_{arg}"
    config.init_from = f"{config.model}.pth"
    common.cifar_transfer(
        config, backbone="(stages|downsamples)/.*", frozen=("patch_embed/.*", "norm/.*")
    )
    config.lock()
    return common.with_model_defaults(config)


def demo_config():
    config = common.base_config()
    config.model = "vip_s7"
    config.model_kwargs.layers = (1, 1)
    config.model_kwargs.embed_dims = (32, 48)
    config.model_kwargs.transitions = (True, False)
    config.model_kwargs.segment_dim = (8, 4)
    config.model_kwargs.patch_size = 4
    config.model_kwargs.drop_path_rate = 0.0
    common.demo_training(config)
    config.lock()
    return common.with_model_defaults(config)
