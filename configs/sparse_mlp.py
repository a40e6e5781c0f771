r"""Sparse-MLP on ImageNet-1k, supervised, and a `demo` on the offline digits.

Variants: `s`, `b`, `l` (our reconstruction of the paper's models, see
`smlp_jax/models/sparse_mlp.py`). No official code is public (none linked from the
paper, arXiv 2109.02008, or found under its authors' accounts), so there is no official
command to follow: every setting below is ours. The paper pre-trains with MoCo v3 (self-
supervised) and then fine-tunes; that pre-training is not implemented here, so this is a
supervised recipe in the Mixer/DeiT style: AdamW lr 1e-3 x batch/1024 (batch 1024),
weight decay 0.05, 20 warm-up epochs then cosine to 1e-5, 300 epochs, gradient clip 1,
label smoothing 0.1, mixup 0.8 / cutmix 1.0, RandAugment m9 mstd0.5, random erasing
0.25, drop path 0.1, 224 px. MoE: load-balancing loss weight 0.01 (the paper's lambda),
capacity factor 1.25 (`model_kwargs.capacity_factor`).

    python main.py --config=configs/sparse_mlp.py:s --workdir=workdirs/sparse_mlp_s \
        --config.data_dir=/data/tfds

Not run for 300 epochs here (no accelerator); the paper's numbers (after MoCo v3
pre-training) are not comparable to this recipe.

Fine-tuning: the paper fine-tunes after MoCo v3 pre-training, with no official code or
full settings to follow, so there is no fine-tuning config; `config.init_from` with the
fine-tuning keys (docs/training.md#fine-tune) applies as to any family.

`demo`: a tiny Sparse-MLP (patch 4 on 32x32, width 128, a Mixer block then a Sparse
block) on the 5,000 MNIST digits bundled with the package, plain AdamW, no mixup:

    python main.py --config=configs/sparse_mlp.py:demo --workdir=workdirs/sparse_mlp_demo
"""

from __future__ import annotations

from configs import common

VARIANTS = ("s", "b", "l")


def get_config(arg: str = "s"):
    if arg == "demo":
        return demo_config()
    config = common.variant_config("sparse_mlp", arg, VARIANTS)
    config.model = f"sparse_mlp_{arg}"
    config.model_kwargs.drop_path_rate = 0.1
    config.model_kwargs.capacity_factor = 1.25
    common.imagenet(config, batch_size=1024)  # image_size 224, DeiT's eval (our choice)
    config.total_epochs = 300.0
    common.adamw(config, lr=1e-3, lr_base_batch=1024, weight_decay=0.05)
    config.optimizer.warmup_epochs = 20.0
    config.optimizer.min_lr = 1e-5
    config.grad_clip = 1.0
    common.timm_mixup(config, mixup=0.8, cutmix=1.0, smoothing=0.1)
    common.every_epoch(config, 1250)  # at batch 1024
    _moe(config)
    config.lock()
    return common.with_model_defaults(config)


def _moe(config):
    # The trainer adds aux_loss_weight x the models' load-balancing loss to the loss.
    config.aux_loss_weight = 0.01


def demo_config():
    config = common.base_config()
    config.model = "sparse_mlp_s"
    config.model_kwargs.hidden_dim = 128
    config.model_kwargs.num_blocks = 2
    config.model_kwargs.tokens_mlp_dim = 32
    config.model_kwargs.channels_mlp_dim = 256
    config.model_kwargs.sparse_blocks = (1,)
    config.model_kwargs.capacity_factor = 2.0  # 64 tokens, 4 experts: few drops
    config.model_kwargs.patch_size = 4
    config.model_kwargs.drop_path_rate = 0.0
    common.demo_training(config)
    config.grad_clip = 5.0
    _moe(config)
    config.lock()
    return common.with_model_defaults(config)
