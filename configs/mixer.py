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

`finetune_<variant>` (every variant with released weights, its pretrained configuration's
`.npz`: `finetune_b16`, `finetune_l16`, and the SAM / GSAM `s32`, `s16`, `b32`): transfer
by vit_jax's fine-tuning, google-research/vision_transformer @ c6de1e5:
`vit_jax/configs/mixer_base16_cifar10.py` on `configs/common.py`, run by `vit_jax/train.py`
(its README: `python -m vit_jax.main --workdir=... --config=.../mixer_base16_cifar10.py
--config.pretrained_dir='gs://mixer_models/imagenet21k'`; `finetune_config` below):

- `pretrained_dir`/`model.model_name`.npz -> init_from "Mixer-B_16.npz" (the file name of
  the model's pretrained configuration; download it from gs://mixer_models/imagenet21k or
  imagenet1k, or give `--config.init_from=PATH`).
- `checkpoint.load_pretrained` always puts the new model's head in (vit_jax's Mixer head
  is zero-initialised, kernel and bias) -> init_head "fresh": the head starts from our
  model's own initialisation, zero too (`head_init`), whatever the class count.
- `dataset='cifar10'`, `pp.train='train[:98%]'`, `pp.test='test'` -> dataset "cifar10",
  input.train_split, input.eval_split.
- `pp.crop=224` (the presets' 384 is ViT's: vit_jax interpolates ViT's position
  embeddings but cannot resize Mixer's token MLP) -> image_size 224.
- `total_steps=10_000` -> total_steps; `batch=512`, `batch_eval=512`, `accum_steps=8` ->
  batch_size, eval_batch_size, grad_accum_steps 8 (LayerNorm only: the same update as one
  batch of 512, in less memory).
- `optax.chain(clip_by_global_norm(grad_norm_clip=1.0), optax.sgd(lr_fn, momentum=0.9,
  accumulator_dtype='bfloat16'))`, no weight decay, no Nesterov -> grad_clip 1.0,
  optimizer.name "sgd", momentum 0.9, weight_decay 0, momentum_dtype "bfloat16".
- `base_lr=0.03`, `decay_type='cosine'`, `warmup_steps=500` (`utils.
  create_learning_rate_schedule`: lr x min(1, step / 500) x the cosine from step 500 to
  the end, down to 0; the first update at step 0) -> optimizer.lr 0.03, lr_base_batch 0,
  schedule "cosine", warmup_steps 500, warmup_init_lr 0, min_lr 0 (optax's
  warmup_cosine_decay_schedule: the same lr at every step, tests/train/test_config_values.py).
- softmax cross-entropy on one-hot labels -> loss "softmax_xent", no smoothing or mixup.
- train pp (`input_pipeline.get_data`): `sample_distorted_bounding_box` area (0.05, 1),
  aspect (0.75, 1.33), `tf.image.resize` (bilinear) to 224, flip 0.5, (x - 127.5) / 127.5
  -> input.scale, input.ratio, interpolation "bilinear", hflip 0.5, mean = std = 0.5, no
  RandAugment or erasing. Eval pp: the whole image resized to 224 -> crop_pct 1.0,
  eval_interpolation "bilinear".
- `eval_every=100`, `progress_every=10`, `checkpoint_every=1_000` -> eval_every,
  log_every, checkpoint_every. No stochastic depth in vit_jax's Mixer -> drop_path_rate 0.

Remaining differences: (1) vit_jax shuffles through a 50,000-example buffer, ours is a full
permutation; (2) TF resizes without antialiasing, PIL's bilinear filter widens when it
downscales (CIFAR is upscaled: the same filter); (3) train.py saves a checkpoint when
`step % eval_every == 0` (its condition reads eval_every), ours every checkpoint_every; (4)
float32 here, the TPU's bfloat16 matmul precision there. The README's result,
not rerun here (no accelerator): ImageNet-21k Mixer-B/16 -> CIFAR-10 96.82% (4 V100s, 9.6 h).

    python main.py --config=configs/mixer.py:finetune_b16 --workdir=workdirs/mixer_b16_cifar10 \
        --config.init_from=Mixer-B_16.npz --config.data_dir=/data/tfds

At a higher resolution, the paper's block-diagonal token MLP (init_resample_to_grid) needs
a grid that is a whole multiple of 14 x 14 patches: 448, not 384 (24 x 24 patches):

    ... --config.image_size=448 --config.init_resample_to_grid=True \
        --config.model_kwargs.tokens_mlp_dim=1536

`demo`: a tiny Mixer (width 64, 2 blocks, patch 4: 64 tokens) on the 32x32 digits,
plain AdamW, no mixup:

    python main.py --config=configs/mixer.py:demo --workdir=workdirs/mixer_demo

Result: eval top-1 89.0% (top-5 99.4%, loss 0.345) after the 400 steps, 64 s wall on the
shared 2-core CPU machine (no accelerator).
"""

from __future__ import annotations

from configs import common
from smlp_jax import models
from smlp_jax.models import mixer

VARIANTS = ("s32", "s16", "b32", "b16", "l32", "l16")


def get_config(arg: str = "b16"):
    if arg == "demo":
        return demo_config()
    if arg.startswith("finetune_"):
        return finetune_config(arg.removeprefix("finetune_"))
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


def finetune_config(arg: str):
    """vit_jax's fine-tuning of the released `arg` weights on CIFAR-10 (module docstring)."""
    released = [v for v in VARIANTS if models.pretrained_cfg(f"mixer_{v}").file_name]
    if arg not in released:
        raise ValueError(
            f"configs/mixer.py: no released weights for finetune_{arg}; use "
            f"{', '.join('finetune_' + v for v in released)}."
        )
    config = common.base_config()
    config.model = f"mixer_{arg}"
    config.model_kwargs.drop_path_rate = 0.0
    config.init_from = models.pretrained_cfg(config.model).file_name  # the release's .npz
    config.init_head = "fresh"  # load_pretrained's new head: zeros, as ours (head_init)
    config.dataset = "cifar10"
    config.image_size = 224
    config.input.train_split = "train[:98%]"
    config.input.eval_split = "test"
    config.input.scale = (0.05, 1.0)
    config.input.ratio = (0.75, 1.33)
    config.input.randaugment = ""
    config.input.re_prob = 0.0
    config.input.interpolation = "bilinear"
    config.input.eval_interpolation = "bilinear"
    config.input.crop_pct = 1.0
    config.input.mean = config.input.std = (0.5, 0.5, 0.5)
    config.batch_size = config.eval_batch_size = 512
    config.grad_accum_steps = 8
    config.total_steps = 10_000
    common.sgd(config, lr=0.03, lr_base_batch=0, momentum_dtype="bfloat16")
    config.optimizer.warmup_steps = 500
    config.optimizer.warmup_init_lr = 0.0
    config.optimizer.min_lr = 0.0
    config.grad_clip = 1.0
    config.eval_every, config.log_every, config.checkpoint_every = 100, 10, 1000
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
