"""sMLPNet formulations side by side: which way of writing the token mixing is fastest.

Each variant replaces one piece of `smlp_jax.models.smlpnet` (or the shared depthwise conv /
BatchNorm) by an equivalent formulation in this benchmark's own copy of the model: a
subclass of the class it replaces, a documented constructor option, or an
`xla_cpu.options` switch while it is traced (nothing in the library is patched); every
variant is checked to give the same logits as the model as written (to 1e-4), then all
are timed in interleaved rounds (median shown), so load drift on the machine hits every
variant alike. What is kept in the model is the fastest, and `benchmarks/README.md`
records the prediction made before each measurement and what came out.

Variants (the model as written = `model`; `control` is the same program compiled again,
whose ratio to `model` shows how far apart two identical programs measure):
  grouped_conv     depthwise 3x3 as `lax.conv_general_dilated(feature_group_count=C)`
                   (what `nnx.Conv` does) instead of 9 shifted multiply-adds
  split_fuse       sMLP fuse as three accumulated (C,C) matmuls over slices of its kernel
                   (no 3C-wide tensor) instead of concat[x, mix_W x, mix_H x] @ (3C,C)
                   (the model had this until the measurement in benchmarks/README.md)
  transpose_dense  axial mixing as moveaxis -> (.., N) @ (N, N) -> moveaxis back
                   instead of one einsum over the axis
  fuse_first       the fuse's channel matmul first, as ONE (C, 3C) matmul, then the axial
                   mixes on its C-wide slices (mix and channel matmul commute)
  block_barrier    `lax.optimization_barrier` on each block's output (see below)
  grad_barrier     an identity with a custom VJP that puts `optimization_barrier` on the
                   cotangent entering each block's backward
  gelu_erfc        exact GELU as `jax.nn.gelu(approximate=False)` (an erfc form) instead of
                   the model's 0.5 x (1 + erf(x / sqrt 2)) (the model had it until measured)
  dw_autodiff      the shifted multiply-add depthwise conv differentiated by JAX, as the
                   model had it before `depthwise.shifted_conv2d`'s hand-written VJP
  block_remat      `nnx.remat` (jax.checkpoint) on each block: the backward recomputes the
                   block's forward from its input instead of reading stored activations
  block_remat_dots the same with matmul outputs saved (only elementwise work recomputed)
  no_store_grad    `xla_cpu.options(residual_grad=False)`: no stored cotangent on the
                   residual inputs (the model until it was measured: XLA CPU then
                   recomputes the residual cotangent chain)
  bn_affine        eval BatchNorm as a precomputed per-channel scale and shift (the BN
                   folding that sMLPNet's BN -> GELU order allows; eval only)
  gelu_vjp         GELU with a hand-written VJP: only its input is kept, and the backward
                   computes the derivative Phi(x) + x phi(x) where it is used (JAX's
                   autodiff computes and stores the derivative's factors in the forward)
  bn_vjp           train-mode BatchNorm with a hand-written VJP (per channel:
                   dx = scale inv (g - mean(g) - xhat mean(g xhat)), xhat recomputed)
  bn_gelu_vjp      both of the above
  axial_vjp        the axial mixes with a hand-written VJP whose kernel gradient is a
                   batched matmul over the batch (and, for the width mix, the rows), then a
                   sum: no transposed copy of the activation or of its cotangent

  python benchmarks/smlp_formulations.py [--model smlpnet_t] [--batch 8] [--variants ...]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from throughput import JaxBench, hyperparameters  # noqa: E402

from smlp_jax.models import depthwise, layers, smlpnet, xla_cpu  # noqa: E402
from smlp_jax.tools import hugepages  # noqa: E402

# ----------------------------------------------------------------- the formulations
# Each alternative is a subclass of the model class it replaces, with the alternative
# `__call__`; a variant swaps the class of that class's instances in this benchmark's own
# copy of the model (`edited_graphdef`), sets documented constructor options on them
# (`DepthwiseConv.impl`), or traces under `xla_cpu.options(...)`. Nothing global changes.


class SplitFuse(smlpnet.SMLP):
    def __call__(self, x):
        c = self.channels
        k = self.fuse.kernel[...].astype(self.dtype)
        x = x.astype(self.dtype)
        y = jnp.dot(x, k[:c])
        y = y + jnp.dot(self.mix_w(x), k[c : 2 * c])
        return y + jnp.dot(self.mix_h(x), k[2 * c :])


class TransposeDense(smlpnet.AxialLinear):
    def __call__(self, x):
        kernel = self.kernel[...].astype(self.dtype)
        bias = self.bias[...].astype(self.dtype)
        x = jnp.moveaxis(x.astype(self.dtype), self.axis, -1)  # (B, ., C, N) with N last
        y = jnp.matmul(x, kernel) + bias
        return jnp.moveaxis(y, -1, self.axis)


class FuseFirst(smlpnet.SMLP):
    def __call__(self, x):
        c = self.channels
        x = x.astype(self.dtype)
        kernel = self.fuse.kernel[...].astype(self.dtype)
        z = jnp.dot(x, kernel.reshape(3, c, c).transpose(1, 0, 2).reshape(c, 3 * c))
        z0, zw, zh = z[..., :c], z[..., c : 2 * c], z[..., 2 * c :]
        # mix(x) @ K = mix(x @ K) except for the bias: bias[v] * sum_c K[c, :].
        kw, kh = self.fuse.kernel[...][c : 2 * c], self.fuse.kernel[...][2 * c :]
        bw = self.mix_w.bias[...][None, None, :, None] * kw.sum(0)
        bh = self.mix_h.bias[...][None, :, None, None] * kh.sum(0)
        yw = jnp.einsum("bhwc,wv->bhvc", zw, self.mix_w.kernel[...].astype(self.dtype)) + bw
        yh = jnp.einsum("bhwc,hg->bgwc", zh, self.mix_h.kernel[...].astype(self.dtype)) + bh
        return z0 + yw + yh


class BNAffine(layers.BatchNorm):
    def __call__(self, x):
        if not self.use_running_average:
            return super().__call__(x)
        inv = jax.lax.rsqrt(self.var[...] + self.epsilon) * self.scale[...]
        shift = self.bias[...] - self.mean[...] * inv
        return (x.astype(jnp.float32) * inv + shift).astype(self.dtype)


class BlockBarrier(smlpnet.SMLPBlock):
    # Materialise each block's output (and, by its transpose rule, the residual stream's
    # cotangent in the backward pass) so XLA cannot fuse a chain of residual adds into
    # every consumer and recompute it there.
    def __call__(self, x):
        return jax.lax.optimization_barrier(super().__call__(x))


@jax.custom_vjp
def _grad_barrier(x):
    return x


_grad_barrier.defvjp(lambda x: (x, None), lambda _, g: (jax.lax.optimization_barrier(g),))


class GradBarrier(smlpnet.SMLPBlock):
    # Identity forward; the backward materialises the residual stream's cotangent at
    # every block boundary with `optimization_barrier` (what `xla_cpu.store_grad` does
    # with a conditional).
    def __call__(self, x):
        return super().__call__(_grad_barrier(x))


class BlockRemat(smlpnet.SMLPBlock):
    # jax.checkpoint on each block: only its input is kept for the backward, everything
    # inside is recomputed there (less memory traffic for more compute).
    def __call__(self, x):
        return nnx.remat(smlpnet.SMLPBlock.__call__)(self, x)


class BlockRematDots(smlpnet.SMLPBlock):
    # The same, but matmul outputs are kept: only the elementwise work is recomputed.
    def __call__(self, x):
        policy = jax.checkpoint_policies.dots_with_no_batch_dims_saveable
        return nnx.remat(smlpnet.SMLPBlock.__call__, policy=policy)(self, x)


class DepthwiseAutodiff(layers.DepthwiseConv):
    # The shifted sum left to JAX's autodiff, as the model had it before the VJP.
    def __call__(self, x):
        x = x.astype(self.dtype)
        kernel = self.kernel[...].astype(self.dtype)[:, :, 0, :]
        with jax.named_scope("depthwise_conv"):
            y = depthwise.shifted_conv2d(x, kernel, custom_vjp=False)
        return y if self.bias is None else y + self.bias[...]


def _erfc_gelu(x):
    return jax.nn.gelu(x, approximate=False)


@jax.custom_vjp
def _gelu_vjp(x):
    return layers.gelu(x)


def _gelu_vjp_bwd(x, g):
    # d/dx [x Phi(x)] = Phi(x) + x phi(x), phi the standard normal density.
    cdf = 0.5 * (1.0 + jax.lax.erf(x * 0.7071067811865476))
    pdf = jnp.exp(-0.5 * x * x) * 0.3989422804014327
    return (g * (cdf + x * pdf),)


_gelu_vjp.defvjp(lambda x: (layers.gelu(x), x), _gelu_vjp_bwd)


def _with_gelu(act) -> dict:
    """The two classes that call GELU in sMLPNet (its token mixing, the channel MLP), with
    `act` in its place."""

    class TokenMixing(smlpnet.TokenMixing):
        def __call__(self, x):
            x = self.dw_conv(act(self.dw_norm(x)))
            return self.smlp(act(self.smlp_norm(x)))

    class Mlp(layers.Mlp):
        def __call__(self, x):
            return self.fc2(act(self.fc1(x)))

    return {smlpnet.TokenMixing: TokenMixing, layers.Mlp: Mlp}


_BN_EPS = 1e-5


def _bn_stats(x):
    axes = tuple(range(x.ndim - 1))
    mean = jnp.mean(x, axis=axes)
    var = jnp.mean(jnp.square(x - mean), axis=axes)
    return mean, var


def _bn_train_fwd(x, scale, bias):
    mean, var = _bn_stats(x)
    inv = jax.lax.rsqrt(var + _BN_EPS)
    y = (x - mean) * (inv * scale) + bias
    # (y, mean, var): the statistics are outputs for the running averages only; their
    # cotangents are ignored (the caller stops their gradients).
    return (y, mean, var), (x, mean, inv, scale)


@jax.custom_vjp
def _bn_train(x, scale, bias):
    return _bn_train_fwd(x, scale, bias)[0]


def _bn_train_bwd(res, cts):
    x, mean, inv, scale = res
    g = cts[0]
    axes = tuple(range(x.ndim - 1))
    n = x.size // x.shape[-1]
    xhat = (x - mean) * inv
    dbias = jnp.sum(g, axis=axes)
    dscale = jnp.sum(g * xhat, axis=axes)
    dx = (scale * inv) * (g - dbias / n - xhat * (dscale / n))
    return dx, dscale, dbias


_bn_train.defvjp(_bn_train_fwd, _bn_train_bwd)


class BNVjp(layers.BatchNorm):
    def __call__(self, x):
        if self.use_running_average:
            return super().__call__(x)
        y, mean, var = _bn_train(x.astype(jnp.float32), self.scale[...], self.bias[...])
        mean, var = jax.lax.stop_gradient(mean), jax.lax.stop_gradient(var)
        n = x.size // x.shape[-1]
        m = self.momentum
        self.mean[...] = (1 - m) * self.mean[...] + m * mean
        self.var[...] = (1 - m) * self.var[...] + m * var * (n / max(n - 1, 1))
        return y.astype(self.dtype)


@jax.custom_vjp
def _mix_middle(x, kernel):
    """`(N, n, M) -> (N, n, M)`: out[i, v, m] = sum_n x[i, n, m] K[n, v] (an axial mix with the
    other axes folded into N and M, which reshapes of a (B, H, W, C) tensor give for free)."""
    return jnp.einsum("inm,nv->ivm", x, kernel)


def _mix_middle_bwd(res, g):
    x, kernel = res
    dx = jnp.einsum("ivm,nv->inm", g, kernel)
    # per i: x (n, M) @ g (v, M)^T, then summed over i: no transposed copy of x or g
    dk = jnp.einsum("inm,ivm->inv", x, g).sum(0)
    return dx, dk


_mix_middle.defvjp(lambda x, k: (_mix_middle(x, k), (x, k)), _mix_middle_bwd)


class AxialVjp(smlpnet.AxialLinear):
    def __call__(self, x):
        kernel = self.kernel[...].astype(self.dtype)
        bias = self.bias[...].astype(self.dtype)
        x = x.astype(self.dtype)
        b, h, w, c = x.shape
        if self.axis == 2:  # rows of the batch as N, channels as M
            y = _mix_middle(x.reshape(b * h, w, c), kernel).reshape(x.shape)
            return y + bias[None, None, :, None]
        y = _mix_middle(x.reshape(b, h, w * c), kernel).reshape(x.shape)  # the batch as N
        return y + bias[None, :, None, None]


@dataclasses.dataclass(frozen=True)
class Variant:
    """classes: model class -> the subclass its instances become; options: model class ->
    constructor options set on its instances; xla_cpu: `xla_cpu.options` when traced."""

    classes: dict = dataclasses.field(default_factory=dict)
    options: dict = dataclasses.field(default_factory=dict)
    xla_cpu: dict = dataclasses.field(default_factory=dict)


VARIANTS = {
    "model": Variant(),
    "control": Variant(),  # the model again, compiled separately: the method's noise floor
    "grouped_conv": Variant(options={layers.DepthwiseConv: {"impl": "xla"}}),
    "split_fuse": Variant({smlpnet.SMLP: SplitFuse}),
    "transpose_dense": Variant({smlpnet.AxialLinear: TransposeDense}),
    "fuse_first": Variant({smlpnet.SMLP: FuseFirst}),
    "bn_affine": Variant({layers.BatchNorm: BNAffine}),
    "block_barrier": Variant({smlpnet.SMLPBlock: BlockBarrier}),
    "grad_barrier": Variant({smlpnet.SMLPBlock: GradBarrier}),
    "gelu_erfc": Variant(_with_gelu(_erfc_gelu)),
    "no_store_grad": Variant(xla_cpu={"residual_grad": False}),
    "dw_autodiff": Variant({layers.DepthwiseConv: DepthwiseAutodiff}),
    "block_remat": Variant({smlpnet.SMLPBlock: BlockRemat}),
    "block_remat_dots": Variant({smlpnet.SMLPBlock: BlockRematDots}),
    "gelu_vjp": Variant(_with_gelu(_gelu_vjp)),
    "bn_vjp": Variant({layers.BatchNorm: BNVjp}),
    "bn_gelu_vjp": Variant({layers.BatchNorm: BNVjp, **_with_gelu(_gelu_vjp)}),
    "axial_vjp": Variant({smlpnet.AxialLinear: AxialVjp}),
}


def edited_graphdef(graphdef, states, variant: Variant, *filters):
    """The graph of `nnx.merge(graphdef, *states)` with `variant`'s classes and options
    applied to its modules (the states' structure is unchanged, so they still fit)."""
    model = nnx.merge(graphdef, *states)
    for _, node in nnx.iter_graph(model):
        cls = type(node)
        for key, value in variant.options.get(cls, {}).items():
            setattr(node, key, value)
        if cls in variant.classes:
            node.__class__ = variant.classes[cls]
    return nnx.split(model, *filters)[0]


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", default="smlpnet_t")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--no-train", action="store_true", help="forward only")
    p.add_argument("--fwd-iters", type=int, default=3, help="forward calls per timed round")
    p.add_argument("--tiny", action="store_true", help="tiny hyperparameters (a smoke run)")
    args = p.parse_args(argv)
    print(
        f"# {args.model} at {args.image_size}, batch {args.batch}; jax {jax.__version__}, "
        f"{jax.devices()[0].device_kind}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}"
    )

    # The throughput harness's programs (eval forward; jitted AdamW train step, donated);
    # `compile` traces afresh, so each variant is traced with its patch in place.
    _, hp = hyperparameters(args.model, tiny=args.tiny)
    bench = JaxBench(args.model, hp, args.image_size, args.batch, num_classes=1000)
    eval_state, images, labels = bench.eval_state, bench.images, bench.labels
    compiled, compile_s, train_mib, states, reference, errors = {}, {}, {}, {}, None, {}
    pristine = bench.graphdef, bench.eval_graphdef
    train_states = bench.train_state[:2]
    for v in args.variants:
        variant = VARIANTS[v]
        bench.graphdef = edited_graphdef(pristine[0], train_states, variant, nnx.Param, ...)
        bench.eval_graphdef = edited_graphdef(pristine[1], (eval_state,), variant)
        with xla_cpu.options(**variant.xla_cpu):
            bench.compile(train=not args.no_train and v != "bn_affine")
        logits = np.asarray(bench.fwd(eval_state, images))
        if reference is None:
            reference = logits
        err = float(np.max(np.abs(logits - reference)))
        assert err < 1e-3 * max(1.0, float(np.max(np.abs(reference)))), (v, err)
        errors[v] = err
        compiled[v] = (bench.fwd, bench.step)
        compile_s[v] = (bench.compile_fwd_s, bench.compile_train_s)
        train_mib[v] = bench.xla_train_mib if bench.step else float("nan")
        if bench.step:  # each variant trains its own copy (the step donates it)
            states[v] = jax.tree.map(lambda a: a.copy(), bench.train_state)
        print(
            f"  compiled {v}: fwd {compile_s[v][0]:.1f}s train {compile_s[v][1]:.1f}s, "
            f"max |dlogits| {err:.1e}",
            file=sys.stderr,
            flush=True,
        )

    def train(v):
        states[v], loss = compiled[v][1](states[v], images, labels)
        loss.block_until_ready()

    times = {v: {"fwd": [], "train": []} for v in args.variants}
    for v, (fwd, step) in compiled.items():  # warm-up
        fwd(eval_state, images).block_until_ready()
        if step:
            train(v)
    for _ in range(args.repeats):
        for v, (fwd, step) in compiled.items():
            t0 = time.perf_counter()
            for _ in range(args.fwd_iters):
                fwd(eval_state, images).block_until_ready()
            times[v]["fwd"].append((time.perf_counter() - t0) / args.fwd_iters)
            if step:
                t0 = time.perf_counter()
                train(v)
                times[v]["train"].append(time.perf_counter() - t0)

    print(
        "| variant | fwd img/s | vs model | train img/s | vs model | compile s fwd / train "
        "| XLA train MiB |"
    )
    print("|---|---|---|---|---|---|---|")
    base = {
        k: statistics.median(x) for k, x in times.get("model", times[args.variants[0]]).items() if x
    }
    for v in args.variants:
        cells = []
        for kind in ("fwd", "train"):
            if times[v][kind]:
                med = statistics.median(times[v][kind])
                cells += [f"{args.batch / med:.2f}", f"{base[kind] / med:.2f}x"]
            else:
                cells += ["-", "-"]
        print(
            f"| {v} | {' | '.join(cells)} | {compile_s[v][0]:.0f} / {compile_s[v][1]:.0f} "
            f"| {train_mib[v]:.0f} |"
        )

    return errors


if __name__ == "__main__":
    hugepages.reexec_with_hugepages()  # as main.py trains: see smlp_jax/tools/hugepages.py
    main()
