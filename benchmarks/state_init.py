"""A fresh train state on one CPU device: one compiled program against op by op.

    PYTHONPATH=. python benchmarks/state_init.py --config configs/smlpnet.py:t
    PYTHONPATH=. python benchmarks/state_init.py --tiny          # CI's smoke test

The train state (parameters, optimiser state, EMA, rng keys) of the config's model and
optimizer, for 1000 classes, made two ways, each in a fresh process (nothing compiled
before it):
  - compiled: `make_state` as one jitted program, compiled with the trainer's options for
    a program that runs once on a CPU (`trainer._RUN_ONCE_CPU_OPTIONS`) and run: what
    `trainer.create_state` did on one CPU device before it went op by op;
  - op by op: `make_state()` outside jit (each op's small program compiled once per shape)
    and placed, as `trainer.create_state` does now.
Prints the seconds of each (wall, from the call to the state in memory) and how the two
states' values differ (leaves with any different value, the largest difference).

`--draws 25 50 100 200 424` also times XLA's compile of a program of n normal draws, one
per parameter array of the model (its first n, in their shapes), with the same options:
how that compile grows with the number of draws.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _make_state(config_arg: str, tiny: bool):
    from smlp_jax.train import config_file, optim, state

    config = config_file.load(config_arg)
    if tiny:
        config.model_kwargs.dim = 16
        config.model_kwargs.depths = (1, 1)
        config.image_size = 16
    # Any schedule: the state's arrays do not depend on its values.
    schedule = optim.learning_rate_schedule(config, 1000, 10)
    tx = optim.make_optimizer(config, schedule, 1000)
    return functools.partial(state.init_state, config, 1000, tx)


def child(mode: str, config_arg: str, tiny: bool, out: str) -> None:
    """One way of making the state, timed; its values to `out` (.npz)."""
    import jax
    import numpy as np

    from smlp_jax.train import trainer
    from smlp_jax.train.checkpoint.encoding import keys_to_data

    make_state = _make_state(config_arg, tiny)
    start = time.perf_counter()
    if mode == "compiled":
        lowered = jax.jit(make_state).lower()
        state = lowered.compile(compiler_options=trainer._RUN_ONCE_CPU_OPTIONS)()
    else:
        state = trainer._own_buffers(make_state())
    jax.block_until_ready(state)
    seconds = time.perf_counter() - start
    leaves = [np.asarray(leaf) for leaf in jax.tree.leaves(keys_to_data(state))]
    np.savez(out, *leaves)
    print(json.dumps({"mode": mode, "seconds": seconds, "leaves": len(leaves)}))


def draws_compile_seconds(config_arg: str, tiny: bool, counts: list[int]) -> dict[int, float]:
    """XLA's compile seconds of a program of the first n parameters' normal draws, per n."""
    import jax

    from smlp_jax.train import trainer

    make_state = _make_state(config_arg, tiny)
    shapes = jax.tree.leaves(jax.eval_shape(make_state)["params"])
    seconds = {}
    for n in counts:

        def draws(n=n):
            key = jax.random.key(0)
            return [
                jax.random.normal(jax.random.fold_in(key, i), a.shape, a.dtype)
                for i, a in enumerate(shapes[:n])
            ]

        lowered = jax.jit(draws).lower()
        start = time.perf_counter()
        lowered.compile(compiler_options=trainer._RUN_ONCE_CPU_OPTIONS)
        count = min(n, len(shapes))
        seconds[count] = time.perf_counter() - start
        print(f"  {count:4d} draws: compiled in {seconds[count]:.1f} s", flush=True)
    return seconds


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", default="configs/smlpnet.py:t", help="a config and variant")
    p.add_argument("--tiny", action="store_true", help="a tiny model at 16 px (smoke test)")
    p.add_argument("--draws", type=int, nargs="*", default=[], help="draw counts to compile")
    p.add_argument("--child", choices=("compiled", "op_by_op"), help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        child(args.child, args.config, args.tiny, args.out)
        return {}

    import numpy as np

    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": REPO}
    env["XLA_FLAGS"] = " ".join(  # one device: the path `create_state` takes op by op
        f for f in env.get("XLA_FLAGS", "").split() if "device_count" not in f
    )
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for mode in ("compiled", "op_by_op"):
            out = os.path.join(tmp, f"{mode}.npz")
            command = [sys.executable, os.path.abspath(__file__), "--child", mode]
            command += ["--config", args.config, "--out", out] + (["--tiny"] if args.tiny else [])
            done = subprocess.run(command, env=env, capture_output=True, text=True, cwd=REPO)
            if done.returncode:
                raise SystemExit(f"{mode}: {done.stderr[-2000:]}")
            rows[mode] = json.loads(done.stdout.strip().splitlines()[-1])
            rows[mode]["values"] = out
        a, b = (np.load(rows[m].pop("values")) for m in ("compiled", "op_by_op"))
        differ = [k for k in a.files if not np.array_equal(a[k], b[k])]
        largest = max(
            (float(np.max(np.abs(a[k].astype(np.float64) - b[k]))) for k in differ), default=0.0
        )
    result = {**rows, "leaves_differing": len(differ), "largest_difference": largest}
    what = f"{args.config}{' (tiny)' if args.tiny else ''}"
    print(f"train state of {what}, {rows['compiled']['leaves']} leaves:")
    for mode in ("compiled", "op_by_op"):
        print(f"  {mode:9s} {rows[mode]['seconds']:6.1f} s")
    print(f"  values: {len(differ)} leaves differ, by at most {largest:.3g}")
    if args.draws:
        print("a program of normal draws in the parameters' shapes:")
        result["draws"] = draws_compile_seconds(args.config, args.tiny, args.draws)
    return result


if __name__ == "__main__":
    main()
