r"""AS-MLP on ImageNet-1k with the official recipe, and a `demo` on the offline digits.

Variants: `t`, `s`, `b`. The recipe is svip-lab/AS-MLP's `train_scripts/train_asmlp_*.sh`
(8 GPUs, `--batch-size 128`), run by its copy of Swin Transformer's training code
(config.py defaults, configs/*.yaml; timm 0.3.2). Each official setting and the key
that holds it:

- 8 GPUs x 128 -> batch_size 1024.
- BASE_LR 5e-4, WARMUP_LR 5e-7, MIN_LR 5e-6, each times batch / 512 (main.py) -> the
  peak optimizer.lr 5e-4 with lr_base_batch 512, and warmup_init_lr 1e-6, min_lr 1e-5
  (already scaled: these two keys are not; rescale them with a different batch).
- AdamW eps 1e-8, betas (0.9, 0.999), WEIGHT_DECAY 0.05 off 1-D and `.bias`
  parameters (set_weight_decay; AS-MLP has no skip list or keywords) -> optimizer.*,
  decay_rule "timm".
- EPOCHS 300, WARMUP_EPOCHS 20: timm's CosineLRScheduler over int(300 x n) updates with
  int(20 x n) warm-up updates (t_in_epochs False, warmup_prefix False), stepped by
  `step_update(epoch * n + idx)` after update idx, so update k runs at timm's value for
  k - 1 -> optimizer.schedule "timm_cosine", schedule_unit "step", schedule_lag 1,
  warmup_epochs 20, total_epochs 300.
- CLIP_GRAD 5.0 (global norm) -> grad_clip 5.0.
- LABEL_SMOOTHING 0.1 into Mixup's targets, SoftTargetCrossEntropy -> loss
  "softmax_xent", mixup.label_smoothing 0.1.
- MIXUP 0.8, CUTMIX 1.0, prob 1, switch 0.5, batch mode -> mixup.*.
- RandomResizedCrop (0.08, 1), flip 0.5, AUTO_AUGMENT rand-m9-mstd0.5-inc1,
  INTERPOLATION bicubic, REPROB 0.25 pixel, RECOUNT 1 -> input.* (the "imagenet"
  preset; COLOR_JITTER 0.4 is unused beside RandAugment).
- TEST.CROP: Resize(256, bicubic) + CenterCrop(224), IMAGENET_DEFAULT_MEAN/STD ->
  input.crop_pct 0.875, eval_interpolation "bicubic", mean / std (from the model's
  pretrained configuration, `smlp_jax.models.pretrained_cfg`).
- DROP_PATH_RATE 0.2 / 0.3 / 0.5 -> model_kwargs.drop_path_rate.
- no EMA; DistributedSampler with drop_last (1251 updates an epoch) -> ema.decay 0,
  eval_every 1251.

Remaining differences, each by choice: (1) float32 compute instead of apex AMP O1
(fp16); (2) seeds and the sampler's order are not the official ones.

    python main.py --config=configs/as_mlp.py:t --workdir=workdirs/asmlp_t \
        --config.data_dir=/data/tfds

The paper reports top-1 81.3 / 83.1 / 83.3 (T / S / B); these configs have not been run
for 300 epochs here (no accelerator).

Fine-tuning: no classification transfer setting to follow. svip-lab/AS-MLP's downstream
results are COCO detection and ADE20K segmentation (mmdetection / mmsegmentation, outside
this trainer), so there is no fine-tuning config; `config.init_from` with the fine-tuning
keys (docs/training.md#fine-tune) applies as to any family.

`demo`: a tiny AS-MLP (embed_dim 24, one block a stage, 32x32) on the 5,000 MNIST digits
bundled with the package, plain AdamW, no mixup:

    python main.py --config=configs/as_mlp.py:demo --workdir=workdirs/asmlp_demo

Result (CPU, shared 2-core machine, 400 steps): eval top-1 96.8%, loss 0.134.
"""

from __future__ import annotations

from configs import common

DROP_PATH = {"t": 0.2, "s": 0.3, "b": 0.5}


def get_config(arg: str = "t"):
    if arg == "demo":
        return demo_config()
    config = common.variant_config("as_mlp", arg, DROP_PATH)
    config.model = f"asmlp_{arg}"
    config.model_kwargs.drop_path_rate = DROP_PATH[arg]
    common.imagenet(config, batch_size=1024)  # 8 GPUs x 128; 224 px and the eval transform
    common.adamw(config, lr=5e-4, lr_base_batch=512, weight_decay=0.05)
    # The official WARMUP_LR 5e-7 and MIN_LR 5e-6, scaled by 1024 / 512 as main.py does.
    common.timm_cosine(
        config, epochs=300, warmup_epochs=20, warmup_lr=5e-7 * 1024 / 512,
        min_lr=5e-6 * 1024 / 512, unit="step", lag=1,
    )  # fmt: skip
    config.grad_clip = 5.0
    common.timm_mixup(config, mixup=0.8, cutmix=1.0, smoothing=0.1)
    common.every_epoch(config, 1251)  # at batch 1024
    config.lock()
    return common.with_model_defaults(config)


def demo_config():
    config = common.base_config()
    config.model = "asmlp_t"
    config.model_kwargs.embed_dim = 24
    config.model_kwargs.depths = (1, 1, 1, 1)
    config.model_kwargs.drop_path_rate = 0.0
    common.demo_training(config)
    config.grad_clip = 5.0
    config.lock()
    return common.with_model_defaults(config)
