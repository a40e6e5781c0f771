"""Mixture-of-experts MLP layers with top-k routing, written as GShard-style einsums.

A `MoeMlp` maps groups of tokens `(G, T, d) -> (G, T, d)`: a router scores each token
against E experts, each token goes to its k best experts (up to a per-expert capacity),
and the experts' outputs are summed back weighted by the router's gates. In Sparse-MLP
a group is one image (its T patches, or its channels for token mixing).

Routing (`top_k_routing`), as V-MoE (Riquelme et al. 2021), which Sparse-MLP follows:
* noisy gates: `gates = softmax(W x + eps)`, eps ~ N(0, (1/E)^2), in train mode only;
  the k largest gates pick the experts and weight their outputs (not renormalised);
* capacity: each expert takes at most `C = ceil(k T capacity_factor / E)` tokens of a
  group. Assignments are placed in priority order: every token's first choice before
  any second choice, and within a choice by token index. An assignment past C is
  dropped: that expert does not see the token (its residual path still carries it; with
  k = 2 its other expert may still serve it). Dropped assignments are counted
  (`dropped_tokens`).
* auxiliary load-balancing loss `0.5 (CV(importance)^2 + CV(load)^2)` over the batch:
  importance_e = sum over tokens of gate_e; load_e = sum over tokens of the probability
  that expert e is among the top k under fresh noise, `1 - Phi((eta_k - logit_e) / sigma)`
  with eta_k the k-th largest noisy logit and sigma = 1/E (CV = std/mean).

Dispatch and combine are one-hot tensors `(G, T, E, C)`; the experts see
`einsum('gtec,gtd->egcd')` with the expert axis leading, their weights are stacked
`(E, ...)`, so XLA shards the experts over an `expert` mesh axis (the all-to-all comes
from the einsums). `partition_rules()` gives the rule for the weights; when the mesh in
context has an `expert` axis the dispatched activations are constrained to it too. The
trainer does both: `--config.mesh.expert=4` applies the rule to the train state
(`smlp_jax.train.sharding`) and traces its steps under the mesh.

The trainer contract: each `MoeMlp` stores its latest auxiliary loss in an `AuxLoss`
variable; `total_aux_loss(model)` sums them after a forward, and the training loss is
`task_loss + aux_loss_weight * total_aux_loss(model)` (the paper's weight is 0.01).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx
from jax.sharding import PartitionSpec

from smlp_jax.models.initializers import next_key, torch_uniform_init
from smlp_jax.models.layers import Linear, gelu

Array = jax.Array
EXPERT_AXIS = "expert"


class AuxLoss(nnx.Variable):
    """The auxiliary load-balancing loss of a MoE layer's latest forward (a scalar)."""


class RoutingStats(nnx.Variable):
    """Counters of a MoE layer's latest forward (dropped assignments), not trained."""


class Routing(NamedTuple):
    dispatch: Array  # (G, T, E, C) 0/1: token t of group g sits in slot c of expert e
    combine: Array  # (G, T, E, C) the gate weights of the kept assignments
    aux_loss: Array  # () float32
    dropped: Array  # () int32, assignments beyond capacity
    gates: Array  # (G, T, E) softmax of the (noisy) logits


def expert_capacity(num_tokens: int, num_experts: int, k: int, capacity_factor: float) -> int:
    """Slots per expert and group: `ceil(k T capacity_factor / E)`, at least 1."""
    return max(1, math.ceil(k * num_tokens * capacity_factor / num_experts))


def top_k_routing(logits: Array, *, k: int, capacity: int, noise: Array | None = None) -> Routing:
    """Routes `(G, T, E)` router logits; `noise` (same shape, standard normal) or None.

    See the module docstring for the rule; the noise is scaled by 1/E here.
    """
    num_experts = logits.shape[-1]
    if not 1 <= k <= num_experts:
        raise ValueError(f"top-{k} routing needs 1 <= k <= num_experts={num_experts}")
    logits = logits.astype(jnp.float32)
    noise_std = 1.0 / num_experts
    noisy = logits if noise is None else logits + noise_std * noise
    gates = jax.nn.softmax(noisy, axis=-1)
    top_gates, top_index = jax.lax.top_k(gates, k)  # (G, T, k)
    choice = jax.nn.one_hot(top_index, num_experts, dtype=jnp.int32)  # (G, T, k, E)
    # Priority: choice-major, then token order -> a running count per expert.
    g, t = logits.shape[:2]
    ordered = jnp.swapaxes(choice, 1, 2).reshape(g, k * t, num_experts)
    position = jnp.cumsum(ordered, axis=1) - 1
    position = jnp.swapaxes(position.reshape(g, k, t, num_experts), 1, 2)  # (G, T, k, E)
    slot = jnp.sum(position * choice, axis=-1)  # (G, T, k)
    kept = (slot < capacity).astype(jnp.float32)
    # one_hot of slot >= capacity is all zeros, which drops the assignment.
    slot_one_hot = jax.nn.one_hot(slot, capacity, dtype=jnp.float32)  # (G, T, k, C)
    per_choice = choice.astype(jnp.float32)[..., None] * slot_one_hot[..., None, :]
    dispatch = jnp.sum(per_choice, axis=2)  # (G, T, E, C)
    combine = jnp.sum(per_choice * (top_gates * kept)[..., None, None], axis=2)
    dropped = (g * t * k - jnp.sum(kept)).astype(jnp.int32)
    return Routing(dispatch, combine, _balance_loss(logits, noisy, gates, k), dropped, gates)


def _cv_squared(x: Array) -> Array:
    return jnp.var(x) / (jnp.mean(x) ** 2 + 1e-10)


def _balance_loss(logits: Array, noisy: Array, gates: Array, k: int) -> Array:
    """V-MoE's `0.5 (importance loss + load loss)` over all tokens of the batch."""
    num_experts = logits.shape[-1]
    importance = jnp.sum(gates, axis=(0, 1))
    threshold = jax.lax.top_k(noisy, k)[0][..., -1:]  # the k-th largest noisy logit
    noise_std = 1.0 / num_experts
    p_selected = 1.0 - jax.scipy.stats.norm.cdf((threshold - logits) / noise_std)
    load = jnp.sum(p_selected, axis=(0, 1))
    return 0.5 * (_cv_squared(importance) + _cv_squared(load))


def _constrain_to_expert_axis(x: Array) -> Array:
    """Pins dim 0 (experts) to the mesh's `expert` axis when the mesh in context has one."""
    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty or EXPERT_AXIS not in mesh.axis_names:
        return x
    rest = (PartitionSpec.UNCONSTRAINED,) * (x.ndim - 1)
    return jax.lax.with_sharding_constraint(x, PartitionSpec(EXPERT_AXIS, *rest))


def partition_rules() -> list[tuple[str, PartitionSpec]]:
    """(regex on the '/'-joined nnx parameter path, PartitionSpec) for expert weights.

    Every stacked expert weight lives under an `experts` submodule with the expert index
    as dimension 0; the rule splits that dimension over the `expert` mesh axis (other
    parameters are left to the trainer's own rules).
    """
    return [(r"(^|/)experts/[^/]+$", PartitionSpec(EXPERT_AXIS))]


class Experts(nnx.Module):
    """E independent MLPs `d -> hidden -> d` (GELU), weights stacked on a leading axis.

    `(E, G, C, d) -> (E, G, C, d)`; each expert is initialised like a PyTorch Linear pair.
    """

    def __init__(
        self, num_experts: int, features: int, hidden: int, *, dtype=jnp.float32, rngs: nnx.Rngs
    ):
        init_in, init_hidden = torch_uniform_init(features), torch_uniform_init(hidden)
        e = num_experts
        self.fc1_kernel = nnx.Param(init_in(next_key(rngs.params), (e, features, hidden)))
        self.fc1_bias = nnx.Param(init_in(next_key(rngs.params), (e, hidden)))
        self.fc2_kernel = nnx.Param(init_hidden(next_key(rngs.params), (e, hidden, features)))
        self.fc2_bias = nnx.Param(init_hidden(next_key(rngs.params), (e, features)))
        self.dtype = dtype

    def __call__(self, x: Array) -> Array:
        d = self.dtype
        h = jnp.einsum("egcd,edh->egch", x.astype(d), self.fc1_kernel[...].astype(d))
        h = gelu(h + self.fc1_bias[...].astype(d)[:, None, None, :])
        y = jnp.einsum("egch,ehd->egcd", h, self.fc2_kernel[...].astype(d))
        return y + self.fc2_bias[...].astype(d)[:, None, None, :]


class MoeMlp(nnx.Module):
    """Top-k mixture of MLP experts on `(G, T, d) -> (G, T, d)` (see the module docstring).

    After each call, `aux_loss` holds the load-balancing loss and `dropped_tokens` the
    number of assignments dropped for capacity. Gate noise is drawn from the `dropout`
    rng stream in train mode; `model.eval()` turns it off.
    """

    def __init__(
        self,
        features: int,
        hidden: int,
        num_experts: int,
        *,
        k: int,
        capacity_factor: float,
        dtype=jnp.float32,
        rngs: nnx.Rngs,
    ):
        if not 1 <= k <= num_experts:
            raise ValueError(f"top-{k} routing needs 1 <= k <= num_experts={num_experts}")
        self.router = Linear(features, num_experts, use_bias=False, dtype=jnp.float32, rngs=rngs)
        self.experts = Experts(num_experts, features, hidden, dtype=dtype, rngs=rngs)
        self.k, self.num_experts, self.capacity_factor = k, num_experts, capacity_factor
        self.aux_loss = AuxLoss(jnp.zeros((), jnp.float32))
        self.dropped_tokens = RoutingStats(jnp.zeros((), jnp.int32))
        self.noise_rngs = rngs["dropout"].fork()
        self.deterministic = False
        self.dtype = dtype

    def __call__(self, x: Array) -> Array:
        g, t, _ = x.shape
        capacity = expert_capacity(t, self.num_experts, self.k, self.capacity_factor)
        logits = self.router(x.astype(jnp.float32))
        noise = None
        if not self.deterministic:
            noise = jax.random.normal(next_key(self.noise_rngs), logits.shape, jnp.float32)
        routing = top_k_routing(logits, k=self.k, capacity=capacity, noise=noise)
        # set_value: see layers.BatchNorm (an indexed set costs a walk of the jaxpr in a trace).
        self.aux_loss.set_value(routing.aux_loss)
        self.dropped_tokens.set_value(routing.dropped)
        d = self.dtype
        expert_in = jnp.einsum("gtec,gtd->egcd", routing.dispatch.astype(d), x.astype(d))
        expert_out = _constrain_to_expert_axis(self.experts(_constrain_to_expert_axis(expert_in)))
        return jnp.einsum("gtec,egcd->gtd", routing.combine.astype(d), expert_out)


def total_aux_loss(model: nnx.Module) -> Array:
    """Sum of the `AuxLoss` of every MoE layer in `model` after its latest forward."""
    leaves = jax.tree.leaves(nnx.state(model, AuxLoss))
    return sum((jnp.asarray(v, jnp.float32) for v in leaves), jnp.zeros((), jnp.float32))


def total_dropped_tokens(model: nnx.Module) -> Array:
    """Assignments dropped for capacity by every MoE layer in the latest forward."""
    leaves = jax.tree.leaves(nnx.state(model, RoutingStats))
    return sum((jnp.asarray(v, jnp.int32) for v in leaves), jnp.zeros((), jnp.int32))
