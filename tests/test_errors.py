"""Every error class of the package is a `UserError`: the one type the trainer's CLI and the
tools catch to print `error: <message>` (anything else is a bug and keeps its traceback),
and each keeps the built-in base its callers catch. Then issue 35's inputs: each refused in
one line (through main.py or the tool, in a child process), before anything large is built,
and what a run prints at its end."""

import ast
import importlib
import pathlib
import subprocess
import sys
import time

import pytest

from smlp_jax import UserError
from smlp_jax.errors import UserError as base

ROOT = pathlib.Path(__file__).resolve().parents[1] / "smlp_jax"

# Error classes whose callers catch a built-in type: that base stays beside UserError.
BUILT_IN_BASES = {
    "smlp_jax.convert.assign.WeightsMismatchError": ValueError,
    "smlp_jax.convert.checkpoint_io.WeightsFileError": ValueError,
    "smlp_jax.models.registry.UnknownModelError": ValueError,
    "smlp_jax.data.base.DataError": ValueError,
    "smlp_jax.train.errors.TrainError": ValueError,
    "smlp_jax.train.checkpoint.errors.CheckpointError": RuntimeError,
    "smlp_jax.serving.ServingError": ValueError,
}


def _module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _defines_an_exception(path: pathlib.Path) -> bool:
    """A class whose base is named like an exception (`...Error`, `...Exception`)."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ClassDef):
            names = [getattr(b, "attr", None) or getattr(b, "id", "") for b in node.bases]
            if any(n.endswith(("Error", "Exception")) for n in names):
                return True
    return False


def _error_classes() -> dict[str, type]:
    """Every public exception class (warnings aside) defined in a module of the package; a
    private one (`_ShapeMismatch`) is control flow caught in its own module."""
    found = {}
    for path in sorted(ROOT.rglob("*.py")):
        if not _defines_an_exception(path):
            continue
        name = _module_name(path)
        module = importlib.import_module(name)
        for value in vars(module).values():
            if (
                isinstance(value, type)
                and issubclass(value, BaseException)
                and not issubclass(value, Warning)
                and value.__module__ == name
                and not value.__name__.startswith("_")
            ):
                found[f"{name}.{value.__qualname__}"] = value
    return found


def test_every_error_class_is_a_user_error():
    classes = _error_classes()
    # The walk finds them all (not an empty pass): the classes the CLI used to list and
    # the tools' own.
    for expected in [*BUILT_IN_BASES, "smlp_jax.tools.errors.ToolInputError"]:
        assert expected in classes, expected
    assert len(classes) >= 13, sorted(classes)
    not_user = sorted(name for name, cls in classes.items() if not issubclass(cls, UserError))
    assert not not_user, f"error classes that are not a smlp_jax.UserError: {not_user}"
    assert UserError is base


@pytest.mark.parametrize("name", sorted(BUILT_IN_BASES))
def test_error_classes_keep_the_built_in_base_callers_catch(name):
    cls = _error_classes()[name]
    assert issubclass(cls, BUILT_IN_BASES[name]) and issubclass(cls, UserError)


# --- Issue 35: nonsensical inputs refused in one line, early; the ends of runs say where ---


def _run(argv: list, timeout: float = 300) -> tuple[int, str, str, float]:
    """A CLI (main.py or a tool) in a child process as a user runs it: (rc, stdout, stderr,
    seconds)."""
    from tests.train.tiny import REPO, subprocess_env

    start = time.perf_counter()
    done = subprocess.run(
        [str(a) for a in argv],
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
    )
    return done.returncode, done.stdout, done.stderr, time.perf_counter() - start


def _one_line(stderr: str) -> str:
    """The stderr of a refused run: exactly one `error: ...` line, no traceback."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert "Traceback" not in stderr and len(lines) == 1, stderr
    assert lines[0].startswith("error: "), stderr
    return lines[0]


def test_one_class_folder_is_refused_before_training(tmp_path, demo_data_dir):
    from tests.train.tiny import grey_class_folder, main_command

    root = grey_class_folder(tmp_path / "one", classes=("only",))
    rc, out, err, _ = _run(
        main_command(
            tmp_path / "run", demo_data_dir, dataset=f"folder:{root}", **{"input.eval_split": "val"}
        )
    )
    assert (rc, out) == (1, "")
    assert _one_line(err) == (
        f"error: folder:{root}/train has 1 class ('only'): a classifier needs at least two; "
        "add a subfolder of images for each class."
    )


def test_config_file_with_a_syntax_error_is_one_line(tmp_path):
    from tests.train.tiny import REPO

    configs = tmp_path / "configs"
    configs.mkdir()
    bad = configs / "bad.py"
    bad.write_text("def get_config(arg=None):\n    x = (1,\n    return x\n")
    expected = f"error: config file {bad} line 2: '(' was never closed: x = (1,"
    rc, _, err, _ = _run([sys.executable, REPO / "main.py", f"--config={bad}:t", "--workdir=w"])
    assert (rc, _one_line(err)) == (2, expected)
    # The tools read config files by the same rules (smlp_jax.train.config_file).
    (tmp_path / "old_run").mkdir()
    rc, _, err, _ = _run(
        [sys.executable, "-m", "smlp_jax.tools.export", "--checkpoint", tmp_path / "old_run",
         "--config", bad, "--out", tmp_path / "out.npz"]
    )  # fmt: skip
    assert rc == 1 and err.splitlines()[-1] == expected, err
    assert "Traceback" not in err and len(err.splitlines()) == 2  # the "no run record" note


def test_export_of_an_empty_workdir_fails_before_a_model_is_built(tmp_path):
    """With --config the model could be built, but there is nothing to load: one line, in
    seconds (it used to build the model first: 15 s here)."""
    from tests.train.tiny import REPO

    (tmp_path / "empty").mkdir()
    rc, _, err, seconds = _run(
        [sys.executable, "-m", "smlp_jax.tools.export", "--checkpoint", tmp_path / "empty",
         "--config", f"{REPO}/configs/smlpnet.py:demo", "--out", tmp_path / "out.npz"]
    )  # fmt: skip
    assert rc == 1 and err.splitlines()[-1] == (
        f"error: init_from='{tmp_path / 'empty'}' holds no checkpoint: expected a step "
        "directory with a 'state' folder, or a directory of step directories (like "
        "WORKDIR/checkpoints)."
    ), err
    assert not (tmp_path / "out.npz").exists()
    assert seconds < 10, seconds  # the interpreter and jax's import; no model


def test_missing_pretrained_file_fails_before_a_model_is_built(monkeypatch):
    from smlp_jax import factory
    from smlp_jax.convert.checkpoint_io import WeightsFileError

    def no_build(*args, **kwargs):
        raise AssertionError("a model was built")

    monkeypatch.setattr(factory, "make_model", no_build)
    with pytest.raises(WeightsFileError, match=r"^weights file missing\.npz does not exist$"):
        factory.create_model("smlpnet_t", pretrained="missing.npz")


def test_tiny_folder_run_warns_once_ends_with_where_and_evaluates_quietly(tmp_path, demo_data_dir):
    """A batch larger than the training split: one warning saying how often each image
    repeats in a batch. The run's last line says where its checkpoints and metrics are;
    `--mode=eval` of it prints no Orbax "read only" notice."""
    from tests.train.tiny import grey_class_folder, main_command

    root = grey_class_folder(tmp_path / "images")  # 3 classes, 18 training images
    workdir = tmp_path / "run"
    changes = dict(
        dataset=f"folder:{root}",
        total_steps=2,
        checkpoint_every=2,
        eval_batch_size=6,
        **{"input.eval_split": "val"},
    )
    rc, out, err, _ = _run(main_command(workdir, demo_data_dir, **changes))
    assert rc == 0, err
    warned = [line for line in err.splitlines() if "larger than the training split" in line]
    assert len(warned) == 1, err
    assert warned[0].endswith(
        f"config.batch_size=64 is larger than the training split (18 images of folder:{root}"
        "/train): each image appears about 3.6 times in every batch; lower config.batch_size "
        "or add images."
    ), warned
    assert out.splitlines()[-1] == (
        f"step 2 of 2: checkpoints in {workdir}/checkpoints, metrics in "
        f"{workdir}/metrics.jsonl and TensorBoard files in {workdir}/tensorboard"
    ), out
    rc, out, err, _ = _run(main_command(workdir, demo_data_dir, "--mode=eval", **changes))
    assert rc == 0, err
    assert "eval" in out and "Given directory is read only" not in err, err


def test_quiet_drops_only_the_read_only_notice():
    """The filter `quiet.install()` adds drops Orbax's read-only notice and nothing else:
    the same text from our code, and Orbax's other warnings, pass."""
    import logging
    import os

    from smlp_jax.train.checkpoint import quiet

    orbax = os.path.join(os.sep, "venv", "orbax", "checkpoint", "checkpoint_manager.py")

    def passes(message: str, path: str) -> bool:
        record = logging.LogRecord("absl", logging.WARNING, path, 849, message, ("/w",), None)
        return quiet._READ_ONLY_NOTICE.filter(record)

    assert not passes("Given directory is read only=%s", orbax)
    assert passes("Given directory is read only=%s", "/work/smlp_jax/train/x.py")
    assert passes("Checkpoint step %s could not be read", orbax)


def test_npz_shapes_are_checked_against_the_model_before_any_array_is_read(tmp_path, monkeypatch):
    """An .npz for another head: its headers are compared with the model's shapes and the
    first mismatching array named, before any array is read; the right file still loads."""
    import numpy as np

    from smlp_jax import WeightsMismatchError, create_model
    from smlp_jax.convert import checkpoint_io
    from smlp_jax.convert.export import save_weights

    small = dict(image_size=32, num_blocks=1)
    path = tmp_path / "mixer_10.npz"
    save_weights(create_model("mixer_s16", num_classes=10, **small), str(path), "official")
    loaded = create_model("mixer_s16", pretrained=str(path), num_classes=10, **small)
    assert np.asarray(loaded.head.kernel).shape == (512, 10)

    def never(*args, **kwargs):
        raise AssertionError("an array was read")

    monkeypatch.setattr(checkpoint_io, "read_npz", never)
    with pytest.raises(WeightsMismatchError) as err:
        create_model("mixer_s16", pretrained=str(path), num_classes=12, **small)
    assert str(err.value).startswith(
        "mixer_s16: the weights do not fit the model: 'head.bias' has shape (10,) in the "
        "checkpoint but the model expects (12,); "
    ) and "\n" not in str(err.value)


def test_predict_refuses_npz_weights_of_another_model_in_one_line(tmp_path):
    from PIL import Image

    from smlp_jax import create_model
    from smlp_jax.convert.export import save_weights

    path = tmp_path / "mixer_10.npz"
    model = create_model("mixer_s16", num_classes=10, image_size=32, num_blocks=1)
    save_weights(model, str(path), "official")
    Image.new("RGB", (40, 40), (10, 120, 200)).save(tmp_path / "a.png")
    rc, out, err, _ = _run(
        [sys.executable, "-m", "smlp_jax.tools.predict", tmp_path / "a.png",
         "--model", "mixer_s16", "--model-arg", "num_blocks=2", "--image-size", "32",
         "--num-classes", "10", "--pretrained", path]
    )  # fmt: skip
    assert (rc, out) == (1, "")
    assert _one_line(err).startswith(
        "error: mixer_s16: the weights do not fit the model: missing key(s) 'blocks.1."
    )


# --- Issue 32's bad input: loading settings that cannot work, refused before a checkpoint ---


def _cores() -> int:
    import os

    return len(os.sched_getaffinity(0))


@pytest.mark.parametrize(
    "changes, expected",
    [
        (
            {"input.num_workers": "CORES+1"},
            "error: config.input.num_workers={more}, but this process may use {cores} CPU "
            "core(s); use 0 (decode in this process) to {cores}, or -1 to choose from the cores.",
        ),
        (
            {"input.prefetch": 0},
            "error: config.input.prefetch=0: batches buffered per worker must be at least 1.",
        ),
        (
            # 28-px digits, a 20-px canvas: every image would be resized on the host.
            {
                "input.preset": "imagenet",
                "input.on_device": "resize_and_augment",
                "input.resize_max": 20,
            },
            "error: config.input.resize_max=20 is below the dataset's largest image side (28 "
            "px), so those images would be resized on the host; raise config.input.resize_max "
            "to 28 or use config.input.on_device='augment'.",
        ),
    ],
    ids=["workers_above_cores", "prefetch_0", "padded_below_the_images"],
)
def test_loading_that_cannot_work_is_one_line_before_any_checkpoint(
    tmp_path, demo_data_dir, changes, expected
):
    from tests.train.tiny import main_command

    cores = _cores()
    changes = {k: cores + 1 if v == "CORES+1" else v for k, v in changes.items()}
    rc, out, err, _ = _run(main_command(tmp_path / "run", demo_data_dir, **changes))
    assert (rc, out) == (1, "")
    assert _one_line(err) == expected.format(more=cores + 1, cores=cores)
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_a_prepared_dataset_missing_its_info_is_one_line_before_any_checkpoint(
    tmp_path, demo_data_dir
):
    from tests.train.tiny import grey_class_folder, main_command

    copy = grey_class_folder(tmp_path / "copy")  # a folder's layout, but no prepare_data info
    rc, out, err, _ = _run(
        main_command(tmp_path / "run", demo_data_dir, dataset=f"prepared:{copy}")
    )
    assert (rc, out) == (1, "")
    assert _one_line(err) == (
        f"error: prepared:{copy} has no smlp_prepared.json, which prepare_data writes last: the "
        "copy is not a finished one; prepare it again (python -m smlp_jax.tools.prepare_data "
        f"folder:SOURCE --out {copy} --max-side 512) or train on it as folder:{copy}."
    )
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_a_model_hyperparameter_out_of_range_is_one_line_before_any_checkpoint(
    tmp_path, demo_data_dir
):
    """The trainer builds the model abstractly once, first: a value the model refuses is
    one line naming the key, before a workdir holds anything."""
    from tests.train.tiny import main_command

    rc, out, err, _ = _run(
        main_command(tmp_path / "run", demo_data_dir, **{"model_kwargs.dim": -3})
    )
    assert (rc, out) == (1, "")
    assert _one_line(err) == (
        "error: config.model='smlpnet_t': smlpnet_t: dim=-3 is not accepted; dim takes an int "
        "from 1 to 65536."
    )
    assert not (tmp_path / "run" / "checkpoints").exists()
