"""The trainer's train step as a compiled program: its size, its compile, its load, its run.

    PYTHONPATH=. python benchmarks/step_program.py --config configs/smlpnet.py:t \
        --tree before=/tmp/before --tree after=. --runs 2
    PYTHONPATH=. python benchmarks/step_program.py --tiny       # CI's smoke test

The step is the one `main.py` runs (`trainer.jit_train_step`: state donated, on its
shardings), for the config on the bundled demo digits (`dataset=demo`, 1,000-class head
unchanged: the config's model at its image size) at `--batch` images, one CPU device.
Each run is a fresh process (nothing compiled or cached before it); the code trees given
alternate run by run, so machine load drifts hit each alike. Per run:

  - trace / lower / compile: seconds of JAX's tracing to a jaxpr, lowering to MLIR and
    XLA's compile (what a first `main.py` run pays before its first step);
  - instructions: the compiled program's entry computation, counted by op (fusion, copy,
    ...): on XLA CPU each is a thunk of the executable's execution graph;
  - temp MiB: XLA's plan of the step's temporaries (activations, gradients: besides the
    state and the batch, `compiled.memory_analysis()`);
  - MB and load: the serialised executable (what the persistent compilation cache stores)
    and the seconds to deserialise and load it, twice (the first also warms the loader):
    the cache's read, without the disk, which a second `main.py` run pays;
  - step: the median seconds of `--steps` calls on one real batch (after one untimed).

Rows go to `--out` (JSON lines) as they are measured; a markdown table is printed.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import statistics
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _config(config_arg: str, tiny: bool, batch: int):
    from smlp_jax import data
    from smlp_jax.train import config_file

    config = config_file.load(config_arg)
    config.dataset = "demo"
    config.batch_size = config.eval_batch_size = batch
    # An epoch at least: a recipe's per-epoch lr schedule refuses less.
    config.total_steps = -(-data.get_dataset_info(config).num_train // batch)
    config.compilation_cache_dir = ""
    if tiny:
        config.model_kwargs.dim = 16
        config.model_kwargs.depths = (1, 1)
        config.image_size = 16
    return config


def _jit_train_step(config, setup):
    from smlp_jax.train import trainer

    if hasattr(trainer, "jit_train_step"):
        return trainer.jit_train_step(config, setup)
    # Trees from before `jit_train_step` existed: the same jit, as their `_train` wrote it.
    import jax

    from smlp_jax.train import sharding
    from smlp_jax.train.step import make_train_step

    mesh, shardings = setup.mesh, setup.shardings
    replicated = sharding.replicated(mesh)
    step = make_train_step(
        config, setup.graphs, setup.tx, setup.schedule, setup.info.num_classes, setup.plan
    )
    jitted = jax.jit(
        step,
        in_shardings=(shardings, sharding.batch_sharding(mesh)),
        out_shardings=(shardings, replicated, replicated),
        donate_argnums=(0,),
    )
    return sharding.under_mesh(jitted, mesh)


def count_ops(hlo_text: str) -> dict[str, int]:
    """Instructions of an HLO module's ENTRY computation, by opcode."""
    entry = hlo_text[hlo_text.index("\nENTRY") :]
    ops = collections.Counter()
    for line in entry.splitlines()[1:]:
        found = re.search(r"= \S+ ([a-z][\w-]*)\(", line)
        if found:
            ops[found.group(1)] += 1
    return dict(ops)


def child(config_arg: str, tiny: bool, batch: int, steps: int) -> dict:
    """One run in this (fresh) process: the measures of the module docstring."""
    import jax
    import numpy as np
    from jax.experimental import serialize_executable

    from smlp_jax import data
    from smlp_jax.train import sharding, trainer

    config = _config(config_arg, tiny, batch)
    setup = trainer.build(config)
    train_step = _jit_train_step(config, setup)
    train_iter = data.create_train_iterator(config)
    host_batch = next(iter(train_iter))
    train_iter.close()
    batch_arrays = sharding.global_batch(host_batch, setup.mesh)
    abstract_batch = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), batch_arrays
    )
    jitted = train_step.__wrapped__  # the jit inside `under_mesh`
    with jax.set_mesh(setup.mesh):
        start = time.perf_counter()
        traced = jitted.trace(setup.abstract, abstract_batch)
        traced_at = time.perf_counter()
        lowered = traced.lower()
        lowered_at = time.perf_counter()
        compiled = lowered.compile()
        compiled_at = time.perf_counter()
    ops = count_ops(compiled.as_text())
    payload, in_tree, out_tree = serialize_executable.serialize(compiled)
    loads = []
    for _ in range(2):
        start_load = time.perf_counter()
        serialize_executable.deserialize_and_load(payload, in_tree, out_tree)
        loads.append(time.perf_counter() - start_load)
    state = trainer.create_state(setup.make_state, setup.shardings)
    times = []
    for _ in range(steps + 1):
        start_step = time.perf_counter()
        state, metrics, bad = compiled(state, batch_arrays)
        jax.block_until_ready((state, metrics, bad))
        times.append(time.perf_counter() - start_step)
    return {
        "trace_s": traced_at - start,
        "lower_s": lowered_at - traced_at,
        "compile_s": compiled_at - lowered_at,
        "instructions": sum(ops.values()),
        "fusions": ops.get("fusion", 0),
        "copies": ops.get("copy", 0),
        "executable_mb": len(payload) / 1e6,
        "temp_mb": compiled.memory_analysis().temp_size_in_bytes / 2**20,
        "load_s": loads,
        "step_s": statistics.median(times[1:]),
        "finite": bool(np.isfinite(float(metrics.compute()["loss"]))),
        "leaves": len(jax.tree.leaves(setup.abstract)),
    }


def _run(tree: str, args) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.path.abspath(tree)
    env["JAX_PLATFORMS"] = "cpu"
    env["JAX_COMPILATION_CACHE_DIR"] = ""  # nothing persisted between processes
    env.pop("XLA_FLAGS", None)  # one device, XLA's default options (as main.py)
    command = [sys.executable, os.path.abspath(__file__), "--child", "--config", args.config]
    command += ["--batch", str(args.batch), "--steps", str(args.steps)]
    command += ["--tiny"] if args.tiny else []
    done = subprocess.run(command, env=env, capture_output=True, text=True, cwd=REPO)
    if done.returncode:
        raise SystemExit(f"{tree}: {done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", default="configs/smlpnet.py:t", help="a config and variant")
    p.add_argument("--tree", action="append", default=[], help="NAME=PATH (default: this)")
    p.add_argument("--runs", type=int, default=1, help="fresh processes per tree")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--steps", type=int, default=5, help="timed steps (median)")
    p.add_argument("--tiny", action="store_true", help="a tiny model at 16 px (smoke test)")
    p.add_argument("--out", default=None, help="append each row here (JSON lines)")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.config, args.tiny, args.batch, args.steps)))
        return []

    trees = [t.split("=", 1) for t in args.tree] or [["this", REPO]]
    for name, path in trees:
        if not os.path.isdir(os.path.join(path, "smlp_jax")):
            p.error(f"--tree {name}={path}: no smlp_jax package there")
    rows = []
    for run in range(args.runs):
        for name, path in trees:
            row = {"tree": name, "run": run + 1, "config": args.config, "batch": args.batch}
            row.update(_run(path, args))
            rows.append(row)
            print(json.dumps(row), flush=True)
            if args.out:
                with open(args.out, "a") as f:
                    f.write(json.dumps(row) + "\n")
    print(
        "\n| tree | run | trace / lower / compile s | instructions (fusions, copies) "
        "| temp MiB | executable MB | load s | step s |\n|---|--:|---|---|--:|--:|---|--:|"
    )
    for r in rows:
        print(
            f"| {r['tree']} | {r['run']} | {r['trace_s']:.1f} / {r['lower_s']:.1f} / "
            f"{r['compile_s']:.1f} | {r['instructions']} ({r['fusions']}, {r['copies']}) "
            f"| {r['temp_mb']:.0f} | {r['executable_mb']:.1f} "
            f"| {r['load_s'][0]:.1f}, {r['load_s'][1]:.1f} | {r['step_s']:.3f} |"
        )
    return rows


if __name__ == "__main__":
    main()
