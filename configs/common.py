"""Every config key the trainer reads, with its default (one place to look them up).

A family config starts from `base_config()` and overrides fields. Keys the data side
owns (`config.input`, `config.mixup`) come from `smlp_jax.data` (`smlp_jax/data/config.py`); the
input size, normalisation and eval transform of a registered model come from its
pretrained configuration (`input_from_pretrained`).
"""

from __future__ import annotations

import ml_collections
from ml_collections import config_dict

from smlp_jax import data, models


def base_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    # Model: a registered name (smlp_jax.list_models()) and its hyperparameter overrides.
    config.model = "smlpnet_t"
    config.model_kwargs = ml_collections.ConfigDict()
    config.model_kwargs_of = ""  # the model model_kwargs' values are for (with_model_defaults)
    config.dtype = "float32"  # computation dtype; parameters stay float32 ("bfloat16" on TPU)

    # Data (smlp_jax.data): "demo" | "folder:/abs/path" | a tfds name.
    config.dataset = "demo"
    config.data_dir = config_dict.placeholder(str)  # None: $TFDS_DATA_DIR or ~/tensorflow_datasets
    config.image_size = 224
    config.batch_size = 1024  # global, over all processes and devices
    config.eval_batch_size = 1024  # global
    config.input = data.default_input_config("imagenet")
    config.mixup = data.default_mixup_config()

    # Length: total_steps wins over total_epochs (epochs of the train split).
    config.total_steps = config_dict.placeholder(int)
    config.total_epochs = 300.0
    config.seed = 0

    # Loss: "softmax_xent" (cross-entropy with the smoothed / mixed soft targets: timm's
    # SoftTargetCrossEntropy, and LabelSmoothingCrossEntropy without mixup) or
    # "sigmoid_xent" (big_vision: per-class binary cross-entropy summed over classes).
    config.loss = "softmax_xent"
    config.head_bias_init = config_dict.placeholder(float)  # None: the model's own init

    # Optimiser: AdamW, weight decay masked off 1-D params, warm-up + cosine.
    config.optimizer = ml_collections.ConfigDict()
    config.optimizer.name = "adamw"
    config.optimizer.lr = 5e-4  # at batch lr_base_batch; scaled linearly with batch_size
    config.optimizer.lr_base_batch = 512  # 0: no scaling
    config.optimizer.b1 = 0.9
    config.optimizer.b2 = 0.999
    config.optimizer.eps = 1e-8
    config.optimizer.weight_decay = 0.05
    # Which parameters decay (smlp_jax.train.optim): "timm" (not 1-D, not *bias) or
    # "kernels" (big_vision); no_decay: regexes over '/'-joined parameter paths.
    config.optimizer.decay_rule = "timm"
    config.optimizer.no_decay = ()
    # Schedules (smlp_jax.train.schedules): "cosine" | "constant" (per update, optax),
    # "timm_cosine" (timm's CosineLRScheduler), "onecycle" (ConvMixer), "linear" (big_vision).
    config.optimizer.schedule = "cosine"
    config.optimizer.warmup_epochs = 20.0
    config.optimizer.warmup_steps = config_dict.placeholder(int)  # wins over warmup_epochs
    config.optimizer.warmup_init_lr = 1e-6
    config.optimizer.min_lr = 1e-5
    # timm_cosine: "epoch" (constant within an epoch) or "step"; lag 1 = the loop steps the
    # scheduler with the finished epoch/update (DeiT, Swin), 0 = with the next (timm's
    # train.py); the cosine cycle's length (None: the whole run; after it, min_lr).
    config.optimizer.schedule_unit = "epoch"
    config.optimizer.schedule_lag = 1
    config.optimizer.warmup_prefix = False
    config.optimizer.cycle_epochs = config_dict.placeholder(float)
    # onecycle: 0 -> peak at pct of the run -> peak / div at pct2 -> 0 at the end.
    config.optimizer.onecycle_pct = 0.4
    config.optimizer.onecycle_pct2 = 0.8
    config.optimizer.onecycle_div = 20.0
    config.grad_clip = 0.0  # global-norm clipping; 0 = off
    # Mixture-of-experts models (Sparse-MLP): loss += weight x their load-balancing loss
    # (smlp_jax.models.moe.total_aux_loss); models without MoE layers add nothing.
    config.aux_loss_weight = 0.01
    config.grad_accum_steps = 1  # micro-batches per update (batch_size is per update)
    config.ema = ml_collections.ConfigDict()
    # timm's ModelEma: after every update, ema = decay * ema + (1 - decay) * model over the
    # parameters and the BatchNorm statistics, starting from the initial weights.
    config.ema.decay = 0.0  # 0 = no EMA; else also evaluated as eval/ema_*

    # Devices: mesh axes (data, fsdp, expert), one may be -1; the batch is split over all.
    # `expert` > 1 splits Sparse-MLP's experts over that axis (expert parallelism; it must
    # divide the expert count); "replicate" or "fsdp" for the rest of the state.
    config.mesh = ml_collections.ConfigDict({"data": -1, "fsdp": 1, "expert": 1})
    config.sharding = "replicate"
    config.fsdp_min_size = 2**14  # smaller arrays stay replicated under fsdp

    # Loop: log / eval / checkpoint intervals in steps (0 = only at the end).
    config.log_every = 100
    config.eval_every = 1000
    config.checkpoint_every = 1000
    config.keep_checkpoints = 3  # plus the best by eval/top1
    config.async_checkpoint = True
    # JAX's persistent compilation cache (smlp_jax.train.compilation_cache): a second run
    # loads the compiled steps. "default" = $JAX_COMPILATION_CACHE_DIR if set, else
    # $XDG_CACHE_HOME/smlp_jax/jax_cache (~/.cache/...), resolved at run time; "" = off.
    config.compilation_cache_dir = "default"

    # Resuming a workdir whose run record (smlp_jax.train.run_record) has other settings:
    # keys (comma-separated, or "all") that may differ from it, e.g. "total_steps,optimizer.lr".
    # Logging, eval, checkpoint frequency, workers and device layout may always change.
    config.allow_changes = ""

    # Start from weights: our workdir/checkpoint dir, or an official file (.pth/.npz).
    config.init_from = ""
    config.init_resample_to_grid = False  # init_from made for another image size (ours or official)

    # --mode=probe (smlp_jax.train.probe): ridge regression on frozen pooled features,
    # fitted on `train_split` (eval transform), scored on input.eval_split.
    config.probe = ml_collections.ConfigDict()
    config.probe.train_split = "train"
    config.probe.shots = (1, 5, 10, 25)  # examples a class; "full" (all) is always run
    config.probe.seeds = 3  # draws per shot count, averaged
    config.probe.l2_reg = 2.0**10  # big_vision's fewshot default
    return config


def input_from_pretrained(config: ml_collections.ConfigDict, like: str | None = None) -> None:
    """Sets `image_size` and `input.mean/std/crop_pct/eval_interpolation` to the official
    eval of `config.model` (or of the model `like`) (`smlp_jax.models.pretrained_cfg`), the
    one place those values are written down; they stay keys, so
    `--config.input.crop_pct=...` still overrides."""
    cfg = models.pretrained_cfg(like or config.model)
    config.image_size = cfg.image_size
    config.input.mean = cfg.mean
    config.input.std = cfg.std
    config.input.crop_pct = cfg.crop_pct
    config.input.eval_interpolation = cfg.interpolation


def with_model_defaults(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """Fills `config.model_kwargs` with every hyperparameter of `config.model` at the value
    the model uses (`smlp_jax.models.hyperparameters`), keeping the ones the config set,
    so each is a key `--config.model_kwargs.<name>=...` can change (and a misspelt name
    still fails). `model_kwargs_of` records the model they describe: when
    `--config.model` names another model, only the keys that differ from that model's
    values are passed on (`smlp_jax.train.state.model_kwargs`)."""
    with config.unlocked():
        for key, value in models.hyperparameters(config.model).items():
            if key not in config.model_kwargs:
                config.model_kwargs[key] = value
        config.model_kwargs_of = config.model
    return config
