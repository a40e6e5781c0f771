"""Sparse-MLP expert-parallel: the mesh's `expert` axis and the model's partition rules.

The end-to-end test trains the `sparse_mlp` demo config (a few steps, gate noise on) with
main.py on 1 device and on 8 fake devices with mesh data=2 x expert=4 (each device holds
one of the 4 token and 4 channel experts) and every block recomputed in the backward
(`config.remat`): the losses agree. The 8-device run goes
through `expert_parallel_run.py`, which also reports that the created state's expert
weights were split over `expert`, that the MoE layers were traced with that axis in
context, and that the compiled step holds the all-to-alls. The other tests check the
shardings from abstract shapes, in this process (1 device).
"""

import functools
import json
import subprocess
import sys

import jax
import numpy as np
import optax
import pytest
from jax.sharding import AbstractMesh, AxisType, PartitionSpec

from smlp_jax.models import moe
from smlp_jax.train import optim, sharding
from smlp_jax.train.errors import ConfigError
from smlp_jax.train.state import init_state
from tests.train.tiny import REPO, demo_config, read_metrics, subprocess_env

SHORT = {
    "total_steps": 6,
    "log_every": 1,
    "eval_every": 0,  # only at the end
    "checkpoint_every": 0,  # only at the end
    "input.eval_split": "test[:200]",
    "optimizer.warmup_steps": 2,
}
EXPERT_MESH = {"mesh.data": 2, "mesh.expert": 4}
# The 8-device run also recomputes its blocks in the backward (config.remat): the same losses.
REMAT = {"remat": "nothing_saveable"}


def _config(family: str = "sparse_mlp", **changes):
    return demo_config(family, changes)


def _abstract_state(config):
    tx = optim.make_optimizer(config, optax.constant_schedule(1e-3))
    return jax.eval_shape(functools.partial(init_state, config, 10, tx))


def _mesh(data: int, fsdp: int, expert: int) -> AbstractMesh:
    return AbstractMesh((data, fsdp, expert), sharding.AXES, axis_types=(AxisType.Auto,) * 3)


def _specs(shardings) -> dict[str, PartitionSpec]:
    flat = jax.tree_util.tree_leaves_with_path(shardings)
    return {sharding.path_name(path): s.spec for path, s in flat}


def test_expert_rule_covers_weights_moments_and_ema_and_leaves_the_rest_alone():
    abstract = _abstract_state(_config(**{"ema.decay": 0.9}))
    for mode, mesh, min_size in (
        ("replicate", _mesh(2, 1, 4), 2**14),
        ("fsdp", _mesh(2, 2, 2), 256),
    ):
        rules = moe.partition_rules()
        with_rules = _specs(sharding.state_shardings(abstract, mesh, mode, min_size, rules))
        without = _specs(sharding.state_shardings(abstract, mesh, mode, min_size))
        expert_names = [name for name in with_rules if "/experts/" in name]
        # 2 MoE layers x 4 weights, each as a parameter, Adam's mu and nu, and EMA.
        assert len(expert_names) == 32, expert_names
        assert {name.split("/")[0] for name in expert_names} == {"params", "opt_state", "ema"}
        for name, spec in with_rules.items():
            if name in expert_names:
                assert spec[0] == "expert", (mode, name, spec)
            else:
                assert spec == without[name], (mode, name)  # as before the rules existed
        if mode == "fsdp":
            # fsdp still splits another dimension of the larger expert weights.
            kernel = with_rules["params/blocks/1/channel_moe/experts/fc1_kernel"]
            assert kernel == PartitionSpec("expert", None, "fsdp"), kernel
            assert any("fsdp" in spec for spec in without.values())


def test_expert_axis_must_divide_the_expert_count():
    abstract = _abstract_state(_config())
    with pytest.raises(ConfigError) as err:
        sharding.state_shardings(
            abstract, _mesh(1, 1, 8), "replicate", 2**14, moe.partition_rules()
        )
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("config.mesh.expert=8 does not divide params/blocks/1/"), message
    assert "size 4 (its number of experts); use a divisor of 4." in message


def test_mesh_has_an_expert_axis_of_one_by_default_and_splits_the_batch_over_all_axes():
    import ml_collections

    mesh = sharding.make_mesh(ml_collections.ConfigDict({"data": -1, "fsdp": 1}))
    assert mesh.axis_names == ("data", "fsdp", "expert")
    assert dict(mesh.shape) == {"data": jax.device_count(), "fsdp": 1, "expert": 1}
    assert sharding.data_parallel_size(_mesh(2, 1, 4)) == 8
    assert sharding.BATCH_SPEC == PartitionSpec(("data", "fsdp", "expert"))
    # A model without experts leaves the axis to the batch (the trainer says so).
    for family, uses in (("sparse_mlp", True), ("smlpnet", False)):
        state = _abstract_state(_config(family))
        shardings = sharding.state_shardings(
            state, _mesh(2, 1, 4), "replicate", 2**14, moe.partition_rules()
        )
        assert sharding.uses_axis(shardings, "expert") is uses, family
    # The steps run under the mesh: that is where the MoE layers look for `expert`.
    seen = sharding.under_mesh(lambda: dict(jax.sharding.get_abstract_mesh().shape), mesh)()
    assert seen == dict(mesh.shape)


def _flags(workdir, data_dir, changes) -> list[str]:
    overrides = {"data_dir": data_dir, **SHORT, **changes}
    return [
        "--config=" + str(REPO / "configs" / "sparse_mlp.py") + ":demo",
        f"--workdir={workdir}",
        *(f"--config.{k}={v}" for k, v in overrides.items()),
    ]


def test_expert_parallel_training_matches_one_device(demo_data_dir, tmp_path):
    # Both children at once (the machine's cores are shared between them).
    runs = {
        "one_device": (1, [str(REPO / "main.py")], {}),
        "data2_expert4": (8, ["-m", "tests.train.expert_parallel_run"], {**EXPERT_MESH, **REMAT}),
    }
    procs = {}
    for name, (devices, program, changes) in runs.items():
        command = [sys.executable, *program, *_flags(tmp_path / name, demo_data_dir, changes)]
        env = subprocess_env(devices, cache_dir=str(tmp_path / f"cache_{name}"))
        procs[name] = subprocess.Popen(
            command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=REPO, text=True
        )
    logs = {}
    for name, proc in procs.items():
        try:
            logs[name] = proc.communicate(timeout=300)[0]
        finally:
            proc.kill()
        assert proc.returncode == 0, logs[name][-3000:]

    assert "mesh {'data': 2, 'fsdp': 1, 'expert': 4}" in logs["data2_expert4"]
    report = json.loads(logs["data2_expert4"].split("EXPERTS ", 1)[1].splitlines()[0])
    # Every expert weight (2 MoE layers x 4) was created split over the expert axis.
    assert len(report["state_specs"]) == 8
    assert all(spec[0] == "expert" for spec in report["state_specs"].values()), report
    # The train and eval steps were traced with the expert axis in context (2 layers x 2
    # constraints each), so the dispatched tokens are pinned to it: all-to-alls.
    assert report["traced_meshes"] == [{"data": 2, "fsdp": 1, "expert": 4}] * 8
    assert report["collectives"]["all-to-all"] > 0, report["collectives"]

    one, many = (read_metrics(tmp_path / name) for name in runs)
    losses = [[m["train/loss"] for m in run if "train/loss" in m] for run in (one, many)]
    assert len(losses[0]) == SHORT["total_steps"]
    # Same routing, same gate noise (threefry is partitionable: the noise does not depend
    # on how the logits are split); only the order of float sums differs.
    np.testing.assert_allclose(losses[1], losses[0], rtol=1e-5)
    evals = [[m for m in run if "eval/loss" in m][-1] for run in (one, many)]
    for key in ("eval/loss", "eval/top1", "eval/top5"):
        assert evals[1][key] == pytest.approx(evals[0][key], rel=1e-5), key
