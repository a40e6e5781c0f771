r"""RaftMLP on ImageNet-1k with the official recipe, and a `demo` on the offline digits.

Variants: `s`, `m`, `l` (official settings `imagenet-raft-mlp-cross-mlp-emb-{s,m,l}.yaml`
of okojoalg/raft-mlp: batch 2048, AdamW lr 2e-3 at batch 2048 with weight decay 0.05,
5 warm-up epochs then cosine to 1e-5, 305 epochs in all, label smoothing 0.1, mixup 0.8
/ cutmix 1.0, cutout 0.25 (random erasing here), drop path 0.1 on every block, 224 px).
Their colour jitter 0.4 is replaced by the shared RandAugment recipe of `common.py`.

    python main.py --config=configs/raft_mlp.py:s --workdir=workdirs/raftmlp_s \
        --config.data_dir=/data/tfds

The paper reports top-1 79.4 / 80.4 / 80.8 (S / M / L); these configs have not been run
for 305 epochs here (no accelerator).

`demo`: a tiny RaftMLP (three levels, one block each, 32x32) on the 5,000 MNIST digits
bundled with the package, plain AdamW, no mixup:

    python main.py --config=configs/raft_mlp.py:demo --workdir=workdirs/raftmlp_demo
"""

from __future__ import annotations

from configs import common

VARIANTS = ("s", "m", "l")


def get_config(arg: str = "s"):
    config = common.base_config()
    if arg == "demo":
        return demo_config(config)
    if arg not in VARIANTS:
        raise ValueError(f"configs/raft_mlp.py: unknown variant {arg!r}; use s, m, l or demo.")
    config.model = f"raftmlp_{arg}"
    config.model_kwargs.drop_path_rate = 0.1
    config.dataset = "imagenet2012"
    config.image_size = 224
    config.batch_size = 2048
    config.eval_batch_size = 1024
    config.total_epochs = 305.0
    config.optimizer.lr = 2e-3
    config.optimizer.lr_base_batch = 2048
    config.optimizer.weight_decay = 0.05
    config.optimizer.warmup_epochs = 5.0
    config.optimizer.min_lr = 1e-5
    config.mixup.mixup_alpha = 0.8
    config.mixup.cutmix_alpha = 1.0
    config.mixup.switch_prob = 0.5
    config.mixup.prob = 1.0
    config.mixup.label_smoothing = 0.1
    config.eval_every = 625  # one epoch at batch 2048
    config.checkpoint_every = 625
    config.lock()
    return config


def demo_config(config):
    from smlp_jax import data

    config.model = "raftmlp_s"
    config.model_kwargs.dims = (16, 32, 48)
    config.model_kwargs.depths = (1, 1, 1)
    config.model_kwargs.patch_sizes = (4, 2, 2)
    config.model_kwargs.embedding_kernels = ((4, 8), (2, 4), (2,))
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
    config.grad_clip = 5.0
    config.log_every = 50
    config.eval_every = 200
    config.checkpoint_every = 200
    config.lock()
    return config
