"""Model families (one file each) and the registry that names their variants.

Importing this package registers every family; add a family by writing its file
and importing it below.
"""

from smlp_jax.models import (
    as_mlp,  # noqa: F401  (registers asmlp_*)
    convmixer,  # noqa: F401  (registers convmixer_*)
    dynamixer,  # noqa: F401  (registers dynamixer_*)
    hire_mlp,  # noqa: F401  (registers hiremlp_*)
    mixer,  # noqa: F401  (registers mixer_*)
    permutator,  # noqa: F401  (registers vip_*)
    raft_mlp,  # noqa: F401  (registers raftmlp_*)
    smlpnet,  # noqa: F401  (registers smlpnet_*)
    sparse_mlp,  # noqa: F401  (registers sparse_mlp_*)
)
from smlp_jax.models.hparams import HyperparameterError
from smlp_jax.models.pretrained_cfgs import PretrainedCfg
from smlp_jax.models.registry import (
    ModelEntry,
    UnknownModelError,
    check_hyperparameters,
    family_of,
    get_entry,
    hyperparameter_ranges,
    hyperparameters,
    list_models,
    make_model,
    pretrained_cfg,
    register_model,
)

__all__ = [
    "HyperparameterError",
    "ModelEntry",
    "PretrainedCfg",
    "UnknownModelError",
    "check_hyperparameters",
    "family_of",
    "get_entry",
    "hyperparameter_ranges",
    "hyperparameters",
    "list_models",
    "make_model",
    "pretrained_cfg",
    "register_model",
]
