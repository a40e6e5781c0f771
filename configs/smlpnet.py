r"""sMLPNet on ImageNet-1k with the official recipe, and a `demo` on the offline digits.

Variants: `t`, `s`, `b` (official: AdamW 0.9/0.999 eps 1e-8, weight decay 0.05 off biases
and norms, lr 5e-4 x batch/512, 20 warm-up epochs from 1e-6 then cosine to 1e-5, 300
epochs, label smoothing 0.1, mixup 0.8 / cutmix 1.0 switch 0.5, RandAugment m9 mstd0.5,
random erasing 0.25, EMA 0.99996, drop path 0 / 0.2 / 0.3, batch 1024 at 224):

    python main.py --config=configs/smlpnet.py:t --workdir=workdirs/smlpnet_t \
        --config.data_dir=/data/tfds

The official paper reports top-1 81.9 / 83.1 / 83.4 (T / S / B); these configs have not
been run for 300 epochs here (no accelerator).

`demo`: a tiny sMLPNet (dim 24, one block a stage, 32x32) on the 5,000 MNIST digits
bundled with the package (4,000 train / 1,000 held out), plain AdamW, no mixup:

    python main.py --config=configs/smlpnet.py:demo --workdir=workdirs/demo

Result (deterministic from seed 0): eval top-1 95.00% at step 200 and 97.30% at step 400
(top-5 99.60%, loss 0.115) on the 1,000 held-out digits; 548k parameters.
Wall time of the whole command (start-up, data already built, compilation, training, two
evals): 2 min 26 s on this 2-core CPU on 2026-11-22 20:26 UTC while three other training
runs shared the two cores (load ~10); the same command took 36 s at load ~2 (README
"Results").
"""

from __future__ import annotations

from configs import common

VARIANTS = {
    "t": dict(drop_path_rate=0.0),
    "s": dict(drop_path_rate=0.2),
    "b": dict(drop_path_rate=0.3),
}


def get_config(arg: str = "t"):
    config = common.base_config()
    if arg == "demo":
        return demo_config(config)
    if arg not in VARIANTS:
        raise ValueError(f"configs/smlpnet.py: unknown variant {arg!r}; use t, s, b or demo.")
    config.model = f"smlpnet_{arg}"
    config.model_kwargs.drop_path_rate = VARIANTS[arg]["drop_path_rate"]
    config.dataset = "imagenet2012"
    config.image_size = 224
    config.batch_size = 1024
    config.eval_batch_size = 1024
    config.total_epochs = 300.0
    config.optimizer.lr = 5e-4
    config.optimizer.lr_base_batch = 512
    config.optimizer.warmup_epochs = 20.0
    config.ema.decay = 0.99996
    config.mixup.mixup_alpha = 0.8
    config.mixup.cutmix_alpha = 1.0
    config.mixup.switch_prob = 0.5
    config.mixup.prob = 1.0
    config.mixup.label_smoothing = 0.1
    config.log_every = 100
    config.eval_every = 1250  # one epoch at batch 1024
    config.checkpoint_every = 1250
    config.lock()
    return config


def demo_config(config):
    from smlp_jax import data

    config.model = "smlpnet_t"
    config.model_kwargs.dim = 24
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
    config.optimizer.weight_decay = 0.05
    config.optimizer.warmup_steps = 20
    config.log_every = 50
    config.eval_every = 200
    config.checkpoint_every = 200
    config.lock()
    return config
