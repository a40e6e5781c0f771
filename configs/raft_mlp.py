r"""RaftMLP on ImageNet-1k with the official recipe, and a `demo` on the offline digits.

Variants: `s`, `m`, `l`. The recipe is okojoalg/raft-mlp's
`configs/settings/imagenet-raft-mlp-cross-mlp-emb-{s,m,l}.yaml` (the three differ only
in widths) with `configs/config.yaml`, run by its own PyTorch + ignite loop
(`libs/train.py`; no timm). Each official setting and the key that holds it:

- batch 2048 (global, split over the processes) -> batch_size 2048.
- `optim.AdamW(model.parameters(), lr=0.002, weight_decay=0.05)`: torch's betas and eps,
  every parameter decayed, lr not scaled -> optimizer.lr 2e-3 (lr_base_batch 2048:
  unscaled at this batch), weight_decay 0.05, decay_rule "all".
- per update (ignite, at ITERATION_STARTED): linear from 0 to lr over 5 epochs, then
  cosine from lr to `end_lr` 1e-5 over the remaining 300 (305 in all); the first update
  at 0 -> optimizer.schedule "cosine" (optax's warm-up cosine computes the same),
  warmup_epochs 5, warmup_init_lr 0, min_lr 1e-5, total_epochs 305.
- label smoothing 0.1 (a * mean(-log p) + (1 - a) * NLL, timm's
  LabelSmoothingCrossEntropy) -> loss "softmax_xent", mixup.label_smoothing 0.1.
- `mixup_alpha 0.8`, and CutMix built with `cutmix_alpha=mixup_alpha` (so 0.8, not the
  yaml's 1.0) -> mixup.mixup_alpha 0.8, cutmix_alpha 0.8.
- drop path 0.1 on every block -> model_kwargs.drop_path_rate 0.1.
- Resize/crop with torchvision's default bilinear filter, train and eval; eval
  Resize(256) + CenterCrop(224) -> input.interpolation "bilinear"; crop_pct 0.875,
  eval_interpolation "bilinear" from the model's pretrained configuration
  (`smlp_jax.models.pretrained_cfg`).
- `cutout_p 0.25` -> input.re_prob 0.25.
- no gradient clipping, no EMA, fp32, seed 42 -> grad_clip 0, ema.decay 0, seed 42.

Remaining differences: the official augmentation pipeline has no implementation here,
so ours is timm's in its place: (1) train crop Resize(256) + RandomCrop(224) there,
RandomResizedCrop (0.08, 1) here; (2) ColorJitter(0.4, 0.4, 0.4) and the
`randaugment==1.0.2` package (2 of its 15 ops, each at p 0.5 and a random level 1-9)
there, timm's `rand-m9-mstd0.5-inc1` here; (3) Cutout (zeros before normalisation, its
size drawn once) there, random erasing in 'pixel' mode here; (4) Mixup and then CutMix
on every batch, with `torch.randperm` partners and the box's lambda not corrected,
there; one or the other (switch 0.5) with the reversed batch here.

    python main.py --config=configs/raft_mlp.py:s --workdir=workdirs/raftmlp_s \
        --config.data_dir=/data/tfds

The paper reports top-1 79.4 / 80.4 / 80.8 (S / M / L); these configs have not been run
for 305 epochs here (no accelerator).

`finetune_<variant>` (`finetune_s`, `finetune_m`, `finetune_l`): the repository's transfer
setting `configs/settings/finetune/cifar10-raft-mlp-cross-mlp-emb-{s,m,l}.yaml` (okojoalg/
raft-mlp @ 6060d5d, run as `python run.py settings=finetune/cifar10-raft-mlp-cross-mlp-emb-s.yaml`
by the same `libs/train.py`; `finetune_config` below). Each official setting and its key:

- `pretrained_from: .../imagenet-raft-mlp-cross-mlp-emb-s/last_model_0.pt`,
  `pretrained_image_size: 224` -> init_from "last_model_0.pt" (the file name of the
  model's pretrained configuration; give `--config.init_from=PATH`), image_size 224: the
  same grid, nothing to resample.
- `initialize` pops `classifier.weight` / `classifier.bias` before `load_state_dict`, so the
  head always starts from `nn.Linear`'s own initialisation -> init_head "fresh" (ours is
  PyTorch's default Linear init, `head_init` None).
- `layers`, `token_expansion_factor 2`, `channel_expansion_factor 4`, `shortcut False`,
  `token_mixing_type ser_pm`, `embedding_type emb_cross_mlp`, `dropout 0` -> the registered
  `raftmlp_{s,m,l}` (model_kwargs); `drop_path_rate: 0.` -> model_kwargs.drop_path_rate 0.
- `dataset_name: cifar10`, torchvision's train / test sets -> dataset "cifar10",
  input.train_split "train", eval_split "test".
- CIFARGetter at `size=224` (a pretrained run): `Pad(4)`, `RandomCrop(32)`, `Resize(224)`,
  `RandomHorizontalFlip()`, CIFAR-10's Normalize -> the "simple" input preset at 224 px
  (resize, then a translation by up to 4 x 7 = 28 px filled with black, flip 0.5),
  bilinear, mean / std `common.CIFAR_MEAN` / `CIFAR_STD`; eval `Resize(224)` -> crop_pct
  1.0, eval_interpolation "bilinear".
- `color_jitter: 0.4` and `RandAugment()` (the `randaugment` package) -> as in the ImageNet
  recipe above, timm's `rand-m9-mstd0.5-inc1` in their place (input.randaugment);
  `cutout_p: 0.` -> input.re_prob 0.
- `batch_size: 256` (drop_last), eval batch 2 x 256 -> batch_size 256, eval_batch_size 512.
- `optim.AdamW(lr=1e-4, weight_decay=1e-4)` on every parameter -> optimizer.lr 1e-4
  (lr_base_batch 0), weight_decay 1e-4, decay_rule "all".
- `num_warmup_epochs: 10`, `num_epochs: 50`, `end_lr: 1e-5`: per update, linear from 0 to
  lr over 10 epochs, then cosine to 1e-5 over the other 40 -> schedule "cosine",
  warmup_epochs 10, warmup_init_lr 0, min_lr 1e-5, total_epochs 50.
- `label_smoothing_alpha: 0.1`, `mixup_alpha: 0.8` (CutMix again at `mixup_alpha`, not the
  yaml's `cutmix_alpha: 1.0`), `mixup_p`/`cutmix_p` 1 -> mixup.label_smoothing 0.1,
  mixup_alpha 0.8, cutmix_alpha 0.8.
- `validate_every: 1` (epochs), 195 updates an epoch -> eval_every 195 (checkpoint_every
  too, where the official saves every 1000 iterations); seed 42 (`configs/config.yaml`);
  `with_amp: False` -> float32.

Remaining differences: those of the ImageNet recipe above (RandAugment and colour jitter,
Mixup then CutMix on every batch there), and the translation: 4-px steps of the 32-px image
there, any whole pixel up to 28 at 224 here. CIFAR-100
(`cifar100-raft-mlp-cross-mlp-emb-*.yaml`, the same settings): add
`--config.dataset=cifar100 --config.input.mean='(0.507, 0.487, 0.441)'
--config.input.std='(0.267, 0.256, 0.276)'` (its CIFARGetter's normalisation). Not run here
(no accelerator; the repository publishes no transfer results).

    python main.py --config=configs/raft_mlp.py:finetune_s --workdir=workdirs/raftmlp_s_cifar10 \
        --config.init_from=last_model_0.pt --config.data_dir=/data/tfds

Not offered: the Flowers-102, Stanford Cars, iNaturalist 2018 and 2019 settings
(`{flowers102,cars,inat18,inat19}-raft-mlp-cross-mlp-emb-*.yaml`: the same optimiser,
schedule and mixing as CIFAR). Their NormalGetter trains on `RandomResizedCrop((256, 224),
scale=(0.8, 1.0))` and evaluates `Resize((256, 224))`: 256 x 224 images, not square, fed to
the model built for 224 x 224, whose levels resize each token grid bicubically to the
trained one (64 x 56 -> 56 x 56 at the first level) and back. Our model computes that resize
(`resize_to_trained_grid=True`), but our input pipeline makes square images of
`image_size` only, so the official input cannot be reproduced; and at a square size other
than 224 `init_resample_to_grid` refuses RaftMLP (its token-mixing weights are tied to the
trained grid, which the official code keeps by resizing activations, not weights).

`demo`: a tiny RaftMLP (three levels, one block each, 32x32) on the 5,000 MNIST digits
bundled with the package, plain AdamW, no mixup:

    python main.py --config=configs/raft_mlp.py:demo --workdir=workdirs/raftmlp_demo
"""

from __future__ import annotations

from configs import common
from smlp_jax import data, models

VARIANTS = ("s", "m", "l")


def get_config(arg: str = "s"):
    if arg == "demo":
        return demo_config()
    if arg.startswith("finetune_"):
        return finetune_config(arg.removeprefix("finetune_"))
    config = common.variant_config("raft_mlp", arg, VARIANTS)
    config.model = f"raftmlp_{arg}"
    config.model_kwargs.drop_path_rate = 0.1
    common.imagenet(config, batch_size=2048)  # image_size 224, crop_pct 0.875, bilinear eval
    config.total_epochs = 305.0
    # lr 2e-3 as given: unscaled at this batch.
    common.adamw(config, lr=2e-3, lr_base_batch=2048, weight_decay=0.05, decay_rule="all")
    config.optimizer.schedule = "cosine"
    config.optimizer.warmup_epochs = 5.0
    config.optimizer.warmup_init_lr = 0.0
    config.optimizer.min_lr = 1e-5
    config.input.interpolation = "bilinear"
    config.seed = 42
    # libs/train.py passes mixup_alpha as cutmix_alpha.
    common.timm_mixup(config, mixup=0.8, cutmix=0.8, smoothing=0.1)
    common.every_epoch(config, 625)  # at batch 2048
    config.lock()
    return common.with_model_defaults(config)


def finetune_config(arg: str):
    """The repository's CIFAR-10 transfer of the ImageNet `arg` weights (module docstring)."""
    config = common.variant_config("raft_mlp", arg, VARIANTS)
    config.model = f"raftmlp_{arg}"
    config.model_kwargs.drop_path_rate = 0.0
    config.init_from = models.pretrained_cfg(config.model).file_name  # last_model_0.pt
    config.init_head = "fresh"  # initialize() pops the classifier before loading
    config.dataset, config.image_size, config.seed = "cifar10", 224, 42
    config.input = data.default_input_config("simple")
    config.input.train_split, config.input.eval_split = "train", "test"
    config.input.pad, config.input.hflip, config.input.crop_pct = 28, 0.5, 1.0
    config.input.randaugment = "rand-m9-mstd0.5-inc1"
    config.input.interpolation = config.input.eval_interpolation = "bilinear"
    config.input.mean, config.input.std = common.CIFAR_MEAN, common.CIFAR_STD
    config.batch_size, config.eval_batch_size = 256, 512
    common.adamw(config, lr=1e-4, lr_base_batch=0, weight_decay=1e-4, decay_rule="all")
    config.optimizer.schedule, config.optimizer.warmup_epochs = "cosine", 10.0
    config.optimizer.warmup_init_lr, config.optimizer.min_lr = 0.0, 1e-5
    config.total_epochs = 50.0
    common.timm_mixup(config, mixup=0.8, cutmix=0.8, smoothing=0.1)  # cutmix = mixup_alpha
    common.every_epoch(config, 50_000 // 256)
    config.lock()
    return common.with_model_defaults(config)


def demo_config():
    config = common.base_config()
    config.model = "raftmlp_s"
    config.model_kwargs.dims = (16, 32, 48)
    config.model_kwargs.depths = (1, 1, 1)
    config.model_kwargs.patch_sizes = (4, 2, 2)
    config.model_kwargs.embedding_kernels = ((4, 8), (2, 4), (2,))
    config.model_kwargs.drop_path_rate = 0.0
    common.demo_training(config)
    config.grad_clip = 5.0
    config.lock()
    return common.with_model_defaults(config)
