"""Checkpointer: bit-exact round trips (PRNG keys, data-iterator state), retention of the last
N plus the best, fallback from a damaged latest step (an invalid iterator state included), a
refused read that stops instead, half-written steps, sharded restore, read-only readers, and
two processes (with their preemption stop). Small pytrees on the 1 CPU device."""

import errno
import json
import os
import shutil
import socket
import subprocess
import sys
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest
from flax import nnx

from smlp_jax import data
from smlp_jax.train import checkpoint
from tests.train.checkpoint_trees import (
    IGNORE_CLOSED_LOOP,
    Tiny,
    abstract_of,
    assert_bit_equal,
    damage,
    mesh_sharding,
    tiny_state,
)
from tests.train.tiny import subprocess_env

REPO = Path(__file__).resolve().parents[2]


def _steps_on_disk(ckpt) -> list[str]:
    return sorted(os.listdir(ckpt.directory))


# What the train iterator's get_state() returns, or nothing.
@pytest.mark.parametrize("data_state", [{"step": 17, "skipped_epoch": 1, "skipped_total": 2}, None])
@pytest.mark.parametrize("async_save", [True, False])
def test_round_trip_is_bit_exact(tmp_path, data_state, async_save):
    state = tiny_state(seed=3)
    with checkpoint.Checkpointer(tmp_path, async_save=async_save) as ckpt:
        assert ckpt.latest_step() is None and ckpt.restore(abstract_of(state)) is None
        assert ckpt.save(10, state, data_state=data_state, metrics={"train/loss": jnp.float32(2)})
        ckpt.wait()
        step, restored, restored_data = ckpt.restore(abstract_of(state))
    assert step == 10 and restored_data == data_state
    assert_bit_equal(state, restored)
    # The restored rng streams continue exactly as the originals would.
    original, again = Tiny(nnx.Rngs(0)), Tiny(nnx.Rngs(0))
    nnx.update(original, state["model"])
    nnx.update(again, restored["model"])
    assert original.drop.rngs() == again.drop.rngs()


def test_async_save_copies_before_returning(tmp_path):
    """The trainer donates the state right after `save`: the saved values must not depend on
    the device buffers staying alive."""
    state = {"w": jnp.arange(1000.0), "key": jax.random.key(1)}
    expected = jax.tree.map(lambda x: x.copy(), state)
    with checkpoint.Checkpointer(tmp_path, async_save=True) as ckpt:
        ckpt.save(1, state)
        for leaf in jax.tree.leaves(state):
            leaf.delete()
        ckpt.wait()
        _, restored, _ = ckpt.restore(abstract_of(expected))
    assert_bit_equal(expected, restored)


def test_restores_into_the_requested_sharding(tmp_path):
    state = {"w": jnp.arange(8.0), "b": jnp.ones((2, 3)), "key": jax.random.key(0)}
    with checkpoint.Checkpointer(tmp_path) as ckpt:
        ckpt.save(1, state)
        sharded = mesh_sharding("data")
        abstract = abstract_of(state)
        abstract["w"] = jax.ShapeDtypeStruct((8,), jnp.float32, sharding=sharded)
        abstract["b"] = jax.ShapeDtypeStruct((2, 3), jnp.float32)  # no sharding: replicated
        _, restored, _ = ckpt.restore(abstract)
    assert isinstance(restored["w"], jax.Array) and restored["w"].sharding == sharded
    assert isinstance(restored["b"], jax.Array) and restored["b"].sharding.is_fully_replicated
    assert restored["key"].sharding == abstract["key"].sharding
    assert_bit_equal(state, restored)


def test_keeps_last_n_plus_the_best(tmp_path):
    state = {"w": jnp.zeros(2)}
    top1 = {2: 0.9, 4: 0.5, 6: 0.7}
    with checkpoint.Checkpointer(tmp_path, keep=2, async_save=True) as ckpt:
        for step in range(1, 7):
            metrics = {"eval/top1": top1[step], "eval/loss": 1.0} if step in top1 else None
            ckpt.save(step, state, metrics=metrics)
        ckpt.wait()
        assert ckpt.all_steps() == [2, 5, 6]  # Orbax's best_fn+max_to_keep would keep [2, 6]
    # The ranking survives a restart (metrics are read back from disk).
    with checkpoint.Checkpointer(tmp_path, keep=2) as ckpt:
        ckpt.save(7, state)
        ckpt.save(8, state)
        ckpt.wait()
        assert ckpt.all_steps() == [2, 7, 8]
        ckpt.save(9, state, metrics={"eval/top1": 0.95})
        ckpt.wait()
        assert ckpt.all_steps() == [8, 9]
    assert _steps_on_disk(ckpt) == ["8", "9"]
    with checkpoint.Checkpointer(tmp_path, keep=1, keep_best=False) as ckpt:
        ckpt.save(10, state, metrics={"eval/top1": 0.1})
        ckpt.wait()
        assert ckpt.all_steps() == [10]


def test_save_skips_existing_and_older_steps(tmp_path):
    with checkpoint.Checkpointer(tmp_path, async_save=False) as ckpt:
        assert ckpt.save(5, {"w": jnp.zeros(2)})
        assert not ckpt.save(5, {"w": jnp.ones(2)})  # e.g. the final save after a periodic one
        assert not ckpt.save(3, {"w": jnp.ones(2)})
        assert ckpt.save(3, {"w": jnp.ones(2)}, force=True)
        assert ckpt.all_steps() == [3, 5]


@IGNORE_CLOSED_LOOP
@pytest.mark.parametrize("how", ["truncated_arrays", "deleted_metadata", "garbled_data_state"])
def test_corrupt_latest_falls_back_to_previous(tmp_path, how):
    states = {step: tiny_state(seed=step) for step in (1, 2, 3)}
    with checkpoint.Checkpointer(tmp_path, keep=5, async_save=False) as ckpt:
        for step, state in states.items():
            ckpt.save(step, state, data_state={"pos": step})
    damage(ckpt.directory / "3", how)
    with checkpoint.Checkpointer(tmp_path, keep=5) as ckpt:
        with pytest.warns(checkpoint.CheckpointFallbackWarning, match=r"step 3 .*3\.corrupt"):
            step, restored, data_state = ckpt.restore(abstract_of(states[1]))
        assert (step, data_state) == (2, {"pos": 2})
        assert_bit_equal(states[2], restored)
        # The damaged step is moved aside, not deleted; the older ones are untouched.
        assert _steps_on_disk(ckpt) == ["1", "2", "3.corrupt"]
        assert ckpt.latest_step() == 2
        assert ckpt.save(3, states[3])  # the resumed run saves step 3 again without a clash
        ckpt.wait()
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert ckpt.restore(abstract_of(states[1]))[0] == 3


def _three_steps(tmp_path) -> dict:
    """Steps 1, 2, 3 of a small state, each with an iterator state as TrainIterator saves it."""
    with checkpoint.Checkpointer(tmp_path, keep=5, async_save=False) as ckpt:
        for step in (1, 2, 3):
            iterator_state = {"step": step, "skipped_epoch": 0, "skipped_total": step}
            ckpt.save(step, {"w": jnp.full(2, float(step))}, data_state=iterator_state)
    return abstract_of({"w": jnp.zeros(2)})


@pytest.mark.parametrize(
    "stored",
    [
        {"kind": "dict", "value": {"step": "abc"}},
        {"kind": "dict", "value": {"step": 3, "skipped_epoch": 0}},  # a key missing
        {"kind": "dict", "value": {"step": -3, "skipped_epoch": 0, "skipped_total": 3}},
        {"kind": "dict", "value": [3, 0, 3]},
        [3, 0, 3],
        {"kind": "grain", "value": {"step": 3, "skipped_epoch": 0, "skipped_total": 3}},
    ],
)
def test_invalid_data_state_is_damage(tmp_path, stored):
    """Valid JSON that no iterator saved: the step falls back like any other damage, before
    the trainer would use it (one warning, the step moved aside)."""
    abstract = _three_steps(tmp_path)
    (tmp_path / "checkpoints" / "3" / "data" / "process_0.json").write_text(json.dumps(stored))
    with checkpoint.Checkpointer(tmp_path, keep=5) as ckpt:
        with pytest.warns(checkpoint.CheckpointFallbackWarning) as caught:
            step, restored, data_state = ckpt.restore(
                abstract, check_data_state=data.TrainIterator.check_state
            )
        assert len(caught) == 1
        message = str(caught[0].message)
        assert "\n" not in message and "step 3" in message and "3.corrupt" in message
        assert "process_0.json" in message or "data_state is not" in message, message
        assert (step, data_state) == (2, {"step": 2, "skipped_epoch": 0, "skipped_total": 2})
        np.testing.assert_array_equal(restored["w"], [2.0, 2.0])
        assert _steps_on_disk(ckpt) == ["1", "2", "3.corrupt"]


def _refuse_reading(monkeypatch, refused: Path, code: int) -> None:
    """Path.read_text of `refused` fails as the OS would (we run as root: chmod blocks nothing)."""
    read_text = Path.read_text

    def read(path, *args, **kwargs):
        if Path(path) == refused:
            raise OSError(code, os.strerror(code), str(path))
        return read_text(path, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", read)


@pytest.mark.parametrize("read_only", [False, True])
@pytest.mark.parametrize("code", [errno.EACCES, errno.EIO, errno.ESTALE])
def test_refused_read_stops_without_moving_or_falling_back(tmp_path, monkeypatch, code, read_only):
    """An unreadable file (permission denied, an NFS or object-store hiccup) says nothing about
    the step's content: one line naming the file and the reason, nothing moved, no older step."""
    abstract = _three_steps(tmp_path)
    refused = tmp_path / "checkpoints" / "3" / "data" / "process_0.json"
    _refuse_reading(monkeypatch, refused, code)
    before = sorted(os.listdir(tmp_path / "checkpoints"))
    with checkpoint.Checkpointer(tmp_path, keep=5, read_only=read_only) as ckpt:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no fall-back warning either
            with pytest.raises(checkpoint.CheckpointError) as raised:
                ckpt.restore(abstract, check_data_state=data.TrainIterator.check_state)
    message = str(raised.value)
    assert "\n" not in message
    assert f"could not read checkpoint step 3: {refused}: {os.strerror(code)};" in message
    assert "not moved aside" in message and "run again" in message
    assert sorted(os.listdir(tmp_path / "checkpoints")) == before == ["1", "2", "3"]
    assert isinstance(raised.value.__cause__, OSError)


# TensorStore's own message for a state file it may not open (as a non-root user gets it),
# cut short; its spec dump quotes the store's path too.
_TENSORSTORE_REFUSAL = (
    'PERMISSION_DENIED: Error opening "zarr" driver: Error reading "step/.zarray" in OCDBT '
    'database at local file "{state}/": Error reading Byte range [0, 683) of local file '
    '"{state}/d/10fe31c3": Failed to open: "{state}/d/10fe31c3": Permission denied '
    '[tensorstore_spec=\'{{\\"path\\":\\"{state}/\\"}}\'] '
    "[source_locations='tensorstore/internal/os/file_util_posix.cc:121'] [os_error_code='13']"
)


def test_refused_tensorstore_read_stops_without_moving(tmp_path, monkeypatch):
    """The same through Orbax: TensorStore reports the OS error in its message."""
    abstract = _three_steps(tmp_path)
    state = tmp_path / "checkpoints" / "3" / "state"
    restore = ocp.CheckpointManager.restore

    def refusing_restore(manager, step, *args, **kwargs):
        if step == 3:
            raise ValueError(_TENSORSTORE_REFUSAL.format(state=state))
        return restore(manager, step, *args, **kwargs)

    monkeypatch.setattr(ocp.CheckpointManager, "restore", refusing_restore)
    with checkpoint.Checkpointer(tmp_path, keep=5) as ckpt:
        with pytest.raises(checkpoint.CheckpointError) as raised:
            ckpt.restore(abstract)
    assert str(raised.value).startswith(
        f"could not read checkpoint step 3: {state}/d/10fe31c3: Permission denied;"
    )
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["1", "2", "3"]


def _raised(error: BaseException, cause: BaseException | None = None) -> BaseException:
    try:
        raise error from cause
    except BaseException as err:  # noqa: BLE001 - only to give it a traceback and a cause
        return err


@pytest.mark.parametrize(
    "error, refused",
    [
        (PermissionError(errno.EACCES, "Permission denied", "/w/3/x"), "Permission denied"),
        (OSError(errno.EIO, "Input/output error"), "Input/output error"),
        (OSError(errno.ENOSPC, "No space"), "No space left on device"),
        (OSError(errno.EMFILE, "Too many"), "Too many open files"),
        (TimeoutError(errno.ETIMEDOUT, "timed out"), os.strerror(errno.ETIMEDOUT)),
        (ValueError("UNKNOWN: Error reading \"/w/3/d/ab\" [os_error_code='5']"), "Input/output"),
        (ValueError("UNAVAILABLE: GCS returned 503"), "storage unavailable"),
        (ValueError("PERMISSION_DENIED: HTTP 403 from the bucket"), "permission denied"),
        (_raised(RuntimeError("restore failed"), OSError(errno.EIO, "EIO")), "Input/output"),
        # Damage: a file gone, or data that does not decode.
        (FileNotFoundError(errno.ENOENT, "No such file", "/w/3/meta"), None),
        (IsADirectoryError(errno.EISDIR, "Is a directory"), None),
        (NotADirectoryError(errno.ENOTDIR, "Not a directory"), None),
        (ValueError("NOT_FOUND: Error reading \"/w/3/d/ab\" [os_error_code='2']"), None),
        (ValueError("OUT_OF_RANGE: Byte range [0, 683) is not valid for value of size 3"), None),
        (ValueError("DATA_LOSS: Error decoding the manifest"), None),
        (json.JSONDecodeError("Expecting value", '{"kind": "by', 12), None),
        (KeyError("value"), None),
        (_raised(ValueError("shape (5,) != (2,)"), KeyError("w")), None),
    ],
)
def test_refused_reads_are_told_from_damage(error, refused):
    reason = checkpoint.errors.read_refused(error)
    assert (reason is None) == (refused is None), reason
    if refused is not None:
        assert reason.startswith(refused)


def test_failed_path_names_the_file():
    tensorstore = ValueError(_TENSORSTORE_REFUSAL.format(state="/w/checkpoints/3/state"))
    assert checkpoint.errors.failed_path(tensorstore) == "/w/checkpoints/3/state/d/10fe31c3"
    wrapped = _raised(
        checkpoint.CheckpointError("init_from failed"), PermissionError(13, "x", "/f")
    )
    assert checkpoint.errors.failed_path(wrapped) == "/f"
    # Unknown: the step directory is named instead.
    message = checkpoint.errors.unreadable(3, OSError(errno.EIO, "EIO"), Path("/w/checkpoints/3"))
    assert message.startswith("could not read checkpoint step 3: /w/checkpoints/3: Input/output")


def test_refused_rename_is_one_error_and_moves_nothing(tmp_path, monkeypatch):
    """A damaged step that may not be moved aside: one line naming both paths and the reason;
    resuming anyway would leave the damaged step where the run saves that step again."""
    abstract = _three_steps(tmp_path)
    damage(tmp_path / "checkpoints" / "3", "garbled_data_state")

    def refuse(path, target):
        raise PermissionError(errno.EACCES, "Permission denied", str(path), None, str(target))

    monkeypatch.setattr(Path, "rename", refuse)
    with checkpoint.Checkpointer(tmp_path, keep=5) as ckpt:
        with pytest.raises(checkpoint.CheckpointError) as raised:
            ckpt.restore(abstract)
    message = str(raised.value)
    root = tmp_path / "checkpoints"
    assert "\n" not in message
    assert f"step 3 in {root} is damaged (JSONDecodeError" in message
    assert f"{root / '3'} -> {root / '3.corrupt'}: Permission denied;" in message
    assert "move it away yourself" in message and "step 2 restores" in message
    assert sorted(os.listdir(root)) == ["1", "2", "3"]


def test_nothing_restorable_raises_and_moves_nothing(tmp_path):
    with checkpoint.Checkpointer(tmp_path, async_save=False) as ckpt:
        ckpt.save(1, {"w": jnp.zeros(2)})
        ckpt.save(2, {"w": jnp.zeros(2)})
        changed_model = {"w": jax.ShapeDtypeStruct((5,), jnp.float32, sharding=mesh_sharding())}
        with pytest.raises(checkpoint.CheckpointError, match="new --workdir") as raised:
            ckpt.restore(changed_model)
    assert _steps_on_disk(ckpt) == ["1", "2"]
    # Named from the index files, not Orbax's advice about its own restore options.
    message, difference = str(raised.value), "'w' is (2,) in the checkpoint, (5,) here"
    assert "hold another model or optimiser than this config builds" in message
    assert f"step 2: 1 array(s) differ in shape: {difference}" in message
    assert "strict" not in message and raised.value.mismatches == (difference,)


def test_half_written_checkpoint_is_ignored(tmp_path):
    """A save killed mid-write leaves `<step>.orbax-checkpoint-tmp`: it must be ignored.

    The leftover is made directly (a copy of a real step under the temporary name Orbax
    writes to before its commit rename), so the test does not depend on when a SIGKILL
    lands relative to the background write; tests/train/test_resume.py kills real runs.
    """
    with checkpoint.Checkpointer(tmp_path) as ckpt:
        assert ckpt.save(1, {"w": jnp.ones(4)}, data_state={"pos": 1})
        ckpt.wait()
    root = tmp_path / "checkpoints"
    shutil.copytree(root / "1", root / "2.orbax-checkpoint-tmp")
    abstract = {"w": jax.ShapeDtypeStruct((4,), jnp.float32, sharding=mesh_sharding())}
    with warnings.catch_warnings():
        warnings.simplefilter("error", checkpoint.CheckpointFallbackWarning)
        with checkpoint.Checkpointer(tmp_path) as ckpt:
            assert ckpt.latest_step() == 1
            step, restored, data_state = ckpt.restore(abstract)
            assert (step, data_state) == (1, {"pos": 1})
            np.testing.assert_array_equal(restored["w"], np.ones(4))
            # The resumed run reaches step 2 again; Orbax has removed the leftover by then.
            assert ckpt.save(2, {"w": jnp.full(4, 3.0)}, data_state={"pos": 2})
            ckpt.wait()
            assert _steps_on_disk(ckpt) == ["1", "2"]
            assert ckpt.restore(abstract)[2] == {"pos": 2}


def test_bad_arguments_get_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="keep at least 1"):
        checkpoint.Checkpointer(tmp_path, keep=0)
    with checkpoint.Checkpointer(tmp_path) as ckpt:
        with pytest.raises(TypeError, match="survive JSON"):
            ckpt.save(1, {"w": jnp.zeros(2)}, data_state={"pos": (1, 2)})
        with pytest.raises(TypeError, match="a dict or None"):
            ckpt.save(1, {"w": jnp.zeros(2)}, data_state=b"grain state")
        with pytest.raises(TypeError, match="scalar number"):
            ckpt.save(1, {"w": jnp.zeros(2)}, metrics={"eval/top1": jnp.zeros(3)})
        assert ckpt.latest_step() is None


_TWO_PROCESS_SCRIPT = """
import json, os, signal, sys, time, warnings
sys.path.insert(0, {repo!r})
import jax, jax.numpy as jnp, numpy as np
process, port, workdir, report_path = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
jax.distributed.initialize(f"localhost:{{port}}", num_processes=2, process_id=process)
from smlp_jax.train import checkpoint, preemption
mesh = jax.make_mesh((2,), ("data",))
sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
abstract = {{"w": jax.ShapeDtypeStruct((4,), jnp.float32, sharding=sharding)}}
report = {{"process": process}}
with checkpoint.Checkpointer(workdir) as ckpt:
    for step in (1, 2, 3):
        w = jax.make_array_from_callback((4,), sharding, lambda i: np.arange(4.0)[i] + step)
        ckpt.save(step, {{"w": w}}, data_state={{"process": process, "step": step}})
    ckpt.wait()
    checkpoint.restore._sync("damage_before")
    if process == 0:
        (ckpt.directory / "3" / "data" / "process_1.json").write_text("{{")
    checkpoint.restore._sync("damage_after")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        step, state, data_state = ckpt.restore(abstract)
    report["restored"] = {{
        "step": step,
        "data_state": data_state,
        "shards": [np.asarray(s.data).tolist() for s in state["w"].addressable_shards],
        "steps_on_disk": sorted(os.listdir(ckpt.directory)),
        "warnings": [[w.category.__name__, str(w.message)] for w in caught],
    }}
with preemption.PreemptionGuard() as guard:
    for step in range(1, 400):
        if process == 1 and step == 3:
            os.kill(os.getpid(), signal.SIGTERM)
        if guard.should_stop_at(step):
            report["stopped_at"] = step
            break
        time.sleep(0.02)
with open(report_path, "w") as f:
    json.dump(report, f)
"""


def test_two_processes_keep_their_own_data_state_and_stop_together(tmp_path):
    """jax.distributed with 2 CPU processes: per-process data-iterator files, a sharded restore,
    the damaged-step fallback with its barrier, and SIGTERM to one process stopping both at
    the same step through JAX's preemption sync point. Each process writes a JSON report."""
    with socket.socket() as s:
        s.bind(("localhost", 0))
        port = s.getsockname()[1]
    script = tmp_path / "two_processes.py"
    script.write_text(_TWO_PROCESS_SCRIPT.format(repo=str(REPO)))
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env.pop("XLA_FLAGS", None)
    reports = [tmp_path / f"report_{i}.json" for i in range(2)]
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                str(script),
                str(i),
                str(port),
                str(tmp_path / "run"),
                str(reports[i]),
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    try:
        outputs = [p.communicate(timeout=60) for p in procs]
    finally:
        for p in procs:  # one process failing leaves the other waiting at a barrier
            p.kill()
    for p, (_, err) in zip(procs, outputs):
        assert p.returncode == 0, err[-3000:]
    for process, path in enumerate(reports):
        report = json.loads(path.read_text())
        restored = report["restored"]
        assert report["process"] == process
        # Step 3's data file of process 1 was damaged: both fall back to step 2, each with
        # its own iterator state and its own half of the array.
        assert restored["step"] == 2
        assert restored["data_state"] == {"process": process, "step": 2}
        assert restored["shards"] == [[2.0 + 2 * process, 3.0 + 2 * process]]
        assert restored["steps_on_disk"] == ["1", "2", "3.corrupt"]
        assert [category for category, _ in restored["warnings"]] == [
            "CheckpointFallbackWarning"
        ], restored["warnings"]
    stops = [json.loads(path.read_text()).get("stopped_at") for path in reports]
    assert stops[0] is not None and stops[0] == stops[1], stops


@IGNORE_CLOSED_LOOP
def test_read_only_reader_changes_nothing(tmp_path):
    """`--mode=eval` on the workdir of a running training: no cleanup of in-flight temporary
    steps, no saving, no moving aside."""
    state = {"w": jnp.arange(3.0)}
    abstract = abstract_of(state)
    with checkpoint.Checkpointer(tmp_path / "missing", read_only=True) as reader:
        assert reader.restore(abstract) is None
    assert not (tmp_path / "missing").exists()
    with checkpoint.Checkpointer(tmp_path, async_save=False) as ckpt:
        ckpt.save(1, state)
        ckpt.save(2, state)
    (ckpt.directory / "3.orbax-checkpoint-tmp").mkdir()  # a save in flight elsewhere
    damage(ckpt.directory / "2", "truncated_arrays")
    with checkpoint.Checkpointer(tmp_path, read_only=True) as reader:
        with pytest.warns(checkpoint.CheckpointFallbackWarning, match="Left it in place"):
            assert reader.restore(abstract)[0] == 1
        with pytest.raises(checkpoint.CheckpointError, match="read-only"):
            reader.save(4, state)
    assert _steps_on_disk(ckpt) == ["1", "2", "3.orbax-checkpoint-tmp"]


_HOOKS_AFTER_READING = """
import logging, sys
sys.path.insert(0, {repo!r})
import jax, jax.numpy as jnp
from smlp_jax.train import checkpoint, init_from

def hooks():
    return (sys.unraisablehook, [tuple(logging.getLogger(n).filters) for n in ("absl", "asyncio")])

before = hooks()
with checkpoint.Checkpointer({workdir!r}, async_save=False) as ckpt:
    ckpt.save(1, {{"w": jnp.ones(3)}})
    ckpt.save(2, {{"w": jnp.ones(3)}})
(open({workdir!r} + "/checkpoints/2/state/manifest.ocdbt", "wb").write(b"damaged"))
import warnings
with warnings.catch_warnings(record=True):
    with checkpoint.Checkpointer({workdir!r}, read_only=True) as reader:
        step = reader.restore({{"w": jax.ShapeDtypeStruct((3,), jnp.float32)}})[0]
    init_from.load_for_init({workdir!r}, {{"w": jax.ShapeDtypeStruct((3,), jnp.float32)}})
assert step == 1, step
assert hooks() == before, (hooks(), before)
assert not checkpoint.quiet.installed()
checkpoint.quiet.install()
assert checkpoint.quiet.installed() and hooks() != before
print("ok")
"""


def test_reading_a_checkpoint_changes_no_process_wide_hook(tmp_path):
    """Saving, restoring past a damaged step and `load_for_init` leave `sys.unraisablehook`
    and the log filters as they were: only the process owner installs the quieting."""
    code = _HOOKS_AFTER_READING.format(repo=str(REPO), workdir=str(tmp_path))
    result = subprocess.run(
        [sys.executable, "-c", code], env=subprocess_env(), capture_output=True, text=True,
        timeout=120, cwd=REPO,
    )  # fmt: skip
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-3000:]
