r"""Hire-MLP on ImageNet-1k with the official recipe, and a `demo` on the offline digits.

Variants: `t`, `s`, `b`, `l`. The recipe is the ggjy/Hire-Wave-MLP.pytorch README
commands (8 GPUs, `train.py --apex-amp --epochs 300 --warmup-epochs 20 --warmup-lr 1e-6
--no-model-ema`, T: `--batch-size 256 --drop-path 0.0`, B: `--batch-size 128
--drop-path 0.2`) with its DeiT-style train.py defaults and the timm copy it imports
(0.4.13). Each official setting and the key that holds it:

- 8 GPUs x 256 (T) / 128 (B) -> batch_size 2048 / 1024.
- `--lr 5e-4` times batch / 512 (only the peak is scaled) -> optimizer.lr 5e-4,
  lr_base_batch 512; `--warmup-lr 1e-6`, `--min-lr 1e-5` as given -> warmup_init_lr,
  min_lr.
- `--opt adamw --opt-eps 1e-8`, betas (0.9, 0.999), `--weight-decay 0.05` off 1-D and
  `.bias` parameters (the model has no `no_weight_decay()`) -> optimizer.*, decay_rule
  "timm".
- `--sched cosine --epochs 300 --warmup-epochs 20`, `--cooldown-epochs 10`:
  CosineLRScheduler(t_initial=300, warmup_prefix=False); the loop runs
  create_scheduler's 310 epochs and calls `lr_scheduler.step(epoch)` at the end of each,
  so epoch e runs at timm's value for e - 1 (epochs 0 and 1 at 1e-6, the last ones at
  1e-5) -> optimizer.schedule "timm_cosine", schedule_unit "epoch", schedule_lag 1,
  cycle_epochs 300, total_epochs 310.
- `--clip-grad` None -> grad_clip 0.
- `--smoothing 0.1` into Mixup's targets, SoftTargetCrossEntropy -> loss
  "softmax_xent", mixup.label_smoothing 0.1.
- `--mixup 0.8 --cutmix 1.0`, prob 1, switch 0.5, batch mode -> mixup.*.
- RandomResizedCrop (0.08, 1), flip 0.5, `--aa rand-m9-mstd0.5-inc1`, bicubic,
  `--reprob 0.25 --remode pixel --recount 1` -> input.* (the "imagenet" preset;
  `--color-jitter 0.4` is unused beside RandAugment).
- eval Resize(int(256 / 224 x 224), bicubic) + CenterCrop(224) (datasets.py; the model's
  crop_pct 0.9 is never read) -> input.crop_pct 0.875, eval_interpolation "bicubic"
  (from the model's pretrained configuration, `smlp_jax.models.pretrained_cfg`).
- `repeated_aug` (on by default): RASampler, 3 repeats over 8 replicas, each keeping
  floor(N // 256 x 256 / 8) samples an epoch (625 updates for T, 1251 for B) ->
  input.repeated_aug 3, repeated_aug_replicas 8.
- `--no-model-ema` -> ema.decay 0.
- `--drop-path 0.0 / 0.2` for T / B -> model_kwargs.drop_path_rate. S and L have no
  command: drop path 0.1 (train.py's default) and 0.2, batch 2048 and 1024 are ours.

Remaining differences, each by choice: (1) BatchNorm statistics are over the global
batch (one program over all devices), not per GPU over 256 / 128 (`convert_syncbn_model`
is imported but never called); (2) float32 compute instead of apex AMP O1 (fp16);
(3) seeds (3407 there) are not the official ones.

    python main.py --config=configs/hire_mlp.py:t --workdir=workdirs/hiremlp_t \
        --config.data_dir=/data/tfds

The paper reports top-1 79.7 / 82.1 / 83.2 / 83.8 (T / S / B / L); these configs have
not been run for 310 epochs here (no accelerator).

Fine-tuning: no classification transfer setting to follow. Hire-MLP's downstream
results are COCO detection and ADE20K segmentation (the repository's mmseg-v0.11 configs,
outside this trainer), so there is no fine-tuning config; `config.init_from` with the
fine-tuning keys (docs/training.md#fine-tune) applies as to any family.

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
    if arg == "demo":
        return demo_config()
    config = common.variant_config("hire_mlp", arg, VARIANTS)
    batch = VARIANTS[arg]["batch_size"]
    config.model = f"hiremlp_{arg}"
    config.model_kwargs.drop_path_rate = VARIANTS[arg]["drop_path_rate"]
    common.imagenet(config, batch_size=batch)  # image_size 224, crop_pct 0.875, bicubic eval
    config.input.repeated_aug = 3
    config.input.repeated_aug_replicas = 8
    common.adamw(config, lr=5e-4, lr_base_batch=512, weight_decay=0.05)
    common.timm_cosine(
        config, epochs=300, warmup_epochs=20, warmup_lr=1e-6, min_lr=1e-5, unit="epoch", lag=1,
        cooldown_epochs=10,
    )  # fmt: skip
    config.ema.decay = 0.0
    common.timm_mixup(config, mixup=0.8, cutmix=1.0, smoothing=0.1)
    # One epoch: the sampler's floor(1,281,167 // 256 * 256 / 8) = 160,128 samples a
    # replica, batch / 8 a step.
    common.every_epoch(config, 160_128 // (batch // 8))
    config.lock()
    return common.with_model_defaults(config)


def demo_config():
    config = common.base_config()
    config.model = "hiremlp_t"
    config.model_kwargs.layers = (2, 2, 1, 1)
    config.model_kwargs.embed_dims = (16, 32, 48, 64)
    config.model_kwargs.drop_path_rate = 0.0
    common.demo_training(config)
    config.lock()
    return common.with_model_defaults(config)
