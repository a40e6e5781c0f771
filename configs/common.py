"""Every config key the trainer reads, with its default (one place to look them up).

A family config starts from `base_config()` and overrides fields. Keys the data side
owns (`config.input`, `config.mixup`) come from `smlp_jax.data` (`smlp_jax/data/config.py`); the
input size, normalisation and eval transform of a registered model come from its
pretrained configuration (`input_from_pretrained`).

The blocks several family files share are helpers here, each setting the keys it names
to the values its caller passes: `variant_config`, `demo_training` (every family's
`demo`), `imagenet`, `adamw`, `sgd`, `head_only`, `cifar_transfer`, `timm_cosine`,
`timm_mixup` and `every_epoch`.
tests/train/test_config_values.py pins every family config's resolved values.
"""

from __future__ import annotations

import ml_collections
from ml_collections import config_dict

from smlp_jax import data, models
from smlp_jax.train import evaluators


def base_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    # Model: a registered name (smlp_jax.list_models()) and its hyperparameter overrides.
    config.model = "smlpnet_t"
    config.model_kwargs = ml_collections.ConfigDict()
    config.model_kwargs_of = ""  # the model model_kwargs' values are for (with_model_defaults)
    config.dtype = "float32"  # computation dtype; parameters stay float32 ("bfloat16" on TPU)
    # Recompute each block's activations in the backward instead of keeping them (less
    # memory, more compute): a policy of smlp_jax.models.remat ("nothing_saveable",
    # "dots_saveable", "dots_with_no_batch_dims_saveable"); "" keeps everything.
    config.remat = ""

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

    # Optimiser (smlp_jax.train.optim): "adamw" (torch's AdamW) or "sgd" (torch's SGD with
    # momentum, L2 weight decay); weight decay masked off 1-D params, warm-up + cosine.
    config.optimizer = ml_collections.ConfigDict()
    config.optimizer.name = "adamw"
    config.optimizer.lr = 5e-4  # at batch lr_base_batch; scaled linearly with batch_size
    config.optimizer.lr_base_batch = 512  # 0: no scaling
    config.optimizer.b1 = 0.9  # b1, b2, eps: AdamW's
    config.optimizer.b2 = 0.999
    config.optimizer.eps = 1e-8
    config.optimizer.momentum = 0.9  # sgd's: in [0, 1), 0 = plain SGD
    config.optimizer.nesterov = False  # sgd's
    config.optimizer.momentum_dtype = "float32"  # sgd's buffer: "float32" | "bfloat16"
    config.optimizer.weight_decay = 0.05  # 0 = off
    # Which parameters decay (smlp_jax.train.optim): "timm" (not 1-D, not *bias) or
    # "kernels" (big_vision); no_decay: regexes over '/'-joined parameter paths.
    config.optimizer.decay_rule = "timm"
    config.optimizer.no_decay = ()
    # Fine-tuning (smlp_jax.train.optim), all off by default; patterns are full matches over
    # '/'-joined parameter paths ("stages/0/1/smlp/fuse/kernel") and each must match one.
    # layer_decay: BEiT/timm layer-wise lr decay, lr x decay ** (depth_max - depth) with the
    # depth from the family's stem / blocks / head (smlp_jax.models.layer_depth); in (0, 1],
    # None or 1.0 = off. lr_mults: ((regex, multiplier), ...), first match wins, times the
    # layer decay (big_vision). freeze: regexes of parameters that never change and get no
    # optimiser state (big_vision's schedule=None), e.g. ("(?!head/).*",): the head alone.
    config.optimizer.layer_decay = config_dict.placeholder(float)
    config.optimizer.lr_mults = ()
    config.optimizer.freeze = ()
    # True: the train step normalises with the BatchNorm running statistics (eval mode) and
    # leaves them unchanged, as a linear probe of a frozen BatchNorm backbone needs; drop
    # path and the other train-mode behaviour stay. A model without BatchNorm refuses it.
    config.freeze_batch_stats = False
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
    config.keep_checkpoints = 3  # plus the best by best_metric (below)
    config.async_checkpoint = True
    # JAX's persistent compilation cache (smlp_jax.train.compilation_cache): a second run
    # loads the compiled steps. "default" = $JAX_COMPILATION_CACHE_DIR if set, else
    # $XDG_CACHE_HOME/smlp_jax/jax_cache (~/.cache/...), resolved at run time; "" = off.
    config.compilation_cache_dir = "default"
    # A jax.profiler trace of the steps "start:stop" (after `start` updates, until `stop`;
    # "" = none) into WORKDIR/profile: TensorBoard's profile plugin (xplane.pb) and
    # Perfetto / chrome://tracing (perfetto_trace.json.gz), both read offline.
    config.profile = ""
    # Weights & Biases (smlp_jax.train.wandb_writer; `pip install wandb`, never required):
    # metrics.jsonl's scalars also go to a W&B run whose id the run record keeps, so a
    # resume continues that run. mode: "" (wandb's default / $WANDB_MODE), "online",
    # "offline"; name: "" = the workdir's name; entity: "" = your default.
    config.wandb = ml_collections.ConfigDict()
    config.wandb.enabled = False
    config.wandb.project = "smlp_jax"
    config.wandb.entity = ""
    config.wandb.name = ""
    config.wandb.mode = ""

    # Resuming a workdir whose run record (smlp_jax.train.run_record) has other settings:
    # keys (comma-separated, or "all") that may differ from it, e.g. "total_steps,optimizer.lr".
    # Logging, eval, checkpoint frequency, workers and device layout may always change.
    config.allow_changes = ""

    # Start from weights: our workdir/checkpoint dir, or an official file (.pth/.npz).
    config.init_from = ""
    config.init_resample_to_grid = False  # init_from made for another image size (ours or official)
    # A head whose shape fits: "keep" loads init_from's; "fresh" keeps the model's own head
    # initialisation (vit_jax restarts the classifier on every transfer). Another class
    # count always starts fresh.
    config.init_head = "keep"

    # --mode=probe (smlp_jax.train.probe): ridge regression on frozen pooled features,
    # fitted on `train_split` (eval transform), scored on input.eval_split.
    config.probe = ml_collections.ConfigDict()
    config.probe.train_split = "train"
    config.probe.shots = (1, 5, 10, 25)  # examples a class; "full" (all) is always run
    config.probe.seeds = 3  # draws per shot count, averaged
    config.probe.l2_reg = 2.0**10  # big_vision's fewshot default

    # Evaluators (smlp_jax.train.evaluators; docs/training.md#evaluators): name -> kind, data,
    # how often and preprocessing; each logs as <name>/top1, ... "eval" is the run's own eval
    # split every eval_every steps. Add one in a config file, e.g. config.evals.a =
    # evaluators.evaluator("imagenet_a", dataset="folder:/data/imagenet-a").
    config.evals = evaluators.default_evals()
    config.eval_only = ""  # --mode=eval: the evaluators to run, comma-separated ("" = all)
    config.best_metric = "eval/top1"  # the checkpoint kept as best: any evaluator's metric
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


# Blocks that several family files share. Each sets only the keys it names, to the values
# its arguments give; the family file passes its own recipe's values (its docstring maps
# each official setting to the key) and sets what is its alone around the call.


def variant_config(family: str, arg: str, variants) -> ml_collections.ConfigDict:
    """`base_config()` for the variant `arg` of `configs/<family>.py`, which the family then
    sets to its recipe; a ValueError naming the variants (and `demo`, which the caller
    handles) when `arg` is none of them."""
    if arg not in variants:
        raise ValueError(
            f"configs/{family}.py: unknown variant {arg!r}; use {', '.join(variants)} or demo."
        )
    return base_config()


def demo_training(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """The `demo` run of every family, for the tiny model the family file sets (`model`,
    `model_kwargs`): the 5,000 MNIST digits bundled with the package (dataset "demo",
    `smlp_jax.data`) at 32x32 with the "simple" input preset (2-px translations, no flip,
    RandAugment, erasing or mixup, mean = std = 0.5, no eval crop); 400 steps at batch 64
    (evaluating 200 at a time) of `base_config()`'s AdamW at lr 2e-3, used as given, with 20
    warm-up steps then cosine; a log line every 50 steps, evaluation and a checkpoint at
    steps 200 and 400; the decoded digits kept in memory (12 MB: decoding them costs more
    than the step, `input.cache_decoded_mb`). Ours, not an official recipe: chosen to train
    on a 2-core CPU in about a minute. The family sets what differs after the call, then
    locks."""
    config.dataset = "demo"
    config.image_size = 32
    config.input = data.default_input_config("simple")
    config.input.cache_decoded_mb = 64
    config.batch_size = 64
    config.eval_batch_size = 200
    config.total_steps = 400
    config.optimizer.lr = 2e-3
    config.optimizer.lr_base_batch = 0
    config.optimizer.warmup_steps = 20
    config.log_every = 50
    config.eval_every = 200
    config.checkpoint_every = 200
    return config


def imagenet(config: ml_collections.ConfigDict, batch_size: int, like: str | None = None) -> None:
    """ImageNet-1k from TFDS (dataset "imagenet2012", under `data_dir`) at the global train
    batch `batch_size` (the official GPU count x the per-GPU batch), with the image size,
    mean / std, crop_pct and eval filter of the model's pretrained configuration
    (`input_from_pretrained`; `like` as there). The train transform stays the
    "imagenet" input preset of `base_config()`: timm's / DeiT's RandomResizedCrop
    (0.08, 1), flip 0.5, RandAugment rand-m9-mstd0.5-inc1, bicubic, random erasing 0.25
    ("pixel", one box); the eval batch stays 1024."""
    config.dataset = "imagenet2012"
    input_from_pretrained(config, like)
    config.batch_size = batch_size


def adamw(
    config: ml_collections.ConfigDict,
    *,
    lr: float,
    lr_base_batch: int,
    weight_decay: float,
    decay_rule: str = "timm",
    eps: float = 1e-8,
) -> None:
    """AdamW with betas (0.9, 0.999) (torch's and `base_config()`'s): the peak `lr` at batch
    `lr_base_batch`, scaled linearly to `batch_size` (0: used as given, the official
    scripts that do not scale `--lr`); `weight_decay` on the parameters `decay_rule` picks
    ("timm": not 1-D and not `*bias`, timm's create_optimizer and Swin's set_weight_decay;
    "kernels": big_vision's '.*/kernel$'; "all": torch's AdamW over model.parameters());
    `eps` (torch's default 1e-8)."""
    config.optimizer.lr = lr
    config.optimizer.lr_base_batch = lr_base_batch
    config.optimizer.eps = eps
    config.optimizer.weight_decay = weight_decay
    config.optimizer.decay_rule = decay_rule


def sgd(
    config: ml_collections.ConfigDict,
    *,
    lr: float,
    lr_base_batch: int,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    momentum_dtype: str = "float32",
) -> None:
    """SGD with heavy-ball momentum (optimizer.name "sgd": torch's `optim.SGD` and
    `optax.sgd` alike, no Nesterov): the peak `lr` at batch `lr_base_batch` (0: used as
    given), `momentum`, L2 `weight_decay` added to the gradient of the parameters
    `decay_rule` picks (0: none, as vit_jax fine-tunes), the momentum buffer in
    `momentum_dtype` (vit_jax keeps it in "bfloat16")."""
    config.optimizer.name = "sgd"
    config.optimizer.lr = lr
    config.optimizer.lr_base_batch = lr_base_batch
    config.optimizer.momentum = momentum
    config.optimizer.weight_decay = weight_decay
    config.optimizer.momentum_dtype = momentum_dtype


def head_only(config: ml_collections.ConfigDict) -> None:
    """Trains the classifier of `config.model` alone: every other parameter is frozen
    (optimizer.freeze: no gradient, no optimiser state, bit-identical). BatchNorm statistics
    of the frozen layers still update in train mode (PyTorch's `requires_grad=False` does
    the same); a model with LayerNorm only (Mixer) keeps its features exactly."""
    head = models.pretrained_cfg(config.model).classifier
    config.optimizer.freeze = (f"(?!{head}/).*",)


CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)


def cifar_transfer(
    config: ml_collections.ConfigDict, *, backbone: str, frozen: tuple[str, ...]
) -> None:
    """The CIFAR-10 transfer script Vision Permutator and DynaMixer ship (`transfer_learning.py`,
    T2T-ViT's, run with `--transfer-learning True --transfer-model <weights>`), its defaults:

    - `--dataset cifar10` (`cifar100` the other choice), torchvision's train / test sets ->
      dataset "cifar10", input.train_split "train", eval_split "test".
    - `Resize(224)`, `RandomCrop(224, padding=28)`, `RandomHorizontalFlip()`, CIFAR's
      Normalize -> image_size 224, the "simple" input preset (resize, then a random
      translation by up to `pad` 28 px filled with black, flip `hflip` 0.5), bilinear,
      mean / std CIFAR_MEAN / CIFAR_STD; eval `Resize(224)` -> crop_pct 1.0, bilinear.
    - `--b 128`, test batch 100 -> batch_size 128, eval_batch_size 100.
    - `optim.SGD(groups, lr=0.01, momentum=0.9, weight_decay=5e-4)` over every parameter of
      its groups -> optimizer "sgd", lr 0.01 (lr_base_batch 0), momentum 0.9,
      weight_decay 5e-4, decay_rule "all".
    - groups: the backbone (the regex `backbone` here) at `--transfer-ratio 0.01` x lr, the
      head at lr -> optimizer.lr_mults ((backbone, 0.01),); the parameters in no group (the
      regexes `frozen`) are never updated -> optimizer.freeze.
    - `CosineAnnealingLR(T_max=60, eta_min=2e-4)` stepped after each of the 60 epochs ->
      timm_cosine over 60 epochs, min_lr 2e-4, no warm-up, unit "epoch", lag 0 (epoch e
      at the closed form's value for e).
    - `--drop-path 0.1`, CrossEntropyLoss -> model_kwargs.drop_path_rate 0.1, softmax_xent,
      no smoothing or mixup; the model evaluated after every epoch (390 updates).

    Differences: (1) torch's `eta_min` is absolute in every group, so the backbone's lr
    there rises from 1e-4 to 2e-4 over the run, while `lr_mults` scales the whole schedule
    here (1e-4 down to 2e-6): no key yet gives a group its own schedule floor; (2) the
    DataLoader's last partial batch of each epoch (80 images) is dropped here; (3) the
    weights are loaded from the file's EMA copy there (`use_ema=True`) when it has one."""
    config.dataset = "cifar10"
    config.image_size = 224
    config.input = data.default_input_config("simple")
    config.input.train_split, config.input.eval_split = "train", "test"
    config.input.pad, config.input.hflip, config.input.crop_pct = 28, 0.5, 1.0
    config.input.interpolation = config.input.eval_interpolation = "bilinear"
    config.input.mean, config.input.std = CIFAR_MEAN, CIFAR_STD
    config.batch_size, config.eval_batch_size = 128, 100
    sgd(config, lr=0.01, lr_base_batch=0, weight_decay=5e-4)
    config.optimizer.decay_rule = "all"
    config.optimizer.lr_mults = ((backbone, 0.01),)
    config.optimizer.freeze = frozen
    timm_cosine(
        config, epochs=60, warmup_epochs=0, warmup_lr=2e-4, min_lr=2e-4, unit="epoch", lag=0
    )
    config.model_kwargs.drop_path_rate = 0.1
    every_epoch(config, 50_000 // 128)


def timm_cosine(
    config: ml_collections.ConfigDict,
    *,
    epochs: int,
    warmup_epochs: int,
    warmup_lr: float,
    min_lr: float,
    unit: str,
    lag: int,
    cooldown_epochs: int = 0,
) -> None:
    """timm's CosineLRScheduler as `--sched cosine` builds it (t_initial `epochs`, warmup_t
    `warmup_epochs` from `warmup_lr`, lr_min `min_lr`, warmup_prefix False, one cycle):
    optimizer.schedule "timm_cosine". `unit` "epoch" (the loop steps it once an epoch) or
    "step" (per update, Swin's `step_update`); `lag` 1 where the loop steps it with the
    finished epoch / update, 0 with the next one. The run is `epochs` long
    (total_epochs), or, with `cooldown_epochs` (timm's create_scheduler adds them and the
    loop runs them at `min_lr`), `epochs + cooldown_epochs` with the cosine cycle ending
    at `epochs` (cycle_epochs)."""
    config.optimizer.schedule = "timm_cosine"
    config.optimizer.schedule_unit = unit
    config.optimizer.schedule_lag = lag
    config.optimizer.warmup_prefix = False
    if cooldown_epochs:
        config.optimizer.cycle_epochs = float(epochs)
    config.optimizer.warmup_epochs = float(warmup_epochs)
    config.optimizer.warmup_init_lr = warmup_lr
    config.optimizer.min_lr = min_lr
    config.total_epochs = float(epochs + cooldown_epochs)


def timm_mixup(
    config: ml_collections.ConfigDict,
    *,
    mixup: float,
    cutmix: float,
    smoothing: float,
    prob: float = 1.0,
    switch_prob: float = 0.5,
) -> None:
    """timm's Mixup in batch mode (mixup.mode stays "timm"): the `--mixup` and `--cutmix` alphas,
    `--mixup-prob` `prob` and `--mixup-switch-prob` `switch_prob` (timm's train.py
    defaults 1.0 and 0.5), `--smoothing` folded into the mixed targets
    (mixup.label_smoothing), and SoftTargetCrossEntropy on them (loss "softmax_xent")."""
    config.loss = "softmax_xent"
    config.mixup.mixup_alpha = mixup
    config.mixup.cutmix_alpha = cutmix
    config.mixup.switch_prob = switch_prob
    config.mixup.prob = prob
    config.mixup.label_smoothing = smoothing


def every_epoch(config: ml_collections.ConfigDict, steps: int) -> None:
    """Evaluates and checkpoints once an official epoch: every `steps` updates (the train
    split through the official sampler at the official batch, with drop_last)."""
    config.eval_every = steps
    config.checkpoint_every = steps
