"""`checkpoint.saved_shapes`: a saved state's array shapes from Orbax's index files, equal
to Orbax's own metadata where arrays were written whole, None where they were written in
pieces or the files are not there; `init_from` reads Orbax's metadata only when it must."""

import json
import subprocess
import sys

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp
import pytest

from smlp_jax.train import checkpoint, init_from
from smlp_jax.train.sharding import path_name
from tests.train.checkpoint_trees import abstract_of, tiny_state
from tests.train.tiny import REPO, subprocess_env


def _orbax_shapes(state_dir) -> dict[str, tuple[int, ...]]:
    saved = ocp.PyTreeCheckpointHandler().metadata(state_dir)
    saved = getattr(saved, "tree", saved)
    leaves = jax.tree_util.tree_flatten_with_path(saved, is_leaf=lambda x: hasattr(x, "shape"))
    return {path_name(p): tuple(leaf.shape) for p, leaf in leaves[0] if hasattr(leaf, "shape")}


def _save(workdir, state) -> object:
    with checkpoint.Checkpointer(workdir, async_save=False) as ckpt:
        ckpt.save(1, state)
    return workdir / "checkpoints" / "1" / "state"


def test_saved_shapes_are_orbaxs_on_one_device(tmp_path):
    """Parameters, batch statistics, a bfloat16 copy, a scalar and typed PRNG keys (stored
    as their uint32 key data)."""
    state_dir = _save(tmp_path / "run", tiny_state(seed=2))
    shapes = checkpoint.saved_shapes(state_dir)
    assert shapes == _orbax_shapes(state_dir)
    assert shapes["model/linear/kernel/value"] == (3, 4) and shapes["step"] == ()
    assert shapes["keys"] == (3, 2)  # three threefry keys, two uint32 words each


@pytest.mark.parametrize("missing", ["_METADATA", "_sharding"])
def test_without_an_index_file_there_are_no_shapes(tmp_path, missing):
    state_dir = _save(tmp_path / "run", {"w": jnp.zeros(3)})
    (state_dir / missing).unlink()
    assert checkpoint.saved_shapes(state_dir) is None


def test_an_index_unlike_the_known_layout_gives_no_shapes(tmp_path):
    state_dir = _save(tmp_path / "run", {"w": jnp.zeros(3)})
    index = json.loads((state_dir / "_METADATA").read_text())
    for entry in index["tree_metadata"].values():
        del entry["value_metadata"]["write_shape"]
    (state_dir / "_METADATA").write_text(json.dumps(index))
    assert checkpoint.saved_shapes(state_dir) is None


# Two fake devices: an array saved from both is written in pieces, sharded or replicated
# (each replica writes a slice), so the index gives no shapes; one device's save, whole.
TWO_DEVICES = """
import json, sys
import jax, jax.numpy as jnp
from jax.sharding import NamedSharding, PartitionSpec as P
from smlp_jax.train import checkpoint
workdir, = sys.argv[1:]
two = jax.make_mesh((2, 1), ("data", "fsdp"))
one = jax.make_mesh((1,), ("data",), devices=jax.devices()[:1])
put = lambda mesh, *spec: jax.device_put(jnp.ones((4, 6)), NamedSharding(mesh, P(*spec)))
states = {
    "one": {"w": put(one, "data"), "b": put(one)},
    "replicated": {"w": put(two)},
    "sharded": {"w": put(two, "data")},
}
out = {}
for name, state in states.items():
    with checkpoint.Checkpointer(f"{workdir}/{name}", async_save=False) as ckpt:
        ckpt.save(1, state)
    shapes = checkpoint.saved_shapes(f"{workdir}/{name}/checkpoints/1/state")
    out[name] = shapes and {k: list(v) for k, v in shapes.items()}
print(json.dumps(out))
"""


def test_arrays_written_in_pieces_give_no_shapes(tmp_path):
    out = subprocess.run(
        [sys.executable, "-c", TWO_DEVICES, str(tmp_path)],
        env=subprocess_env(2),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    shapes = json.loads(out.stdout.splitlines()[-1])
    assert shapes == {"one": {"w": [4, 6], "b": [4, 6]}, "replicated": None, "sharded": None}


def test_init_from_reads_orbax_metadata_only_to_confirm_a_mismatch(tmp_path, monkeypatch):
    state = tiny_state(seed=3)
    _save(tmp_path / "run", state)
    calls = []
    metadata = ocp.PyTreeCheckpointHandler.metadata

    def counted(handler, directory, *args, **kwargs):
        calls.append(directory)
        return metadata(handler, directory, *args, **kwargs)

    monkeypatch.setattr(ocp.PyTreeCheckpointHandler, "metadata", counted)
    init_from.load_for_init(tmp_path / "run", {"model": abstract_of(state)["model"]}, partial=True)
    assert calls == []
    wrong = {"w": jax.ShapeDtypeStruct((5,), jnp.float32)}
    state_dir = _save(tmp_path / "other", {"w": jnp.zeros(3)})
    with pytest.raises(checkpoint.CheckpointError, match=r"'w' is \(3,\) in the checkpoint"):
        init_from.load_for_init(tmp_path / "other", wrong)
    assert calls == [state_dir.absolute()]
