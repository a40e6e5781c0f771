"""How cost grows: batch size, image size, and the train state's bytes per device.

Three parts (`--parts`, default all):

  batch  sMLPNet-T at 224: train-step time per image and the compiled step's memory
         (XLA arguments + outputs + temporaries - aliases) for each `--batch-sizes`.
  image  sMLPNet-T against Mixer-S/16 at each of `--image-sizes` (64..384), batch
         `--batch`: train-step ms, memory, MACs per image and token-mixing parameters.
         Per block, sMLP's two axial mixes cost 2 N^3 C multiply-adds on an N x N grid
         (O(N^2 C) per token... O(N^3 C) per image), a full N^2 x N^2 token MLP would cost
         N^4 C, and Mixer's bottleneck token MLP (N^2 -> D_S -> N^2) costs 2 N^2 D_S C with
         2 N^2 D_S parameters: Mixer's weights are tied to the grid, sMLPNet's only to the
         axis length.
  fsdp   per-device bytes of the train state (params, AdamW moments, everything the
         trainer keeps) for `--fsdp-models` replicated vs FSDP over 8 devices, from the
         trainer's own partition rules (`smlp_jax.train.sharding`) on 8 fake CPU devices
         (a child process: XLA_FLAGS must be set before jax starts). Nothing is
         allocated: the state is abstract and each leaf counts its shard's shape.

  python benchmarks/scaling.py [--parts batch image fsdp] [--plot docs/scaling.png]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, "benchmarks"))


def _step_cost(name: str, image_size: int, batch: int, repeats: int) -> dict:
    """Compile and time one model's jitted train step (the throughput harness's)."""
    import statistics

    from throughput import JaxBench, _timed_calls, hyperparameters

    family, hp = hyperparameters(name, tiny=False)
    bench = JaxBench(name, hp, image_size, batch, num_classes=1000)
    bench.compile()
    bench.run_train()  # warm-up
    per_call = statistics.median(_timed_calls(bench.run_train, 1) for _ in range(repeats))
    token_params = _token_mixing_params(bench, family)
    return {
        "model": name,
        "image_size": image_size,
        "batch": batch,
        "train_ms_per_image": 1e3 * per_call / batch,
        "xla_train_mib": bench.xla_train_mib,
        "gmacs_per_image": bench.macs / 1e9,
        "params": bench.params_count,
        "token_mixing_params": token_params,
        "compile_s": bench.compile_train_s,
    }


TOKEN_MIXING = {"smlpnet": ("/mix_w/", "/mix_h/"), "mixer": ("/token_mixing/",)}


def _token_mixing_params(bench, family: str) -> int:
    """Parameters of the token-mixing weights (sMLP axial kernels; Mixer token MLPs)."""
    import jax
    import numpy as np

    from smlp_jax.train.sharding import path_name

    total = 0
    for path, leaf in jax.tree_util.tree_leaves_with_path(bench.train_state[0]):
        keys = "/" + path_name(path)
        if any(part in keys for part in TOKEN_MIXING.get(family, ())):
            total += int(np.prod(leaf.shape))
    return total


def part_batch(args) -> list[dict]:
    rows = []
    for b in args.batch_sizes:
        rows.append(_step_cost("smlpnet_t", 224, b, args.repeats))
        _log(f"batch {b}: {rows[-1]['train_ms_per_image']:.0f} ms/image")
    return rows


def part_image(args) -> list[dict]:
    rows = []
    for size in args.image_sizes:
        for name in ("smlpnet_t", "mixer_s16"):
            rows.append(_step_cost(name, size, args.batch, args.repeats))
            _log(f"{name} {size}px: {rows[-1]['train_ms_per_image']:.0f} ms/image")
    return rows


def fsdp_bytes(models: list[str], devices: int) -> list[dict]:
    """(Runs with `devices` fake devices.) Per-device train-state bytes per sharding mode."""
    import functools

    import jax
    import numpy as np

    from smlp_jax.models import moe
    from smlp_jax.train import optim, sharding
    from smlp_jax.train.state import init_state

    assert jax.device_count() == devices, jax.devices()
    rows = []
    for name in models:
        family = name.split("_")[0]
        module = __import__(f"configs.{_config_file(family)}", fromlist=["get_config"])
        config = module.get_config(name.rsplit("_", 1)[-1])
        config.unlock()
        config.model = name
        schedule = optim.learning_rate_schedule(config, 1000, 100)
        tx = optim.make_optimizer(config, schedule)
        abstract = jax.eval_shape(functools.partial(init_state, config, 1000, tx))
        row = {"model": name, "devices": devices, "ema": bool(config.ema.decay)}
        for mode, mesh_shape in (("replicate", {"data": -1}), ("fsdp", {"data": 1, "fsdp": -1})):
            mesh = sharding.make_mesh(mesh_shape)
            shardings = sharding.state_shardings(
                abstract, mesh, mode, config.fsdp_min_size, moe.partition_rules()
            )
            per_device = 0
            params_opt = 0
            for (path, leaf), s in zip(
                jax.tree_util.tree_leaves_with_path(abstract), jax.tree.leaves(shardings)
            ):
                shard = s.shard_shape(leaf.shape)
                if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
                    itemsize = 8  # a threefry key is two uint32 words
                else:
                    itemsize = np.dtype(leaf.dtype).itemsize
                n = int(np.prod(shard)) * itemsize
                per_device += n
                top = str(getattr(path[0], "key", ""))
                if top in ("params", "opt_state"):
                    params_opt += n
            row[f"{mode}_bytes"] = per_device
            row[f"{mode}_params_opt_bytes"] = params_opt
        row["ratio"] = row["fsdp_params_opt_bytes"] / row["replicate_params_opt_bytes"]
        rows.append(row)
    return rows


def _config_file(family: str) -> str:
    return {"smlpnet": "smlpnet", "mixer": "mixer", "sparse": "sparse_mlp"}.get(family, family)


def part_fsdp(args) -> list[dict]:
    env = dict(os.environ)
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={args.devices}"
    env["JAX_PLATFORMS"] = "cpu"
    code = (
        "import json, sys; sys.path.insert(0, 'benchmarks'); import scaling; "
        f"print(json.dumps(scaling.fsdp_bytes({args.fsdp_models!r}, {args.devices})))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=REPO, capture_output=True, text=True
    )
    if out.returncode:
        raise SystemExit(f"fsdp part failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _log(msg: str) -> None:
    print(f"  [{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def print_tables(results: dict) -> None:
    if "batch" in results:
        print("\n## sMLPNet-T train step against batch size (224 px)")
        print("| batch | ms / image | XLA train MiB | compile s |\n|---|---|---|---|")
        for r in results["batch"]:
            print(
                f"| {r['batch']} | {r['train_ms_per_image']:.0f} | {r['xla_train_mib']:.0f} "
                f"| {r['compile_s']:.0f} |"
            )
    if "image" in results:
        print(f"\n## Train step against image size (batch {results['image'][0]['batch']})")
        print(
            "| px | model | ms / image | XLA train MiB | GMACs / image | params "
            "| token-mixing params |\n|---|---|---|---|---|---|---|"
        )
        for r in results["image"]:
            print(
                f"| {r['image_size']} | {r['model']} | {r['train_ms_per_image']:.0f} "
                f"| {r['xla_train_mib']:.0f} | {r['gmacs_per_image']:.2f} "
                f"| {r['params'] / 1e6:.2f}M | {r['token_mixing_params'] / 1e6:.3f}M |"
            )
    if "fsdp" in results:
        n = results["fsdp"][0]["devices"]
        print(f"\n## Train-state bytes per device, {n} devices")
        print(
            "| model | replicated MiB (params + AdamW) | FSDP MiB | FSDP / replicated "
            f"| target 1.1/{n} | whole state replicated / FSDP MiB |\n|---|---|---|---|---|---|"
        )
        for r in results["fsdp"]:
            print(
                f"| {r['model']} | {r['replicate_params_opt_bytes'] / 2**20:.1f} "
                f"| {r['fsdp_params_opt_bytes'] / 2**20:.1f} | {r['ratio']:.4f} "
                f"| {1.1 / n:.4f} | {r['replicate_bytes'] / 2**20:.1f} / "
                f"{r['fsdp_bytes'] / 2**20:.1f} |"
            )


def plot(results: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = results["image"]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for name, style in (("smlpnet_t", "o-"), ("mixer_s16", "s--")):
        rs = [r for r in rows if r["model"] == name]
        px = [r["image_size"] for r in rs]
        axes[0].plot(px, [r["train_ms_per_image"] for r in rs], style, label=name)
        axes[1].plot(px, [r["gmacs_per_image"] for r in rs], style, label=name)
        axes[2].plot(px, [r["token_mixing_params"] / 1e6 for r in rs], style, label=name)
    for ax, title in zip(
        axes, ("train step ms / image (CPU)", "GMACs / image", "token-mixing params (M)")
    ):
        ax.set_xlabel("image size (px)")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"\nwrote {path}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--parts", nargs="+", default=["batch", "image", "fsdp"])
    p.add_argument("--batch-sizes", nargs="+", type=int, default=[2, 8, 32])
    p.add_argument("--image-sizes", nargs="+", type=int, default=[64, 128, 224, 320, 384])
    p.add_argument("--batch", type=int, default=4, help="batch of the image-size part")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--devices", type=int, default=8)
    p.add_argument("--fsdp-models", nargs="+", default=["smlpnet_t", "smlpnet_b", "mixer_b16"])
    p.add_argument("--json", default=None)
    p.add_argument("--plot", default=None, help="PNG of the image-size part")
    args = p.parse_args()
    import jax

    print(
        f"# {time.strftime('%Y-%m-%d %H:%M %Z')}; jax {jax.__version__}; "
        f"{jax.devices()[0].device_kind}; {os.cpu_count()} cores; load {os.getloadavg()[0]:.2f}"
    )
    parts = {"batch": part_batch, "image": part_image, "fsdp": part_fsdp}
    results = {name: parts[name](args) for name in args.parts}
    print_tables(results)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    if args.plot and "image" in results:
        plot(results, args.plot)


if __name__ == "__main__":
    from smlp_jax.tools import hugepages

    hugepages.reexec_with_hugepages()  # as main.py trains: see smlp_jax/tools/hugepages.py
    main()
