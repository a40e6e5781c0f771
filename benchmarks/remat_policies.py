"""Blocks recomputed in the backward (`config.remat`): what each policy saves and costs.

    python benchmarks/remat_policies.py --models smlpnet_t smlpnet_b mixer_b16 \\
        convmixer_768_32 --step-model smlpnet_t --batch 8
    python benchmarks/remat_policies.py --tiny --policies none nothing_saveable  # CI's

Two tables, one row a `smlp_jax.models.remat` policy ("none": everything kept):

- saved activations: bytes per image the train step's backward keeps (bf16, traced for a
  GPU's forms; nothing compiled: `saved_activations.profile`), and the batch-independent
  bytes (e.g. the bf16 copies of the weights);
- on this machine: a library user's float32 train step of `--step-model` at `--batch`
  (`throughput.JaxBench`, optax AdamW), each policy compiled in this process and timed in
  interleaved rounds (median of `--repeats`), with XLA's temporary memory for the step
  (`memory_analysis().temp_size_in_bytes`: the activations' share of the step's memory).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import saved_activations  # noqa: E402
import throughput  # noqa: E402

from smlp_jax.models import remat  # noqa: E402
from smlp_jax.models.registry import get_entry  # noqa: E402


def _name(policy: str) -> str:
    return policy or "none"


def saved_table(models: list[str], tiny: bool, platform: str, policies: list[str]) -> str:
    size = throughput.TINY_IMAGE_SIZE if tiny else 224
    lines = [
        "| model | " + " | ".join(f"{_name(p)} MB/image" for p in policies) + " |",
        "|---|" + "--:|" * len(policies),
    ]
    for name in models:
        overrides = throughput.TINY[get_entry(name).family] if tiny else {}
        cells = []
        for policy in policies:
            with saved_activations.traced_for(platform), remat.policy(policy):
                row = saved_activations.profile(name, image_size=size, **overrides)
            cells.append(f"{row['bytes_per_image'] / 1e6:.3g} (+{row['fixed_bytes'] / 1e6:.3g})")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def step_table(
    name: str, batch: int, repeats: int, iters: int, tiny: bool, policies: list[str]
) -> str:
    _, hp = throughput.hyperparameters(name, tiny)
    size = throughput.TINY_IMAGE_SIZE if tiny else 224
    benches, compile_s = {}, {}
    for policy in policies:
        bench = throughput.JaxBench(name, hp, size, batch, 10 if tiny else 1000)
        start = time.perf_counter()
        with remat.policy(policy):  # read when the step is traced
            bench.compile(train=True, forward_too=False)
        compile_s[policy] = time.perf_counter() - start
        bench.run_train()  # the first call's one-off costs, untimed
        benches[policy] = bench
    times: dict[str, list[float]] = {p: [] for p in policies}
    for _ in range(repeats):  # interleaved: load drift hits every policy alike
        for policy, bench in benches.items():
            start = time.perf_counter()
            for _ in range(iters):
                bench.run_train()
            times[policy].append((time.perf_counter() - start) / iters)
    base = statistics.median(times[policies[0]])
    lines = [
        f"| {name}, batch {batch} | step ms (rounds) | vs {_name(policies[0])} "
        "| XLA temp MiB | compile s |",
        "|---|--:|--:|--:|--:|",
    ]
    for policy, bench in benches.items():
        ms = statistics.median(times[policy])
        temp = bench.step.memory_analysis().temp_size_in_bytes / 2**20
        rounds = ", ".join(f"{1e3 * t:.0f}" for t in times[policy])
        lines.append(
            f"| {_name(policy)} | {1e3 * ms:.0f} ({rounds}) | {ms / base:.2f}x "
            f"| {temp:.0f} | {compile_s[policy]:.1f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["smlpnet_t", "smlpnet_b", "mixer_b16"])
    p.add_argument("--platform", default="gpu", choices=("cpu", "gpu", "tpu"))
    p.add_argument("--step-model", default="smlpnet_t")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--iters", type=int, default=1)
    p.add_argument("--tiny", action="store_true", help="tiny hyperparameters at 32 px")
    p.add_argument(
        "--policies",
        nargs="+",
        default=["none", *remat.POLICIES],
        choices=["none", *remat.POLICIES],
        help="the first is the one the others' step times are compared with",
    )
    args = p.parse_args(argv)
    policies = ["" if name == "none" else name for name in args.policies]
    print(f"# saved activations, bf16, traced for {args.platform} (MB/image; + fixed MB)")
    print(saved_table(args.models, args.tiny, args.platform, policies), flush=True)
    host = throughput.machine_header()["host"]
    print(f"\n# a user's float32 train step on this machine ({host})")
    print(step_table(args.step_model, args.batch, args.repeats, args.iters, args.tiny, policies))


if __name__ == "__main__":
    main()
