"""smlp_jax: JAX/Flax (nnx) attention-free vision models, centred on sMLPNet.

import smlp_jax
model = smlp_jax.create_model("smlpnet_t", num_classes=10, image_size=224)
logits = model(images)  # (B, 224, 224, 3) float32 NHWC -> (B, 10)
"""

from smlp_jax.convert import WeightsMismatchError, load_pretrained
from smlp_jax.errors import UserError
from smlp_jax.factory import create_model
from smlp_jax.hub import push_to_hub, save_pretrained
from smlp_jax.models import UnknownModelError, list_models
from smlp_jax.version import __version__

__all__ = [
    "UnknownModelError",
    "UserError",
    "WeightsMismatchError",
    "create_model",
    "list_models",
    "load_pretrained",
    "push_to_hub",
    "save_pretrained",
    "__version__",
]
