"""`init_from.load_for_init`: the train state (or a sub-tree) from one of our checkpoints,
given a workdir, its checkpoints folder or one step; damaged steps skipped but left alone,
unreadable ones not skipped; errors that say what is wrong. Small pytrees on the 1 CPU device."""

import errno
import os
from pathlib import Path

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp
import pytest

from smlp_jax.train import checkpoint, init_from
from tests.train.checkpoint_trees import (
    IGNORE_CLOSED_LOOP,
    abstract_of,
    assert_bit_equal,
    damage,
    tiny_state,
)


@IGNORE_CLOSED_LOOP
def test_load_for_init(tmp_path):
    state = tiny_state(seed=4)
    with checkpoint.Checkpointer(tmp_path / "run", async_save=False) as ckpt:
        ckpt.save(1, tiny_state(seed=1))
        ckpt.save(2, state)
    full = abstract_of(state)
    for where in ("run", "run/checkpoints", "run/checkpoints/2"):
        assert_bit_equal(state, init_from.load_for_init(tmp_path / where, full))
    # Fine-tuning: only the model, not the optimiser-like rest.
    model_only = init_from.load_for_init(tmp_path / "run", {"model": full["model"]}, partial=True)
    assert_bit_equal({"model": state["model"]}, model_only)
    # A damaged newest step is skipped (with a warning) but left in place: not our run.
    damage(tmp_path / "run/checkpoints/2", "truncated_arrays")
    with pytest.warns(checkpoint.CheckpointFallbackWarning, match="skipped checkpoint step 2"):
        assert_bit_equal(tiny_state(seed=1), init_from.load_for_init(tmp_path / "run", full))
    assert sorted(os.listdir(tmp_path / "run/checkpoints")) == ["1", "2"]


def test_refused_read_is_not_skipped(tmp_path, monkeypatch):
    """A newest step the OS will not let us read (permission denied) is an error naming the
    file, not a silent fall-back to an older step: the user meant the newest weights."""
    with checkpoint.Checkpointer(tmp_path / "run", async_save=False) as ckpt:
        ckpt.save(1, {"w": jnp.zeros(2)})
        ckpt.save(2, {"w": jnp.ones(2)})
    refused = tmp_path / "run/checkpoints/2/state/_METADATA"
    metadata = ocp.PyTreeCheckpointHandler.metadata

    def refusing_metadata(handler, directory, *args, **kwargs):
        if Path(directory) == refused.parent:
            raise PermissionError(errno.EACCES, "Permission denied", str(refused))
        return metadata(handler, directory, *args, **kwargs)

    monkeypatch.setattr(ocp.PyTreeCheckpointHandler, "metadata", refusing_metadata)
    read_text = Path.read_text  # the index files' shapes (checkpoint.saved_shapes) first

    def refusing_read_text(path, *args, **kwargs):
        if Path(path) == refused:
            raise PermissionError(errno.EACCES, "Permission denied", str(refused))
        return read_text(path, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", refusing_read_text)
    abstract = {"w": jax.ShapeDtypeStruct((2,), jnp.float32)}
    with pytest.raises(checkpoint.CheckpointError) as raised:
        init_from.load_for_init(tmp_path / "run", abstract)
    assert str(raised.value).startswith(
        f"could not read checkpoint step 2: {refused}: Permission denied;"
    )


def test_load_for_init_errors(tmp_path):
    abstract = {"w": jax.ShapeDtypeStruct((2,), jnp.float32)}
    with pytest.raises(checkpoint.CheckpointError, match="does not exist"):
        init_from.load_for_init(tmp_path / "nowhere", abstract)
    (tmp_path / "empty").mkdir()
    with pytest.raises(checkpoint.CheckpointError, match="holds no checkpoint"):
        init_from.load_for_init(tmp_path / "empty", abstract)
    with checkpoint.Checkpointer(tmp_path / "run", async_save=False) as ckpt:
        ckpt.save(1, {"w": jnp.zeros(3)})
    with pytest.raises(checkpoint.CheckpointError, match=r"'w' is \(3,\) in the checkpoint"):
        init_from.load_for_init(tmp_path / "run/checkpoints/1", abstract)
    # A workdir whose every step fails names each of them.
    with checkpoint.Checkpointer(tmp_path / "run", async_save=False) as ckpt:
        ckpt.save(2, {"w": jnp.zeros(3)})
    with pytest.raises(checkpoint.CheckpointError, match="checkpoints/2: .*checkpoints/1: "):
        init_from.load_for_init(tmp_path / "run", abstract)
