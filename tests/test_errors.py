"""Every error class of the package is a `UserError`: the one type the trainer's CLI and the
tools catch to print `error: <message>` (anything else is a bug and keeps its traceback),
and each keeps the built-in base its callers catch."""

import ast
import importlib
import pathlib

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
