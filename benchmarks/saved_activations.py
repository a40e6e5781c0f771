"""What autodiff saves for the backward of a train step: bytes per image, by kind.

    python benchmarks/saved_activations.py --models smlpnet_t smlpnet_b mixer_b16 \\
        convmixer_768_32 --dtype bfloat16 --batch 2

Traced only (`jax.make_jaxpr` on abstract arrays: nothing allocated, nothing compiled), so
the full 224 models take seconds on a CPU. The model is built the way the trainer builds
it (`smlp_jax.create_model(..., dtype=...)`, split by `smlp_jax.train.state.split`, the
train-mode graph: BatchNorm on batch statistics, drop path at the model's default) and the
loss is the softmax cross-entropy of its logits on a batch of integer labels.
`jax.ad_checkpoint.saved_residuals` lists the residuals of that loss's VJP; the parameters
themselves ("from the argument params...") are left out (an optimiser reads them anyway),
everything else (the images, bf16 copies of the weights, activations) counts.

Bytes per image are the slope between the residuals at `--batch` and at twice it, so the
batch-independent part (e.g. the bf16 casts of the weights) is shown apart, not spread
over the images. Kinds group the residuals by what made them ("output of mul", "output of
erf", "from the argument images"), with their own per-image slope.

The models pick some ops' forms by the backend they are traced for (the depthwise
convolution, the XLA-CPU workarounds: `smlp_jax.models.backend`): `--platform gpu` counts
on this CPU what a GPU's train step saves; the default is JAX's default backend.
`--forms plain` traces the step as it was before the lean VJPs (the "before" column).

`residual_bytes(fn, *args)` is the import for others: benchmarks/peer_check.py's minimal
bytes per step.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import os
import sys
from collections.abc import Iterator
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx

try:  # public in some jax releases, private in others (0.10.2)
    from jax.ad_checkpoint import saved_residuals
except ImportError:
    from jax._src.ad_checkpoint import saved_residuals

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from throughput import TINY, TINY_IMAGE_SIZE  # noqa: E402

import smlp_jax  # noqa: E402
from smlp_jax.models import backend, remat  # noqa: E402
from smlp_jax.models.registry import get_entry  # noqa: E402
from smlp_jax.train import state as train_state  # noqa: E402

PARAMS_SOURCE = "from the argument params"
TOP_KINDS = 8


# Named `models.backend.forms`: "plain" is the step as it was before the lean VJPs
# (autodiff of the plain norm and GELU formulas, the sMLP fuse over a concat); "axial"
# the batched height mix, not yet measured on an accelerator; "remat" the default forms
# with every block recomputed in the backward (`models.remat`, config.remat's policy).
FORMS: dict[str, dict] = {
    "default": {},
    "plain": {"lean_vjp": False, "fuse_sum": False},
    "axial": {"axial_batched": True},
    "remat": {"remat": "nothing_saveable"},
}


@contextlib.contextmanager
def traced_for(platform: str | None, forms: str = "default") -> Iterator[None]:
    """A context in which the models trace as for `platform` ("cpu", "gpu", "tpu": the
    forms of their ops that backend computes; None: JAX's default backend), with the
    named `FORMS` on top."""
    named = dict(FORMS[forms])
    policy = named.pop("remat", "")
    with backend.forms(platform=platform, **named), remat.policy(policy):
        yield


def train_loss(
    name: str,
    *,
    image_size: int = 224,
    batch: int = 2,
    dtype: str = "bfloat16",
    num_classes: int = 1000,
    **overrides: Any,
) -> tuple[Any, tuple]:
    """`(loss_fn, args)`: the train-mode loss `loss_fn(params, rngs, model_state, images,
    labels)` of the registered model `name` built with `overrides`, and abstract
    arguments for it (`jax.ShapeDtypeStruct`s: trace it, do not call it)."""
    model = nnx.eval_shape(
        lambda: smlp_jax.create_model(
            name,
            num_classes=num_classes,
            image_size=image_size,
            rngs=0,
            dtype=train_state.compute_dtype(dtype),
            **overrides,
        )
    )
    model.train()
    graphdef, params, rngs, model_state = train_state.split(model)

    def loss_fn(params, rngs, model_state, images, labels):
        logits = nnx.merge(graphdef, params, rngs, model_state)(images).astype(jnp.float32)
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

    images = jax.ShapeDtypeStruct((batch, image_size, image_size, 3), jnp.float32)
    labels = jax.ShapeDtypeStruct((batch,), jnp.int32)
    return loss_fn, (params, rngs, model_state, images, labels)


def residuals(fn: Any, *args: Any) -> list[tuple[Any, str]]:
    """`saved_residuals(fn, *args)` less the parameters (an argument named `params`)."""
    return [(a, d) for a, d in saved_residuals(fn, *args) if not d.startswith(PARAMS_SOURCE)]


def nbytes(aval: Any) -> int:
    # `aval.dtype.itemsize`, not `jnp.dtype(...)`: a random key (a drop-path draw kept by a
    # rematted block) has an extended dtype, which jnp.dtype refuses.
    return int(aval.size) * aval.dtype.itemsize


def residual_bytes(fn: Any, *args: Any) -> int:
    """Bytes autodiff saves for the backward of `fn(*args)`, parameters left out."""
    return sum(nbytes(a) for a, _ in residuals(fn, *args))


def kind(description: str) -> str:
    """ "output of mul from file.py:12 (f)" -> "output of mul"; an argument's path is cut
    to its name ("from the argument images")."""
    if description.startswith("from the argument"):
        return description.split("[", 1)[0]
    return description.split(" from ", 1)[0]


def by_kind(saved: list[tuple[Any, str]]) -> collections.Counter:
    counts: collections.Counter = collections.Counter()
    for aval, description in saved:
        counts[kind(description)] += nbytes(aval)
    return counts


def profile(
    name: str, *, batch: int = 2, image_size: int = 224, dtype: str = "bfloat16", **overrides
) -> dict:
    """Saved bytes per image (slope from `batch` to 2 x `batch`), the batch-independent
    bytes, the count of saved arrays at `batch`, and the per-image bytes of each kind."""
    at = {}
    for b in (batch, 2 * batch):
        fn, args = train_loss(name, image_size=image_size, batch=b, dtype=dtype, **overrides)
        at[b] = residuals(fn, *args)
    small, large = by_kind(at[batch]), by_kind(at[2 * batch])
    per_image = {k: (large[k] - small[k]) / batch for k in large | small}
    total = sum(small.values())
    slope = sum(per_image.values())
    return {
        "model": name,
        "dtype": dtype,
        "image_size": image_size,
        "batch": batch,
        "arrays": len(at[batch]),
        "bytes": total,
        "bytes_per_image": slope,
        "fixed_bytes": total - slope * batch,
        "kinds_per_image": dict(sorted(per_image.items(), key=lambda kv: -kv[1])),
    }


def table(rows: list[dict]) -> str:
    lines = [
        "| model | dtype | px | traced for | saved MB/image | batch-independent MB "
        f"| saved arrays | top {TOP_KINDS} saved kinds (MB/image) |",
        "|---|---|--:|---|--:|--:|--:|---|",
    ]
    for r in rows:
        kinds = list(r["kinds_per_image"].items())[:TOP_KINDS]
        top = "; ".join(f"{k} {v / 1e6:.3g}" for k, v in kinds if v > 0)
        lines.append(
            f"| {r['model']} | {r['dtype']} | {r['image_size']} | {r['platform']} "
            f"| {r['bytes_per_image'] / 1e6:.4g} "
            f"| {r['fixed_bytes'] / 1e6:.4g} | {r['arrays']} | {top} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["smlpnet_t", "smlpnet_b"])
    p.add_argument("--dtype", default="bfloat16", choices=sorted(train_state.DTYPES))
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--image-size", type=int, default=None, help="default 224 (32 with --tiny)")
    p.add_argument("--tiny", action="store_true", help="throughput.py's tiny hyperparameters")
    p.add_argument(
        "--platform",
        choices=("cpu", "gpu", "tpu"),
        default=None,
        help="trace the models' forms for this backend (default: JAX's default backend)",
    )
    p.add_argument("--forms", choices=sorted(FORMS), default="default", help="named forms")
    args = p.parse_args(argv)
    size = args.image_size or (TINY_IMAGE_SIZE if args.tiny else 224)
    rows = []
    for name in args.models:
        overrides = TINY[get_entry(name).family] if args.tiny else {}
        with traced_for(args.platform, args.forms):
            row = profile(name, batch=args.batch, image_size=size, dtype=args.dtype, **overrides)
        platform = args.platform or jax.default_backend()
        rows.append(
            {**row, "platform": platform + ("" if args.forms == "default" else f", {args.forms}")}
        )
    print(table(rows))
    return rows


if __name__ == "__main__":
    main()
