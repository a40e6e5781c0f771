"""Run by tests/train/test_expert_parallel.py: main.py's run, exactly as on the command
line, plus a record of what it did with the experts, printed at the end as one line
`EXPERTS {json}`:

- `state_specs`: the partition spec of each expert weight of the created train state;
- `traced_meshes`: the mesh axes (name: size) the MoE layers found in context while the
  steps were traced (empty: no mesh, so their expert-axis constraint was skipped);
- `collectives`: how many of each collective op the compiled train step holds.

Usage, from the repository root, with main.py's flags:
  python -m tests.train.expert_parallel_run --config=configs/sparse_mlp.py:demo ...
"""

from __future__ import annotations

import json
import re
import runpy
import sys

import jax

from smlp_jax.models import moe
from smlp_jax.train import sharding, trainer
from tests.train.tiny import REPO

COLLECTIVES = ("all-to-all", "all-gather", "all-reduce", "reduce-scatter", "collective-permute")


def main() -> None:
    seen: dict = {"state_specs": {}, "traced_meshes": [], "steps": [], "batch": None}
    build, create_state, under_mesh = trainer.build, trainer.create_state, sharding.under_mesh
    constrain, global_batch = moe._constrain_to_expert_axis, sharding.global_batch

    def spy_build(config):
        built = build(config)
        seen["abstract"] = built.abstract
        return built

    def spy_create_state(make_state, shardings):
        state = create_state(make_state, shardings)
        for path, leaf in jax.tree_util.tree_leaves_with_path(state["params"]):
            name = sharding.path_name(path)
            if "experts/" in name:
                seen["state_specs"][name] = [str(e) for e in leaf.sharding.spec]
        return state

    def spy_under_mesh(fn, mesh):
        seen["steps"].append((fn, mesh))
        return under_mesh(fn, mesh)

    def spy_constrain(x):
        seen["traced_meshes"].append(dict(jax.sharding.get_abstract_mesh().shape))
        return constrain(x)

    def spy_global_batch(batch, mesh):
        arrays = global_batch(batch, mesh)
        if seen["batch"] is None:
            seen["batch"] = {
                k: jax.ShapeDtypeStruct(v.shape, v.dtype, sharding=v.sharding)
                for k, v in arrays.items()
            }
        return arrays

    trainer.build, trainer.create_state = spy_build, spy_create_state
    sharding.under_mesh, sharding.global_batch = spy_under_mesh, spy_global_batch
    moe._constrain_to_expert_axis = spy_constrain

    sys.argv = [str(REPO / "main.py"), *sys.argv[1:]]
    try:
        runpy.run_path(str(REPO / "main.py"), run_name="__main__")
    except SystemExit as done:
        if done.code:
            raise

    # The train step (the first function the trainer puts under its mesh), lowered again
    # from the same abstract arguments: jit's cache already holds its executable.
    train_step, mesh = seen["steps"][0]
    with jax.set_mesh(mesh):
        hlo = train_step.lower(seen["abstract"], seen["batch"]).compile().as_text()
    collectives = {op: len(re.findall(rf"\b{op}(?:-start)?\(", hlo)) for op in COLLECTIVES}
    report = {
        "state_specs": seen["state_specs"],
        "traced_meshes": seen["traced_meshes"],
        "collectives": collectives,
    }
    print("EXPERTS " + json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
