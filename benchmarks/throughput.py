"""Throughput of every registered model in JAX and in its PyTorch reference, in one process.

For each model and batch size, one table row:

  params, MACs (batch 1, matmuls + convolutions, `smlp_jax.tools.summary`),
  compile s  (jit lower + compile of the JAX train step; the forward's in brackets),
  fwd img/s  (eval mode, jitted) for JAX and PyTorch (`torch.inference_mode`), and the ratio,
  train img/s (forward + backward + AdamW update; JAX jitted with the state donated;
              PyTorch eager `loss.backward(); opt.step()`), and the ratio,
  XLA MiB    (the compiled JAX train step's arguments + outputs + temporaries - aliased,
              from `compiled.memory_analysis()`),
  RSS MiB    (the process's peak resident memory so far: monotone across rows).

Timing: `--warmup` untimed calls, then `--repeats` rounds; in each round JAX and PyTorch
each run `--iters` calls back to back (interleaved, so machine load drifts hit both
alike), and the row shows the median round. Both sides use every core they see
(XLA's CPU thread pool; `torch.get_num_threads()`), float32, the same hyperparameters
and drop-path rate 0 (a benchmark of the model's compute, not of its regulariser).

The PyTorch reference is timm where timm has the model (Mixer, ConvMixer), otherwise our
independent implementation in the official state-dict layout (`reference/torch_models`,
the one the parity fixtures come from); Sparse-MLP has none. Without torch installed the
reference columns say so and the JAX columns are still filled.

  # the full comparison (torch lives in .venv-ref, see the Makefile's `fixtures` target):
  PYTHONPATH=. .venv-ref/bin/python benchmarks/throughput.py --models smlpnet_t --batch-sizes 8 32
  # every registered model at batch 8, JAX only:
  .venv/bin/python benchmarks/throughput.py
  # a seconds-long smoke run (tiny hyperparameters per family, 32 px):
  .venv/bin/python benchmarks/throughput.py --tiny --models smlpnet_t mixer_s16 --batch-sizes 2

`--json PATH` also writes the rows (and the machine header) as JSON.

`--isolate` measures each library in a process of its own instead (per model and batch: a
JAX-only child, then a PyTorch-only child, this script run again with `--side`): neither
library's memory and thread pools weigh on the other's timings, at the cost of the
interleaving (the two are timed one after the other, not round by round). The RSS column
then shows both peaks, JAX / PyTorch. Run as a script, this harness (like main.py)
re-executes itself under glibc's huge-page tunable (`smlp_jax/tools/hugepages.py`; the
header's `malloc` line says whether it did); an isolated PyTorch child runs without it, with
glibc's default allocator, which measured faster for PyTorch's train step here.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, "reference"))

import smlp_jax  # noqa: E402
from smlp_jax.models.macs import count_macs  # noqa: E402
from smlp_jax.models.registry import get_entry  # noqa: E402
from smlp_jax.tools import hugepages  # noqa: E402

# Small hyperparameters per family for `--tiny` (a smoke run of the harness; 32 px input).
TINY: dict[str, dict[str, Any]] = {
    "smlpnet": dict(dim=8, depths=(1, 1, 1, 1)),
    "mixer": dict(
        patch_size=8, hidden_dim=32, num_blocks=1, tokens_mlp_dim=16, channels_mlp_dim=32
    ),
    "convmixer": dict(dim=16, depth=1, kernel_size=3, patch_size=4),
    "dynamixer": dict(
        patch_size=4,
        layers=(1, 1),
        transitions=(True, False),
        embed_dims=(16, 32),
        num_heads=(2, 2),
        reduced_dims=(2, 2),
    ),
    "permutator": dict(
        patch_size=4,
        layers=(1, 1),
        transitions=(True, False),
        segment_dim=(8, 4),
        embed_dims=(16, 32),
    ),
    "as_mlp": dict(embed_dim=8, depths=(1, 1, 1, 1)),
    "hire_mlp": dict(layers=(1, 1, 1, 1), embed_dims=(8, 16, 24, 32)),
    "raft_mlp": dict(dims=(8, 16, 16, 32), depths=(1, 1, 1, 1)),
    "sparse_mlp": dict(
        patch_size=8,
        hidden_dim=32,
        num_blocks=2,
        tokens_mlp_dim=16,
        channels_mlp_dim=32,
        sparse_blocks=(1,),
    ),
}
TINY_IMAGE_SIZE = 32


@dataclasses.dataclass
class Row:
    model: str
    batch: int
    image_size: int
    params: int
    macs: int
    compile_train_s: float
    compile_fwd_s: float
    jax_fwd: float | None  # images/s; None in a PyTorch-only (`--side torch`) row
    jax_train: float | None
    xla_train_mib: float
    rss_mib: float  # this process's peak (the JAX process's with --isolate)
    torch_fwd: float | None = None
    torch_train: float | None = None
    reference: str = ""
    torch_rss_mib: float | None = None  # the PyTorch process's peak, with --isolate

    @property
    def fwd_ratio(self) -> float | None:
        return self.jax_fwd / self.torch_fwd if self.torch_fwd and self.jax_fwd else None

    @property
    def train_ratio(self) -> float | None:
        return self.jax_train / self.torch_train if self.torch_train and self.jax_train else None


# The vector extensions that decide the GEMM kernels both libraries pick, widest first.
_ISA_FLAGS = ("amx_bf16", "avx512_bf16", "avx512f", "avx2", "neon", "asimd")


def cpu_description(cpuinfo: str) -> str:
    """One line naming the CPU of a `/proc/cpuinfo` text: model name, family/model/stepping
    and the vector extensions among `_ISA_FLAGS`.

    A cloud machine's model name alone ("AMD EPYC") hides which generation it is: two
    sessions of this project ran on hosts of that one name whose float32 GEMM rates
    differed by 1.5x, so the tables say which one they ran on.
    """
    fields: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            if fields:
                break  # the first processor's block is enough
            continue
        fields.setdefault(key.strip(), value.strip())
    name = fields.get("model name") or fields.get("Model") or platform.machine()
    ids = [
        f"{label} {fields[key]}"
        for label, key in (("family", "cpu family"), ("model", "model"), ("stepping", "stepping"))
        if key in fields
    ]
    flags = set((fields.get("flags") or fields.get("Features") or "").split())
    isa = [flag for flag in _ISA_FLAGS if flag in flags]
    parts = [name] + ([" ".join(ids)] if ids else []) + ([" ".join(isa)] if isa else [])
    return ", ".join(parts)


def machine_header() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for mod in ("jax", "jaxlib", "flax", "optax", "numpy", "torch", "timm"):
        try:
            if mod == "timm":
                import timm_import  # noqa: F401  (timm needs the torchvision stand-in)
            versions[mod] = __import__(mod).__version__
        except Exception:  # noqa: BLE001 - absent is fine, it is only reported
            versions[mod] = "absent"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = cpu_description(f.read())
    except OSError:
        cpu = platform.processor() or platform.machine()
    devices = jax.devices()
    return {
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "host": f"{platform.system()} {platform.release()}, {cpu}, {os.cpu_count()} cores",
        "jax devices": f"{len(devices)} x {devices[0].device_kind} ({jax.default_backend()})",
        "load average": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "malloc": hugepages.status(),
        "versions": " ".join(f"{k} {v}" for k, v in versions.items()),
    }


def hyperparameters(name: str, tiny: bool) -> tuple[str, dict[str, Any]]:
    """(family, full hyperparameters) of a registered model as benchmarked."""
    entry = get_entry(name)
    hp = {**entry.defaults, **(TINY[entry.family] if tiny else {})}
    if "drop_path_rate" in hp:
        hp["drop_path_rate"] = 0.0
    return entry.family, hp


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _timed_calls(fn: Callable[[], Any], iters: int) -> float:
    """Seconds per call of `fn` (which must block until its result is ready)."""
    start = time.perf_counter()
    for _ in range(iters):
        fn()
    return (time.perf_counter() - start) / iters


# ----------------------------------------------------------------------------- JAX side


class JaxBench:
    """Jitted eval forward and train step of one model at one batch size."""

    def __init__(self, name: str, hp: dict, image_size: int, batch: int, num_classes: int):
        model = smlp_jax.create_model(
            name, image_size=image_size, num_classes=num_classes, rngs=0, **hp
        )
        self.params_count = sum(
            int(np.prod(x.shape)) for x in jax.tree.leaves(nnx.state(model, nnx.Param))
        )
        rng = np.random.default_rng(0)
        self.images = jnp.asarray(
            rng.standard_normal((batch, image_size, image_size, 3), np.float32)
        )
        self.labels = jnp.asarray(rng.integers(0, num_classes, (batch,)), jnp.int32)
        self.tx = optax.adamw(1e-4, weight_decay=0.05)

        # Train graph and state: (params, everything else: BN statistics, rng counters, ...).
        self.graphdef, params, rest = nnx.split(model, nnx.Param, ...)
        # Copies: the train step donates its state, which must not delete the eval state's
        # arrays (the same buffers until copied).
        params, rest = jax.tree.map(lambda a: a.copy(), (params, rest))
        self.train_state = (params, rest, self.tx.init(params))
        model.eval()
        self.eval_graphdef, self.eval_state = nnx.split(model)

        # MACs of a batch-1 eval forward (the summary tool's jaxpr count).
        def forward1(state, x):
            return nnx.merge(self.eval_graphdef, state)(x)

        one = jax.ShapeDtypeStruct((1, image_size, image_size, 3), jnp.float32)
        self.macs = count_macs(jax.make_jaxpr(forward1)(self.eval_state, one).jaxpr)

    def compile(self, train: bool = True, forward_too: bool = True) -> None:
        """Lowers and compiles the forward (`self.fwd`, unless not `forward_too`) and, with
        `train`, the train step (`self.step`). Each call traces afresh (new function
        objects), so a caller may compile again with another `graphdef`
        (benchmarks/smlp_formulations.py)."""
        graphdef, eval_graphdef, tx = self.graphdef, self.eval_graphdef, self.tx

        def forward(state, images):
            return nnx.merge(eval_graphdef, state)(images)

        def loss_fn(params, rest, images, labels):
            # copy=True: the merged module's variables must not alias the traced inputs.
            model = nnx.merge(graphdef, params, rest, copy=True)
            logits = model(images)
            loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
            return loss, nnx.state(model, nnx.Not(nnx.Param))

        def train_step(state, images, labels):
            params, rest, opt_state = state
            (loss, rest), grads = jax.value_and_grad(loss_fn, has_aux=True)(
                params, rest, images, labels
            )
            updates, opt_state = tx.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), rest, opt_state), loss

        self.train_fn = train_step  # for its model FLOPs (smlp_jax.train.mfu.step_flops)
        self.fwd, self.compile_fwd_s = None, 0.0
        if forward_too:
            start = time.perf_counter()
            self.fwd = jax.jit(forward).lower(self.eval_state, self.images).compile()
            self.compile_fwd_s = time.perf_counter() - start
        self.step, self.compile_train_s, self.xla_train_mib = None, 0.0, float("nan")
        if not train:
            return
        start = time.perf_counter()
        self.step = (
            jax.jit(train_step, donate_argnums=0)
            .lower(self.train_state, self.images, self.labels)
            .compile()
        )
        self.compile_train_s = time.perf_counter() - start
        mem = self.step.memory_analysis()
        self.xla_train_mib = (
            float("nan")
            if mem is None
            else (
                mem.argument_size_in_bytes
                + mem.output_size_in_bytes
                + mem.temp_size_in_bytes
                - mem.alias_size_in_bytes
            )
            / 2**20
        )

    def run_forward(self) -> None:
        self.fwd(self.eval_state, self.images).block_until_ready()

    def run_train(self) -> None:
        self.train_state, loss = self.step(self.train_state, self.images, self.labels)
        loss.block_until_ready()


# ------------------------------------------------------------------------- PyTorch side


class TorchBench:
    """The PyTorch reference: eval forward under inference_mode, eager AdamW train step."""

    def __init__(self, family: str, hp: dict, image_size: int, batch: int, num_classes: int):
        import torch
        import torch_reference

        self.torch = torch
        torch.manual_seed(0)
        self.model = torch_reference.build(family, hp, image_size, num_classes)
        self.source = torch_reference.SOURCES[family]
        self.images = torch.randn(batch, 3, image_size, image_size)
        self.labels = torch.randint(0, num_classes, (batch,))
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=1e-4, weight_decay=0.05)
        self.loss = torch.nn.CrossEntropyLoss()
        self.params_count = sum(p.numel() for p in self.model.parameters())

    def run_forward(self) -> None:
        self.model.eval()
        with self.torch.inference_mode():
            self.model(self.images)

    def run_train(self) -> None:
        self.model.train()
        self.opt.zero_grad(set_to_none=True)
        self.loss(self.model(self.images), self.labels).backward()
        self.opt.step()


def torch_available() -> str | None:
    """None when torch imports, else why not (shown in the table)."""
    try:
        import torch  # noqa: F401
    except ImportError:
        return "torch not installed (run from .venv-ref)"
    return None


# ------------------------------------------------------------------------------ driver


def measure(
    name: str,
    batch: int,
    *,
    tiny: bool,
    image_size: int,
    num_classes: int,
    warmup: int,
    repeats: int,
    iters: int,
    with_torch: bool,
    log: Callable[[str], None],
    with_jax: bool = True,
) -> Row:
    """One row: both libraries in this process (interleaved rounds), or one of them."""
    family, hp = hyperparameters(name, tiny)
    jb = None
    if with_jax:
        jb = JaxBench(name, hp, image_size, batch, num_classes)
        log(f"{name} b{batch}: compiling")
        jb.compile()
    tb, reference = None, ""
    if with_torch:
        try:
            tb = TorchBench(family, hp, image_size, batch, num_classes)
            reference = tb.source
        except Exception as e:  # noqa: BLE001 - NoReference or a failed build: say which
            reference = f"none ({e})"
            if not with_jax:
                raise

    results: dict[str, list[float]] = {"jf": [], "jt": [], "tf": [], "tt": []}
    for what, jax_fn, torch_fn in (
        ("f", jb and jb.run_forward, tb and tb.run_forward),
        ("t", jb and jb.run_train, tb and tb.run_train),
    ):
        for _ in range(warmup):
            if jax_fn:
                jax_fn()
            if torch_fn:
                torch_fn()
        for _ in range(repeats):
            if jax_fn:
                results["j" + what].append(batch / _timed_calls(jax_fn, iters))
            if torch_fn:
                results["t" + what].append(batch / _timed_calls(torch_fn, iters))
        log(f"{name} b{batch} {'forward' if what == 'f' else 'train'}: done")

    def median(xs):
        return statistics.median(xs) if xs else None

    nan = float("nan")
    return Row(
        model=name,
        batch=batch,
        image_size=image_size,
        params=jb.params_count if jb else tb.params_count,
        macs=jb.macs if jb else 0,
        compile_train_s=jb.compile_train_s if jb else nan,
        compile_fwd_s=jb.compile_fwd_s if jb else nan,
        jax_fwd=median(results["jf"]),
        jax_train=median(results["jt"]),
        xla_train_mib=jb.xla_train_mib if jb else nan,
        rss_mib=rss_mib(),
        torch_fwd=median(results["tf"]),
        torch_train=median(results["tt"]),
        reference=reference,
    )


def _child_row(args: argparse.Namespace, name: str, batch: int, side: str) -> Row:
    """Runs this script for one model, batch and library in a fresh process; its row."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "rows.json")
        cmd = [sys.executable, os.path.abspath(__file__), "--side", side, "--json", out]
        cmd += ["--models", name, "--batch-sizes", str(batch)]
        cmd += ["--num-classes", str(args.num_classes), "--warmup", str(args.warmup)]
        cmd += ["--repeats", str(args.repeats), "--iters", str(args.iters)]
        if args.image_size:
            cmd += ["--image-size", str(args.image_size)]
        if args.tiny:
            cmd.append("--tiny")
        # The child's table goes nowhere (this process prints the merged one); its progress
        # lines and errors go to stderr as they come.
        env = dict(os.environ)
        if side == "torch":  # PyTorch as it ships: glibc's default allocator (see below)
            tunables = env.get("GLIBC_TUNABLES", "").split(":")
            kept = [t for t in tunables if t and not t.startswith(hugepages.TUNABLE)]
            env["GLIBC_TUNABLES"] = ":".join(kept)
            env[hugepages.OPT_OUT] = "0"
        proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, env=env, check=False)
        payload = {"rows": [], "failures": []}
        if os.path.exists(out):
            with open(out) as f:
                payload = json.load(f)
    if not payload["rows"]:
        why = payload["failures"] or [f"the process exited with status {proc.returncode}"]
        raise RuntimeError(f"{side} process: {why[0]}")
    fields = {f.name for f in dataclasses.fields(Row)}
    return Row(**{k: v for k, v in payload["rows"][0].items() if k in fields})


def measure_isolated(args: argparse.Namespace, name: str, batch: int, with_torch: bool, log) -> Row:
    """The JAX row from a JAX-only process, with the PyTorch columns from a PyTorch-only one."""
    log(f"{name} b{batch}: JAX in its own process")
    row = _child_row(args, name, batch, "jax")
    if with_torch:
        log(f"{name} b{batch}: PyTorch in its own process")
        try:
            ref = _child_row(args, name, batch, "torch")
        except RuntimeError as e:  # e.g. no reference for this family: the JAX row stands
            row.reference = f"none ({e})"
        else:
            row.torch_fwd, row.torch_train = ref.torch_fwd, ref.torch_train
            row.reference, row.torch_rss_mib = ref.reference, ref.rss_mib
    return row


def _num(x: float | None) -> float | None:
    """None for a missing number (NaN: e.g. the JAX columns of a `--side torch` row)."""
    return None if x is None or x != x else x


def _fmt(x: float | None, spec: str, suffix: str = "") -> str:
    return "-" if x is None else format(x, spec) + suffix


def table(rows: list[Row]) -> str:
    """A Markdown table of the rows."""
    head = (
        "| model | batch | px | params | GMACs | compile s (fwd) | fwd img/s JAX | PyTorch | ratio "
        "| train img/s JAX | PyTorch | ratio | XLA train MiB | RSS MiB |"
    )
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        torch_rss = f" / {r.torch_rss_mib:.0f}" if r.torch_rss_mib else ""  # --isolate
        lines.append(
            f"| {r.model} | {r.batch} | {r.image_size} | {r.params / 1e6:.2f}M "
            f"| {_fmt(r.macs / 1e9 if r.macs else None, '.3g')} "
            f"| {_fmt(_num(r.compile_train_s), '.1f')} ({_fmt(_num(r.compile_fwd_s), '.1f')}) "
            f"| {_fmt(r.jax_fwd, '.2f')} | {_fmt(r.torch_fwd, '.2f')} "
            f"| {_fmt(r.fwd_ratio, '.2f', 'x')} "
            f"| {_fmt(r.jax_train, '.2f')} | {_fmt(r.torch_train, '.2f')} "
            f"| {_fmt(r.train_ratio, '.2f', 'x')} | {_fmt(_num(r.xla_train_mib), '.0f')} "
            f"| {r.rss_mib:.0f}{torch_rss} |"
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--models", nargs="+", default=None, help="default: every registered model")
    p.add_argument("--batch-sizes", nargs="+", type=int, default=[8])
    p.add_argument("--image-size", type=int, default=None, help="default 224 (32 with --tiny)")
    p.add_argument("--num-classes", type=int, default=1000)
    p.add_argument("--warmup", type=int, default=1, help="untimed calls before timing")
    p.add_argument("--repeats", type=int, default=3, help="timed rounds; the median is shown")
    p.add_argument("--iters", type=int, default=2, help="calls per timed round")
    p.add_argument("--tiny", action="store_true", help="tiny hyperparameters (smoke run)")
    p.add_argument("--no-torch", action="store_true", help="skip the PyTorch reference")
    p.add_argument(
        "--isolate",
        action="store_true",
        help="time each library in a process of its own (see the module docstring)",
    )
    p.add_argument(
        "--side",
        choices=("both", "jax", "torch"),
        default="both",
        help="which library this process times (--isolate runs its children with it)",
    )
    p.add_argument("--json", default=None, help="also write the rows here as JSON")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> list[Row]:
    args = parse_args(argv)
    models = args.models or smlp_jax.list_models()
    unknown = [m for m in models if m not in smlp_jax.list_models()]
    if unknown:
        raise SystemExit(f"unknown model(s) {unknown}; see smlp_jax.list_models()")
    image_size = args.image_size or (TINY_IMAGE_SIZE if args.tiny else 224)
    if args.no_torch or args.side == "jax":
        why_no_torch = "--no-torch" if args.no_torch else "--side jax"
    elif args.isolate:  # the parent never loads torch: only its child does
        found = importlib.util.find_spec("torch") is not None
        why_no_torch = None if found else "torch not installed (run from .venv-ref)"
    else:
        why_no_torch = torch_available()
    if args.side == "torch" and why_no_torch:
        raise SystemExit(f"--side torch: {why_no_torch}")
    header = machine_header()
    if args.isolate:
        header["isolated"] = "each library timed in a process of its own"
    elif not why_no_torch:
        import torch

        header["torch threads"] = str(torch.get_num_threads())
    for k, v in header.items():
        print(f"# {k}: {v}")
    if why_no_torch:
        print(f"# PyTorch reference columns empty: {why_no_torch}")
    sys.stdout.flush()

    def log(msg: str) -> None:
        print(f"  [{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)

    rows, failures = [], []
    for name in models:
        for batch in args.batch_sizes:
            try:
                if args.isolate:
                    row = measure_isolated(args, name, batch, not why_no_torch, log)
                else:
                    row = measure(
                        name,
                        batch,
                        tiny=args.tiny,
                        image_size=image_size,
                        num_classes=args.num_classes,
                        warmup=args.warmup,
                        repeats=args.repeats,
                        iters=args.iters,
                        with_torch=not why_no_torch,
                        with_jax=args.side != "torch",
                        log=log,
                    )
            except Exception as e:  # noqa: BLE001 - e.g. out of memory: report, go on
                first_line = (str(e).strip().splitlines() or [type(e).__name__])[0]
                failures.append(f"{name} batch {batch}: {type(e).__name__}: {first_line[:200]}")
                log(f"FAILED {failures[-1]}")
                continue
            rows.append(row)
    print(table(rows))
    for failure in failures:
        print(f"# failed: {failure}")
    refs = {r.model: r.reference for r in rows if r.reference}
    for model, ref in refs.items():
        print(f"# {model}: PyTorch reference = {ref}")
    if args.json:
        with open(args.json, "w") as f:
            payload = {
                "header": header,
                "failures": failures,
                "rows": [
                    {
                        **dataclasses.asdict(r),
                        "fwd_ratio": r.fwd_ratio,
                        "train_ratio": r.train_ratio,
                    }
                    for r in rows
                ],
            }
            json.dump(payload, f, indent=1)
    return rows


if __name__ == "__main__":
    hugepages.reexec_with_hugepages()  # both libraries' processes (--isolate children too) get it
    main()
