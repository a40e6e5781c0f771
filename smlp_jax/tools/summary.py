"""Model summary: parameters per stage and in total, multiply-accumulates (MACs), and the
train step's model FLOPs.

    python -m smlp_jax.tools.summary smlpnet_t [--image-size 224] [--num-classes 1000]

MACs are counted on the model's eval-mode forward as XLA receives it (the jaxpr traced
for one `(1, S, S, 3)` image, nothing compiled; the rules are `smlp_jax.models.macs`'s:
matmuls and convolutions, the papers' convention). The train step's model FLOPs are
2 x the MACs of value_and_grad of the cross-entropy in train mode, per image: the count
the trainer's MFU uses (`smlp_jax.train.mfu`). XLA's own cost analysis
(`Lowered.cost_analysis()` on this backend), which also counts every elementwise op, is
printed beside them for reference, for the forward and for the train step.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections import defaultdict

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from smlp_jax.errors import UserError
from smlp_jax.factory import create_model
from smlp_jax.models.macs import count_macs, model_flops
from smlp_jax.tools.errors import ToolInputError


@dataclasses.dataclass
class Summary:
    name: str
    image_size: int
    num_classes: int
    params_by_group: dict[str, int]
    total_params: int
    macs: int  # matmul + convolution multiply-accumulates, batch 1
    xla_flops: float | None  # XLA cost analysis of the whole forward (all ops), batch 1
    xla_train_flops: float | None = None  # forward + backward, train mode, batch 1
    train_flops: float | None = None  # model FLOPs (2 x MACs) of the same, batch 1

    def table(self) -> str:
        width = max(len(g) for g in self.params_by_group)
        lines = [f"{self.name} at {self.image_size}x{self.image_size}, {self.num_classes} classes"]
        for group, n in self.params_by_group.items():
            lines.append(f"  {group:<{width}}  {n:>14,}")
        lines.append(f"  {'total':<{width}}  {self.total_params:>14,}")
        lines.append(f"MACs (matmuls + convolutions): {self.macs / 1e9:.3f} G")
        if self.train_flops is not None:
            lines.append(f"train step model FLOPs (MFU):  {self.train_flops / 1e9:.3f} G per image")
        if self.xla_flops is not None:
            lines.append(f"XLA cost analysis, all ops:    {self.xla_flops / 1e9:.3f} GFLOPs")
        if self.xla_train_flops is not None:
            lines.append(
                f"  train step (fwd + bwd):      {self.xla_train_flops / 1e9:.3f} GFLOPs per image"
            )
        return "\n".join(lines)


def _keys(path: tuple) -> list[str]:
    """The module path of a parameter (its attribute names and list indices)."""
    return [str(p) for p in path[:-1]] or [str(path[-1])]


def _is_index(keys: list[str], i: int) -> bool:
    return len(keys) > i and keys[i].isdigit()


def _group(keys: list[str], stage_lists: set[str]) -> str:
    """The top-level group a parameter belongs to, for the per-stage table.

    `stages.<i>` and its stem `stems.<i>` form "stage <i>"; any other list that holds
    lists of blocks (`stage_lists`, e.g. DynaMixer's official `network`) groups by its
    index (`network.<i>`); a flat list of blocks (`blocks.<j>...`) is one group.
    """
    top = keys[0]
    if _is_index(keys, 1):
        if top in ("stages", "stems"):
            return f"stage {keys[1]}"
        if top in stage_lists:
            return f"{top}.{keys[1]}"
    return top


def _natural(key: str) -> tuple:
    return tuple(int(t) if t.isdigit() else t for t in key.replace(".", " ").split())


def parameter_groups(model: nnx.Module) -> dict[str, int]:
    """Parameter counts per top-level group (see `_group`), in natural order."""
    flat = [(_keys(path), leaf) for path, leaf in nnx.to_flat_state(nnx.state(model, nnx.Param))]
    stage_lists = {keys[0] for keys, _ in flat if _is_index(keys, 1) and _is_index(keys, 2)}
    by_group: dict[str, int] = defaultdict(int)
    for keys, leaf in flat:
        by_group[_group(keys, stage_lists)] += int(np.prod(leaf.shape))
    return {k: by_group[k] for k in sorted(by_group, key=_natural)}


def _forward(graphdef):
    def forward(state, x):
        return nnx.merge(graphdef, state)(x)

    return forward


def _xla_flops(fn, *args) -> float | None:
    cost = jax.jit(fn).lower(*args).cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    return float(cost.get("flops", float("nan"))) if cost else None


def _train_loss(train_graphdef):
    """The softmax cross-entropy of the model in train mode (label 0), for its gradient."""

    def loss(params, rest, x):
        logits = nnx.merge(train_graphdef, params, rest, copy=True)(x)
        return -jax.nn.log_softmax(logits.astype(jnp.float32))[:, 0].mean()

    return loss


def summarize(
    name: str, *, image_size: int = 224, num_classes: int = 1000, xla_cost: bool = True, **kw
) -> Summary:
    """Counts `name`'s parameters (per top-level group) and its batch-1 forward MACs. A
    name, size or hyperparameter the model refuses is a `UserError`."""
    try:
        model = nnx.eval_shape(
            lambda: create_model(name, image_size=image_size, num_classes=num_classes, **kw)
        )
    except (TypeError, ValueError) as err:  # e.g. an image size the grid does not divide
        if isinstance(err, UserError):
            raise
        raise ToolInputError(str(err)) from None
    train_graphdef, *train_state = nnx.split(model, nnx.Param, ...)
    model.eval()
    groups = parameter_groups(model)
    graphdef, state = nnx.split(model)
    forward = _forward(graphdef)
    image = jax.ShapeDtypeStruct((1, image_size, image_size, 3), jnp.float32)
    macs = count_macs(jax.make_jaxpr(forward)(state, image).jaxpr)
    train_step = jax.grad(_train_loss(train_graphdef))
    train_flops = model_flops(train_step, *train_state, image)
    flops = xla_train_flops = None
    if xla_cost:
        flops = _xla_flops(forward, state, image)
        xla_train_flops = _xla_flops(train_step, *train_state, image)
    params = sum(groups.values())
    return Summary(
        name, image_size, num_classes, groups, params, macs, flops, xla_train_flops, train_flops
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="+", help="registered names (smlp_jax.list_models())")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--num-classes", type=int, default=1000)
    parser.add_argument("--no-xla", action="store_true", help="skip XLA's cost analysis")
    args = parser.parse_args(argv)
    for name in args.models:
        try:
            summary = summarize(
                name,
                image_size=args.image_size,
                num_classes=args.num_classes,
                xla_cost=not args.no_xla,
            )
        except UserError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        print(summary.table())
    return 0


if __name__ == "__main__":
    sys.exit(main())
