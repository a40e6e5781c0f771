r"""MLP-Mixer on ImageNet-1k from scratch (big_vision's recipe), and a `demo` on the digits.

Variants: `s32`, `s16`, `b32`, `b16`, `l32`, `l16`. The recipe is big_vision's
`configs/mlp_mixer_i1k.py` (Mixer-B/16: 76.3% top-1 after 300 epochs on TPU v3-128),
used for every size. Each official setting and the key that holds it:

- `train_split='train[:99%]'` (minival is train[99%:]) -> input.train_split.
- `batch_size=4096`, `num_epochs=300` -> batch_size, total_epochs.
- `init_head_bias=-6.9`, `loss='sigmoid_xent'` -> head_bias_init, loss "sigmoid_xent".
- `optax_name='scale_by_adam'` (0.9, 0.999, eps 1e-8), `grad_clip_norm=1.`,
  `lr=0.001` (not scaled) -> optimizer.b1/b2/eps, grad_clip 1.0, optimizer.lr,
  lr_base_batch 0.
- `wd=1e-4` on '.*/kernel$' (bv_optax: decayed weights added after the lr scaling, so
  the decay is wd x schedule) -> AdamW's weight_decay = wd / lr = 0.1, decay_rule
  "kernels".
- `schedule=dict(decay_type='linear', warmup_steps=10_000, linear_end=1e-5)`: a
  multiplier of lr, min(1, step / 10k) warm-up (the first update at 0) and linear decay to
  1e-5 x lr -> optimizer.schedule "linear", warmup_steps 10000, min_lr 1e-8.
- `mixup=dict(fold_in=None, p=0.5)`: get_mixup's Dirichlet(0.5, 0.5) weights, largest
  first, each device's shard rolled by one -> mixup.mode "big_vision", mixup_alpha 0.5,
  no smoothing.
- `model.stoch_depth=0.1` -> model_kwargs.drop_path_rate 0.1.
- pp_train `decode_jpeg_and_inception_crop(224)|flip_lr|randaug(2,15)|value_range(-1, 1)`
  (area 5-100%, aspect 0.75-1.33, bilinear) -> input.scale (0.05, 1), ratio (0.75, 1.33),
  interpolation "bilinear", hflip 0.5, randaugment "rand-m15-n2-mmax15" (two ops at
  level 15 of 10, not clipped), mean = std = 0.5.
- pp_eval `resize_small(256)|central_crop(224)|value_range(-1, 1)` -> crop_pct 0.875 and
  mean = std = 0.5 (from the model's pretrained configuration,
  `smlp_jax.models.pretrained_cfg`), eval_interpolation "bilinear" (resize_small's
  default is TF's "area" without antialiasing: PIL's antialiased bilinear is the nearest
  filter here; the pretrained configuration's bicubic is timm's eval of the released
  weights).
- evals every 2500 steps, checkpoints every 1000 -> eval_every, checkpoint_every.

Remaining differences, each named (big_vision's input pipeline is TensorFlow's, ours
PIL's): (1) the crop box comes from `tf.image.sample_distorted_bounding_box` there and
from timm's RandomResizedCrop sampler (log-uniform aspect) here, in the same ranges, and
TF resizes without antialiasing where PIL's bilinear filter widens when downscaling;
(2) RandAugment there is the TF/TPU one (big_vision/pp/autoaugment.py): timm's 15 ops
plus Cutout (half-side 60 px at level 15), every chosen op applied (timm: probability
0.5), translations of 150 px instead of 67.5% of the side, fill grey 128 instead of the
mean colour; (3)
big_vision shuffles through a 250k-example buffer per host, ours is a full permutation
per epoch; (4) float32 here, the TPU's default bfloat16 matmul precision there.

    python main.py --config=configs/mixer.py:b16 --workdir=workdirs/mixer_b16 \
        --config.data_dir=/data/tfds

Not run for 300 epochs here (no accelerator).

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
    if arg == "demo":
        return demo_config()
    config = common.variant_config("mixer", arg, VARIANTS)
    config.model = f"mixer_{arg}"
    config.model_kwargs.drop_path_rate = 0.1
    # Spelled out so that fine-tuning at a larger grid can override it from the command line.
    config.model_kwargs.tokens_mlp_dim = mixer.SIZES[arg[0]]["tokens_mlp_dim"]
    common.imagenet(config, batch_size=4096)  # image_size 224, mean = std = 0.5, crop 0.875
    config.input.train_split = "train[:99%]"
    config.input.scale = (0.05, 1.0)
    config.input.ratio = (0.75, 1.33)
    config.input.randaugment = "rand-m15-n2-mmax15"
    config.input.re_prob = 0.0
    config.input.interpolation = "bilinear"
    config.input.eval_interpolation = "bilinear"  # big_vision's resize_small, not timm's
    config.total_epochs = 300.0
    # wd 1e-4 x the lr schedule (bv_optax) is AdamW's decay of wd / lr.
    common.adamw(config, lr=1e-3, lr_base_batch=0, weight_decay=1e-4 / 1e-3, decay_rule="kernels")
    config.optimizer.schedule = "linear"
    config.optimizer.warmup_steps = 10_000
    config.optimizer.warmup_init_lr = 0.0
    config.optimizer.min_lr = 1e-5 * 1e-3  # linear_end x lr
    config.loss = "sigmoid_xent"
    config.head_bias_init = -6.9
    config.grad_clip = 1.0
    config.mixup.mode = "big_vision"
    config.mixup.mixup_alpha = 0.5
    config.eval_every = 2500
    config.checkpoint_every = 1000
    config.lock()
    return common.with_model_defaults(config)


def demo_config():
    config = common.base_config()
    config.model = "mixer_s16"
    config.model_kwargs.hidden_dim = 64
    config.model_kwargs.num_blocks = 2
    config.model_kwargs.tokens_mlp_dim = 32
    config.model_kwargs.channels_mlp_dim = 128
    config.model_kwargs.patch_size = 4
    config.model_kwargs.drop_path_rate = 0.0
    common.demo_training(config)
    config.lock()
    return common.with_model_defaults(config)
