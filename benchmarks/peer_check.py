"""Our JAX train step against the official PyTorch code: same batch, same optimiser, one GPU.

    bash benchmarks/accelerator_check.sh           # on a GPU: runs this first
    python benchmarks/peer_check.py --out DIR      # full size, one process
    python benchmarks/peer_check.py --tiny         # CPU smoke test (CI): tiny models

Per model (sMLPNet-T and -B, Mixer-B/16 at batch 128, ConvMixer-768/32 at 64; 224 px,
bfloat16 compute, 1000 classes, drop path 0 on both sides) three rows:

  jax            the jitted train step accelerator_check.py times (throughput.JaxBench:
                 float32 parameters, bf16 compute, optax AdamW, the state donated)
  torch eager    the PyTorch reference (reference/torch_reference.py: the sMLPNet of
                 reference/torch_models, timm's MlpMixer and ConvMixer at mixer_b16_224's
                 and convmixer_768_32's sizes) in train mode, bf16 autocast, channels_last,
                 `torch.optim.AdamW` (fused=True on CUDA), the same lr and weight decay
  torch compile  the same with the model under `torch.compile` (the fused AdamW eager)

and a `jax <forms>` row for each other `--jax-forms` (`JAX_FORMS`): "plain" is the step as
it was before the lean VJPs (autodiff of the plain norm and GELU formulas, the sMLP fuse
over a concat), the "before" of the same call; "axial" the batched height mix; "remat"
every block recomputed in the backward (`config.remat="nothing_saveable"`). Each jax
row keeps its HLO and, for `--trace-models`, its profile (the per-op account's input).
The rows run in two passes over the models: first each model's `jax` and PyTorch rows
(what the targets compare), then the other forms' rows, so that a budget cut (a GPU
compiles an sMLPNet step in a minute or more) drops the befores, not a model.

Both sides get the same images and labels (JaxBench's seed-0 batch) and the same loss
(softmax cross-entropy). Compiling is left out of the timings and recorded apart (`compile
s`: XLA's compile of the train step, or the persistent cache's load with the original
compile time beside it; for torch.compile the wall time of its warm-up steps). Timing:
`--windows` windows of `--steps` steps, one sync at the end of each, the median window's
ms/step. Peak memory: torch's `max_memory_allocated` of the row; JAX's `peak_bytes_in_use`
of the device, which is the process's peak so far (JAX cannot reset it: read it with the
rows before it), with XLA's own count for the step (`xla_step_gib`) in the JSON; None on a
CPU.

MFU: the model FLOPs of the train step (`smlp_jax.models.macs` on the jaxpr of the loss's
gradient: AdamW adds no matmul) over the device's peak (`smlp_jax.train.mfu`), for every
row alike. Bandwidth utilisation: the minimal bytes a step must move (`minimal_bytes`, or
the `min_bytes` callable given to `main`) over the step time over the device's copy
bandwidth, measured once by a jitted `x + 0` of a 1 GiB float32 array (bytes read +
written over the best time). Minimal bytes: benchmarks/roofline.py's floor, counted on the
same jaxpr (every matmul and convolution reads its operands and writes its result once,
everything else fused into them, plus AdamW's 8 float32 passes over the parameters). The
JSON also has the bytes autodiff saves for the backward (benchmarks/saved_activations.py).

Also written to `--out` (default benchmarks/results/peer_check/): peer_check.json and
peer_check.md (again after every row: a run cut off keeps what it measured), the compiled
HLO of each JAX train step (hlo/), a `jax.profiler` trace of a few steps of the
`--trace-models` rows (trace/), and the compile caches: JAX's persistent cache
(jax_cache/, unless $JAX_COMPILATION_CACHE_DIR names another) and torch inductor's
(torchinductor_cache/, unless $TORCHINDUCTOR_CACHE_DIR does), so a rerun skips compiling.
Rows that start past `--budget` seconds are skipped, a row that fails records its error
and the check goes on, and without torch (or timm, for Mixer and ConvMixer), or with a
torch that sees no CUDA device while JAX runs on an accelerator, the PyTorch rows are
skipped with the reason (as are the torch.compile rows of `--tiny` on a CPU: minutes of
inductor compiling; `--cpu-torch-compile` runs them).
"""

from __future__ import annotations

import os

# Before jax starts its backend: PyTorch shares the GPU, so JAX must not take 75% of it.
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import gc  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import roofline  # noqa: E402
import saved_activations  # noqa: E402
from accelerator_check import _attempt  # noqa: E402
from throughput import (  # noqa: E402
    REPO,
    TINY_IMAGE_SIZE,
    JaxBench,
    _fmt,
    hyperparameters,
    machine_header,
    torch_available,
)

from smlp_jax.train import mfu  # noqa: E402

FULL = (("smlpnet_t", 128), ("smlpnet_b", 128), ("mixer_b16", 128), ("convmixer_768_32", 64))
JAX_FORMS = saved_activations.FORMS  # the named forms of the extra jax rows
DTYPE = "bfloat16"
NUM_CLASSES = 1000
LR, WEIGHT_DECAY = 1e-4, 0.05  # JaxBench's optax.adamw
GIB = 2**30
DEFAULT_OUT = os.path.join(REPO, "benchmarks", "results", "peer_check")
TORCH_WARMUP = 3  # untimed steps before the windows (torch.compile compiles in the first)
CPU_COMPILE_SKIP = (
    "torch.compile on the CPU with --tiny (its first inductor compile took 110 s on the "
    "2-core development machine); --cpu-torch-compile runs it"
)


@dataclasses.dataclass(frozen=True)
class Spec:
    name: str
    family: str
    hp: dict
    image_size: int
    batch: int

    def batch_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """JaxBench's batch: NHWC float32 images and int32 labels from seed 0."""
        rng = np.random.default_rng(0)
        size = self.image_size
        images = rng.standard_normal((self.batch, size, size, 3), np.float32)
        return images, rng.integers(0, NUM_CLASSES, (self.batch,)).astype(np.int32)


# ------------------------------------------------------------------------------ helpers


def time_windows(step: Callable[[], Any], sync: Callable[[Any], Any], windows: int, steps: int):
    """Seconds per step of each window: `steps` calls of `step`, then one `sync` of the
    last call's output."""
    times = []
    for _ in range(windows):
        start = time.perf_counter()
        for _ in range(steps):
            out = step()
        sync(out)
        times.append((time.perf_counter() - start) / steps)
    return times


def copy_bandwidth(nbytes: int, windows: int = 5, steps: int = 10) -> dict:
    """The device's copy bandwidth: a jitted `x + 0` of an `nbytes` float32 array, bytes
    read + written over the best window's time per call."""
    x = jnp.ones((nbytes // 4,), jnp.float32)
    copy = jax.jit(lambda a: a + 0)
    copy(x).block_until_ready()
    best = min(time_windows(lambda: copy(x), jax.block_until_ready, windows, steps))
    return {"array_bytes": nbytes, "gb_per_s": 2 * nbytes / best / 1e9}


def minimal_bytes(work: dict) -> float:
    """Bytes a train step must move at least: benchmarks/roofline.py's floor (every
    matmul and convolution reads its operands and writes its result once, all else fused
    into them, plus AdamW's 8 float32 passes over the parameters)."""
    return work["gemm_bytes"] + roofline.ADAMW_BYTES_PER_PARAM * work["params"]


def model_work(spec: Spec) -> dict:
    """Parameters, saved-residual bytes, GEMM-boundary bytes and model FLOPs of one train
    step, traced only."""
    fn, args = saved_activations.train_loss(
        spec.name, image_size=spec.image_size, batch=spec.batch, dtype=DTYPE, **spec.hp
    )
    work = roofline.grad_work(fn, args)
    return {
        "params": work["params"],
        "param_bytes": sum(saved_activations.nbytes(p) for p in jax.tree.leaves(args[0])),
        "residual_bytes": saved_activations.residual_bytes(fn, *args),
        "gemm_bytes": work["gemm_bytes"],
        "train_flops": work["flops"],
    }


class _CompileCache:
    """Persistent-cache hits and the compile seconds they saved (jax.monitoring events)."""

    hits, saved_s = 0, 0.0

    @classmethod
    def install(cls) -> None:
        def on_event(event: str, **kwargs) -> None:
            if event == "/jax/compilation_cache/cache_hits":
                cls.hits += 1

        def on_duration(event: str, secs: float, **kwargs) -> None:
            if event == "/jax/compilation_cache/compile_time_saved_sec":
                cls.saved_s += secs

        jax.monitoring.register_event_listener(on_event)
        jax.monitoring.register_event_duration_secs_listener(on_duration)


def jax_peak_bytes() -> int | None:
    stats = jax.devices()[0].memory_stats()
    return None if not stats else stats.get("peak_bytes_in_use")


def nvidia_smi() -> str | None:
    query = "name,driver_version,clocks.sm,clocks.max.sm,clocks.mem"
    try:
        cmd = ["nvidia-smi", f"--query-gpu={query}", "--format=csv"]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def versions() -> dict:
    header = machine_header()  # python, jax, jaxlib, flax, optax, numpy, torch, timm; CPU
    extra: dict[str, Any] = {"jax backend": jax.devices()[0].client.platform_version}
    if torch_available() is None:
        import torch

        extra["torch cuda"] = torch.version.cuda
        extra["cudnn"] = torch.backends.cudnn.version() if torch.cuda.is_available() else None
    return {**header, **extra, "nvidia-smi": nvidia_smi()}


def torch_missing(family: str) -> str | None:
    """Why the PyTorch side cannot run, or None."""
    why = torch_available()
    if why or family not in ("mixer", "convmixer"):
        return why
    try:
        import timm_import  # noqa: F401  (timm without torchvision)
    except Exception as err:  # noqa: BLE001 - absent or broken: the reason is shown
        return f"timm not importable ({type(err).__name__}: {err})"
    return None


# ----------------------------------------------------------------------------- the rows


def jax_row(spec: Spec, args: argparse.Namespace, out: Path, forms: str = "default") -> dict:
    hits, saved = _CompileCache.hits, _CompileCache.saved_s
    bench = JaxBench(
        spec.name, {**spec.hp, "dtype": jnp.dtype(DTYPE)}, spec.image_size, spec.batch, NUM_CLASSES
    )
    with saved_activations.traced_for(None, forms):  # read when the step is traced
        bench.compile(forward_too=False)
    row: dict[str, Any] = {"compile_s": bench.compile_train_s}
    if _CompileCache.hits > hits:
        row["compile_cached"] = True
        row["compile_s_original"] = bench.compile_train_s + _CompileCache.saved_s - saved
    suffix = "" if forms == "default" else f"_{forms}"
    hlo = out / "hlo" / f"{spec.name}_b{spec.batch}_train_step{suffix}.txt"
    hlo.parent.mkdir(parents=True, exist_ok=True)
    hlo.write_text(bench.step.as_text())
    row["hlo"] = str(hlo.relative_to(out))

    def step():
        bench.train_state, loss = bench.step(bench.train_state, bench.images, bench.labels)
        return loss

    def sync(loss):
        jax.block_until_ready((bench.train_state, loss))

    time_windows(step, sync, 1, 2)  # warm-up
    row["windows_s"] = time_windows(step, sync, args.windows, args.steps)
    if spec.name in args.trace_models:
        trace = out / "trace" / f"{spec.name}{suffix}"
        try:  # a profiler that cannot start (no CUPTI) must not lose the timings
            with jax.profiler.trace(str(trace)):
                time_windows(step, sync, 1, 3)
            row["trace"] = str(trace.relative_to(out))
        except Exception as err:  # noqa: BLE001
            row["trace_error"] = f"{type(err).__name__}: {str(err).splitlines()[0][:200]}"
    row["peak_bytes"] = jax_peak_bytes()
    mib = bench.xla_train_mib  # XLA's count for the compiled step: NaN when it has none
    row["xla_step_gib"] = None if math.isnan(mib) else mib / 1024
    return row


class TorchStep:
    """The PyTorch reference's train step: bf16 autocast, channels_last, AdamW."""

    def __init__(self, spec: Spec, compiled: bool):
        import torch
        import torch_reference

        self.torch = torch
        self.cuda = torch.cuda.is_available()
        self.device = "cuda" if self.cuda else "cpu"
        torch.backends.cudnn.benchmark = True
        torch.set_float32_matmul_precision("high")  # TF32, as XLA's default on NVIDIA
        torch.manual_seed(0)
        model = torch_reference.build(spec.family, spec.hp, spec.image_size, NUM_CLASSES)
        model = model.to(self.device, memory_format=torch.channels_last).train()
        images, labels = spec.batch_arrays()
        self.images = torch.from_numpy(images).permute(0, 3, 1, 2)
        self.images = self.images.to(self.device, memory_format=torch.channels_last)
        self.labels = torch.from_numpy(labels).long().to(self.device)
        self.opt = torch.optim.AdamW(
            model.parameters(), lr=LR, weight_decay=WEIGHT_DECAY, fused=self.cuda
        )
        self.forward = torch.compile(model) if compiled else model
        self.source = torch_reference.SOURCES[spec.family]

    def step(self):
        torch = self.torch
        self.opt.zero_grad(set_to_none=True)
        with torch.autocast(device_type=self.device, dtype=torch.bfloat16):
            logits = self.forward(self.images)
        loss = torch.nn.functional.cross_entropy(logits.float(), self.labels)
        loss.backward()
        self.opt.step()
        return loss

    def sync(self, loss) -> None:
        if self.cuda:
            self.torch.cuda.synchronize()
        else:
            loss.item()


def torch_row(spec: Spec, args: argparse.Namespace, compiled: bool) -> dict:
    why = torch_missing(spec.family)
    if why is None and compiled and args.no_torch_compile:
        why = "--no-torch-compile"
    if why:
        return {"skipped": why}
    import torch

    if not torch.cuda.is_available() and jax.default_backend() != "cpu":
        # e.g. a CPU-only torch build beside JAX on a GPU: a CPU row would compare nothing
        return {"skipped": f"torch sees no CUDA device (JAX runs on {jax.default_backend()})"}
    if compiled and args.tiny and not torch.cuda.is_available() and not args.cpu_torch_compile:
        return {"skipped": CPU_COMPILE_SKIP}
    bench = None
    try:
        bench = TorchStep(spec, compiled)
        if bench.cuda:
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        time_windows(bench.step, bench.sync, 1, TORCH_WARMUP)
        row: dict[str, Any] = {"warmup_s": time.perf_counter() - start, "source": bench.source}
        if compiled:
            row["compile_s"] = row["warmup_s"]
        row["windows_s"] = time_windows(bench.step, bench.sync, args.windows, args.steps)
        row["peak_bytes"] = torch.cuda.max_memory_allocated() if bench.cuda else None
        return row
    finally:  # an out-of-memory too: free what this row took before the next one
        del bench
        if compiled:
            torch._dynamo.reset()
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def finish(spec: Spec, side: str, row: dict, work: dict, bandwidth: dict, min_bytes) -> dict:
    """The row with the model's numbers and, when timed, the derived columns."""
    full = {
        "model": spec.name,
        "batch": spec.batch,
        "side": side,
        "dtype": DTYPE,
        "image_size": spec.image_size,
        **row,
    }
    if "windows_s" not in row:
        return full
    step_s = statistics.median(row["windows_s"])
    full.update(step_ms=1000 * step_s, img_per_s=spec.batch / step_s)
    flops = work.get("train_flops")
    full["train_tflops_per_step"] = None if flops is None else flops / 1e12
    full["mfu"] = mfu.utilisation(flops, 1.0 / step_s, mfu.total_peak(DTYPE))
    nbytes = min_bytes(work) if "params" in work else None
    full["min_gb_per_step"] = None if nbytes is None else nbytes / 1e9
    bw = bandwidth.get("gb_per_s")
    full["bw_util"] = None if nbytes is None or not bw else nbytes / step_s / (bw * 1e9)
    full["peak_gib"] = None if row.get("peak_bytes") is None else row["peak_bytes"] / GIB
    return full


def link_ratios(rows: list[dict]) -> None:
    """Each jax row's step time over its model's torch.compile step time."""
    compiled = {
        (r["model"], r["batch"]): r.get("step_ms") for r in rows if r["side"] == "torch compile"
    }
    for r in rows:
        theirs = compiled.get((r["model"], r["batch"]))
        if r["side"].startswith("jax") and r.get("step_ms") and theirs:
            r["vs_torch_compile"] = r["step_ms"] / theirs


# ------------------------------------------------------------------------------ output


def markdown(result: dict) -> str:
    bw = result.get("copy_bandwidth", {})
    lines = [
        f"{result['device']} ({result['date']})",
        "",
        f"versions: {result['versions'].get('versions')}",
        f"nvidia-smi: {result['versions'].get('nvidia-smi')}",
        f"copy bandwidth: {_fmt(bw.get('gb_per_s'), '.0f', ' GB/s')}"
        + (f" ({bw['error']})" if "error" in bw else ""),
        "",
        "| model | batch | side | step ms | img/s | compile s | peak GiB | model TFLOPs/step "
        "| MFU | min GB/step | BW util | vs torch.compile |",
        "|---|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for r in result["rows"]:
        head = f"| {r['model']} | {r['batch']} | {r['side']} |"
        why = r.get("error") or (r.get("skipped") and f"skipped: {r['skipped']}")
        if why or "step_ms" not in r:
            lines.append(f"{head} {why} |||||||||")
            continue
        compile_s = _fmt(r.get("compile_s"), ".1f")
        if r.get("compile_cached"):
            compile_s += f" (cached; {_fmt(r.get('compile_s_original'), '.1f')})"
        cells = (
            f"{r['step_ms']:.2f}",
            f"{r['img_per_s']:.0f}",
            compile_s,
            _fmt(r.get("peak_gib"), ".2f"),
            _fmt(r.get("train_tflops_per_step"), ".3g"),
            _fmt(r.get("mfu") and 100 * r["mfu"], ".1f", "%"),
            _fmt(r.get("min_gb_per_step"), ".3g"),
            _fmt(r.get("bw_util") and 100 * r["bw_util"], ".1f", "%"),
            _fmt(r.get("vs_torch_compile"), ".3g", "x"),
        )
        lines.append(f"{head} {' | '.join(cells)} |")
    lines += [
        "",
        "step ms: median of the timed windows. compile s: JAX's train-step compile (a "
        "persistent-cache load: the original compile after it), torch.compile's warm-up. "
        "JAX peak GiB: the process's device peak so far. vs torch.compile: JAX step time / "
        "torch.compile step time (< 1: JAX faster). min GB/step: "
        "every matmul's and convolution's operands and result once + AdamW's 8 float32 "
        "passes over the parameters (benchmarks/roofline.py).",
    ]
    for name, work in result["work"].items():
        if "error" in work:
            lines.append(f"error in {name}'s FLOPs and bytes count: {work['error']}")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tiny", action="store_true", help="tiny models on the CPU (smoke test)")
    p.add_argument(
        "--models",
        nargs="+",
        default=None,
        choices=[name for name, _ in FULL],
        help="some of the four models, run in this order",
    )
    p.add_argument("--out", default=DEFAULT_OUT, help="output folder")
    p.add_argument("--budget", type=float, default=900.0, help="seconds; later rows skip")
    p.add_argument("--windows", type=int, default=None, help="timed windows (5; tiny 2)")
    p.add_argument("--steps", type=int, default=None, help="steps per window (20; tiny 2)")
    p.add_argument("--copy-mib", type=int, default=None, help="bandwidth probe (1024; tiny 16)")
    p.add_argument(
        "--trace-models",
        nargs="*",
        default=None,
        help="models whose JAX steps are profiled (all four; tiny: smlpnet_b)",
    )
    p.add_argument(
        "--jax-forms",
        nargs="+",
        default=["default", "plain"],
        choices=sorted(JAX_FORMS),
        help="a jax row for each of these models.backend forms (default: default plain)",
    )
    p.add_argument("--no-torch", action="store_true", help="only the jax rows")
    p.add_argument("--no-torch-compile", action="store_true", help="skip the compile rows")
    p.add_argument(
        "--cpu-torch-compile",
        action="store_true",
        help="with --tiny on a CPU, run the torch.compile rows too (minutes)",
    )
    args = p.parse_args(argv)
    tiny = args.tiny
    args.windows = args.windows or (2 if tiny else 5)
    args.steps = args.steps or (2 if tiny else 20)
    args.copy_mib = args.copy_mib or (16 if tiny else 1024)
    if args.trace_models is None:
        args.trace_models = ["smlpnet_b"] if tiny else [name for name, _ in FULL]
    return args


def main(argv: list[str] | None = None, min_bytes: Callable[[dict], float] = minimal_bytes):
    args = parse_args(argv)
    start = time.monotonic()
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    if not jax.config.jax_compilation_cache_dir:  # $JAX_COMPILATION_CACHE_DIR wins
        jax.config.update("jax_compilation_cache_dir", str(out / "jax_cache"))
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(out / "torchinductor_cache"))
    _CompileCache.install()
    device = jax.devices()[0]
    result: dict[str, Any] = {
        "device": f"{jax.device_count()} x {device.device_kind} ({device.platform})",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "tiny": args.tiny,
        "settings": {
            "windows": args.windows,
            "steps": args.steps,
            "dtype": DTYPE,
            "budget_s": args.budget,
            "min_bytes": getattr(min_bytes, "__name__", ""),
            "jax_compilation_cache_dir": jax.config.jax_compilation_cache_dir,
            "torchinductor_cache_dir": os.environ["TORCHINDUCTOR_CACHE_DIR"],
        },
        "versions": versions(),
        "work": {},
        "rows": [],
    }

    def save(what: str) -> None:
        link_ratios(result["rows"])
        (out / "peer_check.json").write_text(json.dumps(result, indent=1) + "\n")
        (out / "peer_check.md").write_text(markdown(result) + "\n")
        print(f"[{time.monotonic() - start:5.0f} s] {what} done", file=sys.stderr, flush=True)

    result["copy_bandwidth"] = _attempt(copy_bandwidth, args.copy_mib * 2**20)
    save("copy bandwidth")
    sides = {
        ("jax" if forms == "default" else f"jax {forms}"): (
            lambda spec, forms=forms: jax_row(spec, args, out, forms)
        )
        for forms in args.jax_forms
    }
    if not args.no_torch:
        sides["torch eager"] = lambda spec: torch_row(spec, args, compiled=False)
        sides["torch compile"] = lambda spec: torch_row(spec, args, compiled=True)
    batches = dict(FULL)
    late = {"skipped": f"past the {args.budget:.0f} s budget"}
    specs: dict[str, Spec] = {}
    # Two passes over the models, in the order asked (the first matter most): every
    # model's default jax row and its PyTorch rows (the comparison the targets are about),
    # then the other jax forms' rows (the befores), so a budget cut drops those first.
    first = [side for side in sides if not side.startswith("jax ")]
    for pass_sides in (first, [side for side in sides if side not in first]):
        for name in args.models or batches:
            if name not in specs:
                family, hp = hyperparameters(name, args.tiny)
                size = TINY_IMAGE_SIZE if args.tiny else 224
                specs[name] = Spec(name, family, hp, size, 2 if args.tiny else batches[name])
                began = time.monotonic()
                past = began - start > args.budget
                work = dict(late) if past else _attempt(model_work, specs[name])
                result["work"][name] = {**work, "trace_s": time.monotonic() - began}
            spec, work = specs[name], result["work"][name]
            for side in pass_sides:
                if time.monotonic() - start > args.budget:
                    row = dict(late)
                else:
                    began = time.monotonic()
                    row = {**_attempt(sides[side], spec), "row_s": time.monotonic() - began}
                result["rows"].append(
                    finish(spec, side, row, work, result["copy_bandwidth"], min_bytes)
                )
                save(f"{name} {side}")
    print(markdown(result))
    return result


if __name__ == "__main__":
    main()
