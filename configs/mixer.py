r"""MLP-Mixer on ImageNet-1k from scratch (big_vision's recipe), and a `demo` on the digits.

Variants: `s32`, `s16`, `b32`, `b16`, `l32`, `l16`. The recipe is big_vision's
`configs/mlp_mixer_i1k.py` for Mixer-B/16 (76.3% top-1 after 300 epochs on TPU v3-128):
Adam 0.9/0.999, lr 1e-3 at batch 4096 (not scaled), 10k warm-up steps, gradient clipping
at norm 1, weight decay 1e-4 as big_vision applies it (decoupled, times the schedule
only), which is AdamW's weight_decay = 1e-4 / 1e-3 = 0.1 (kernels only), inception crop
+ flip + RandAugment(2, 15), mixup with Beta(0.5, 0.5) on every batch, stochastic depth
0.1, inputs in [-1, 1], eval resize 256 / crop 224. The same recipe is used for the
other sizes. GELU is the official tanh approximation.

    python main.py --config=configs/mixer.py:b16 --workdir=workdirs/mixer_b16 \
        --config.data_dir=/data/tfds

Where this trainer differs from big_vision (no knob for it here): big_vision decays the
lr linearly to 1e-5 and trains with a sigmoid cross-entropy loss and a -6.9 head bias;
these configs use cosine decay to 1e-5 and softmax cross-entropy. Not run for 300 epochs
here (no accelerator).

Fine-tuning a pretrained checkpoint at a higher resolution (the paper's block-diagonal
token-MLP initialisation; the token MLP width must grow by the patch-count factor):

    python main.py --config=configs/mixer.py:b16 --workdir=workdirs/mixer_b16_448 \
        --config.init_from=Mixer-B_16.npz --config.init_resample_to_grid=True \
        --config.image_size=448 --config.model_kwargs.tokens_mlp_dim=1536

`demo`: a tiny Mixer (width 64, 2 blocks, patch 4: 64 tokens) on the 32x32 digits,
plain AdamW, no mixup:

    python main.py --config=configs/mixer.py:demo --workdir=workdirs/mixer_demo

Result: eval top-1 89.0% (top-5 99.4%, loss 0.345) after the 400 steps, 64 s wall on the
shared 2-core CPU machine (no accelerator).
"""

from __future__ import annotations

from configs import common
from smlp_jax.models import mixer

VARIANTS = ("s32", "s16", "b32", "b16", "l32", "l16")


def get_config(arg: str = "b16"):
    config = common.base_config()
    if arg == "demo":
        return demo_config(config)
    if arg not in VARIANTS:
        raise ValueError(
            f"configs/mixer.py: unknown variant {arg!r}; use {', '.join(VARIANTS)} or demo."
        )
    config.model = f"mixer_{arg}"
    config.model_kwargs.drop_path_rate = 0.1
    # Spelled out so that fine-tuning at a larger grid can override it from the command line.
    config.model_kwargs.tokens_mlp_dim = mixer.SIZES[arg[0]]["tokens_mlp_dim"]
    config.dataset = "imagenet2012"
    config.image_size = 224
    config.input.randaugment = "rand-m15-n2"
    config.input.re_prob = 0.0
    config.input.interpolation = "bilinear"
    config.input.mean = (0.5, 0.5, 0.5)  # value_range(-1, 1)
    config.input.std = (0.5, 0.5, 0.5)
    config.input.crop_pct = 0.875  # resize_small(256) | central_crop(224)
    config.batch_size = 4096
    config.eval_batch_size = 1024
    config.total_epochs = 300.0
    config.optimizer.lr = 1e-3
    config.optimizer.lr_base_batch = 0
    config.optimizer.weight_decay = 0.1
    config.optimizer.warmup_steps = 10_000
    config.optimizer.warmup_init_lr = 0.0
    config.optimizer.min_lr = 1e-5
    config.grad_clip = 1.0
    config.mixup.mixup_alpha = 0.5
    config.mixup.prob = 1.0
    config.eval_every = 2500
    config.checkpoint_every = 1000
    config.lock()
    return config


def demo_config(config):
    from smlp_jax import data

    config.model = "mixer_s16"
    config.model_kwargs.hidden_dim = 64
    config.model_kwargs.num_blocks = 2
    config.model_kwargs.tokens_mlp_dim = 32
    config.model_kwargs.channels_mlp_dim = 128
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
