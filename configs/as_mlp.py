r"""AS-MLP on ImageNet-1k with the official recipe, and a `demo` on the offline digits.

Variants: `t`, `s`, `b` (official svip-lab/AS-MLP, Swin-style: AdamW 0.9/0.999 eps 1e-8,
weight decay 0.05 off biases and norms, lr 5e-4 x batch/512 with batch 1024, 20 warm-up
epochs from 1e-6 then cosine to 1e-5 (the official 5e-7 / 5e-6 at batch 512, scaled the
same way), gradient-norm clip 5, 300 epochs, label smoothing 0.1, mixup 0.8 / cutmix 1.0
switch 0.5, RandAugment m9 mstd0.5, random erasing 0.25, no EMA, drop path 0.2 / 0.3 /
0.5, 224 px):

    python main.py --config=configs/as_mlp.py:t --workdir=workdirs/asmlp_t \
        --config.data_dir=/data/tfds

The paper reports top-1 81.3 / 83.1 / 83.3 (T / S / B); these configs have not been run
for 300 epochs here (no accelerator).

`demo`: a tiny AS-MLP (embed_dim 24, one block a stage, 32x32) on the 5,000 MNIST digits
bundled with the package, plain AdamW, no mixup:

    python main.py --config=configs/as_mlp.py:demo --workdir=workdirs/asmlp_demo

Result (CPU, shared 2-core machine, 400 steps): eval top-1 96.8%, loss 0.134.
"""

from __future__ import annotations

from configs import common

DROP_PATH = {"t": 0.2, "s": 0.3, "b": 0.5}


def get_config(arg: str = "t"):
    config = common.base_config()
    if arg == "demo":
        return demo_config(config)
    if arg not in DROP_PATH:
        raise ValueError(f"configs/as_mlp.py: unknown variant {arg!r}; use t, s, b or demo.")
    config.model = f"asmlp_{arg}"
    config.model_kwargs.drop_path_rate = DROP_PATH[arg]
    config.dataset = "imagenet2012"
    config.image_size = 224
    config.batch_size = 1024
    config.eval_batch_size = 1024
    config.total_epochs = 300.0
    config.optimizer.lr = 5e-4
    config.optimizer.lr_base_batch = 512
    config.optimizer.warmup_epochs = 20.0
    config.optimizer.warmup_init_lr = 1e-6
    config.optimizer.min_lr = 1e-5
    config.grad_clip = 5.0
    config.mixup.mixup_alpha = 0.8
    config.mixup.cutmix_alpha = 1.0
    config.mixup.switch_prob = 0.5
    config.mixup.prob = 1.0
    config.mixup.label_smoothing = 0.1
    config.eval_every = 1250  # one epoch at batch 1024
    config.checkpoint_every = 1250
    config.lock()
    return config


def demo_config(config):
    from smlp_jax import data

    config.model = "asmlp_t"
    config.model_kwargs.embed_dim = 24
    config.model_kwargs.depths = (1, 1, 1, 1)
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
