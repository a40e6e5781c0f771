r"""Vision Permutator on ImageNet-1k with the official recipe, and a `demo` on the digits.

Variants: `s14`, `s7`, `m7`, `l7`. The recipe is the houqb/VisionPermutator README
command (8 GPUs: `vip_s7 -b 256 --opt adamw --epochs 300 --sched cosine --apex-amp
--drop-path 0.1 --lr 2e-3 --weight-decay 0.05 --remode pixel --reprob 0.25 --aa
rand-m9-mstd0.5-inc1 --smoothing 0.1 --mixup 0.8 --cutmix 1.0 --warmup-lr 1e-6
--warmup-epochs 20`), run by its main.py (timm 0.4.5's train.py). Each official setting
and the key that holds it:

- 8 GPUs x `-b 256` -> batch_size 2048.
- `--opt adamw` (torch AdamW, eps 1e-8, betas (0.9, 0.999)), `--weight-decay 0.05` off
  1-D and `.bias` parameters (create_optimizer; the model has no `no_weight_decay()`)
  -> optimizer.*, decay_rule "timm".
- `--lr 2e-3`, used as given (no batch scaling in main.py) -> optimizer.lr,
  lr_base_batch 0.
- `--sched cosine --epochs 300 --warmup-epochs 20 --warmup-lr 1e-6`, `--min-lr` 1e-5,
  `--cooldown-epochs` 10: CosineLRScheduler(t_initial=300, warmup_prefix=False), and the
  loop runs create_scheduler's 310 epochs, calling `lr_scheduler.step(epoch + 1)` after
  each, so epoch e runs at timm's value for e (the last 10 at 1e-5) ->
  optimizer.schedule "timm_cosine", schedule_unit "epoch", schedule_lag 0,
  cycle_epochs 300, total_epochs 310, warmup_epochs 20, warmup_init_lr 1e-6, min_lr 1e-5.
- `--smoothing 0.1` into Mixup's targets, SoftTargetCrossEntropy -> loss
  "softmax_xent", mixup.label_smoothing 0.1.
- `--mixup 0.8 --cutmix 1.0`, prob 1, switch 0.5, batch mode -> mixup.*.
- RandomResizedCrop (0.08, 1), flip 0.5, `--aa rand-m9-mstd0.5-inc1`,
  `--train-interpolation` default "random" -> input.randaugment, input.interpolation
  "random" (`--color-jitter 0.4` is unused beside RandAugment).
- `--reprob 0.25 --remode pixel`, recount 1 -> input.re_prob / re_mode / re_count.
- eval: Resize(224 / crop_pct, bicubic) + CenterCrop with the model's default crop_pct
  -> input.crop_pct, eval_interpolation "bicubic" (from the model's pretrained
  configuration, `smlp_jax.models.pretrained_cfg`).
- `--clip-grad` None, `--drop` 0 -> grad_clip 0.
- torch's DistributedSampler (no repeated augmentation), drop_last -> shuffle.
- ViP's default crop_pct: 0.9 for S and M, 0.875 for L (models/vip.py as last changed)
  -> input.crop_pct (the pretrained configuration's).
- no `--model-ema` (its default is off since the repo's "we don't use ema in vip"
  commit) -> ema.decay 0.
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

`demo`: a tiny two-stage ViP on 32x32 digits (patch 4: an 8x8 grid with segment_dim 8,
then 4x4 with segment_dim 4), plain AdamW, no mixup:

    python main.py --config=configs/permutator.py:demo --workdir=workdirs/vip_demo

Result (CPU, shared 2-core machine, 400 steps): eval top-1 89.3%, loss 0.383. The tiny
ViP sits near chance for its first ~50 steps (its Linears start at N(0, 0.02), the
official init) before it learns.
"""

from __future__ import annotations

from configs import common

VARIANTS = {
    "s14": dict(drop_path_rate=0.1),
    "s7": dict(drop_path_rate=0.1),
    "m7": dict(drop_path_rate=0.1),
    "l7": dict(drop_path_rate=0.3),
}


def get_config(arg: str = "s7"):
    config = common.base_config()
    if arg == "demo":
        return common.with_model_defaults(demo_config(config))
    if arg not in VARIANTS:
        raise ValueError(
            f"configs/permutator.py: unknown variant {arg!r}; use s14, s7, m7, l7 or demo."
        )
    config.model = f"vip_{arg}"
    config.model_kwargs.drop_path_rate = VARIANTS[arg]["drop_path_rate"]
    config.dataset = "imagenet2012"
    common.input_from_pretrained(config)  # image_size 224, crop_pct, bicubic eval
    config.batch_size = 2048
    config.eval_batch_size = 1024
    config.input.interpolation = "random"
    config.total_epochs = 310.0
    config.optimizer.lr = 2e-3
    config.optimizer.lr_base_batch = 0  # the official lr is for batch 2048 as it stands
    config.optimizer.weight_decay = 0.05
    config.optimizer.decay_rule = "timm"
    config.optimizer.schedule = "timm_cosine"
    config.optimizer.schedule_unit = "epoch"
    config.optimizer.schedule_lag = 0
    config.optimizer.warmup_prefix = False
    config.optimizer.cycle_epochs = 300.0
    config.optimizer.warmup_epochs = 20.0
    config.optimizer.warmup_init_lr = 1e-6
    config.optimizer.min_lr = 1e-5
    config.ema.decay = 0.0
    config.loss = "softmax_xent"
    config.mixup.mixup_alpha = 0.8
    config.mixup.cutmix_alpha = 1.0
    config.mixup.switch_prob = 0.5
    config.mixup.prob = 1.0
    config.mixup.label_smoothing = 0.1
    config.eval_every = 625  # one epoch at batch 2048
    config.checkpoint_every = 625
    config.lock()
    return common.with_model_defaults(config)


def demo_config(config):
    from smlp_jax import data

    config.model = "vip_s7"
    config.model_kwargs.layers = (1, 1)
    config.model_kwargs.embed_dims = (32, 48)
    config.model_kwargs.transitions = (True, False)
    config.model_kwargs.segment_dim = (8, 4)
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
