"""Dependencies run one way: tools -> train -> hub -> factory -> convert -> models, with data
beside models, serving (which needs only models) beside factory, and `errors` / `version`
under everything. Checked on the source (every import statement, at any depth), so a
function-level import cannot hide a circle; every module of the package has a layer (the
top-level modules too), none imports the package face (`import smlp_jax`, `from smlp_jax
import create_model`), and none finds a module by a name built at run time."""

import ast
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[1] / "smlp_jax"
FACE = ""  # the layer of smlp_jax/__init__.py

# A layer may import its own modules and those of the layers listed for it. A layer is a
# subpackage (`models`) or a top-level module (`hub` for smlp_jax/hub.py).
BOTTOM = {"errors", "version"}
ALLOWED = {
    "errors": set(),
    "version": set(),
    "models": BOTTOM,
    "data": BOTTOM,
    "convert": {"models"} | BOTTOM,
    "factory": {"convert", "models"} | BOTTOM,
    "serving": {"models"} | BOTTOM,
    "hub": {"factory", "convert", "models"} | BOTTOM,
    "train": {"factory", "convert", "models", "data"} | BOTTOM,
    "tools": {"train", "hub", "serving", "factory", "convert", "models", "data"} | BOTTOM,
    # The package face re-exports the library, never the trainer or the tools.
    FACE: {"hub", "serving", "factory", "convert", "models", "data"} | BOTTOM,
}
LAYERS = {p.name.removesuffix(".py") for p in ROOT.iterdir() if p.suffix == ".py"} - {"__init__"}
LAYERS |= {p.name for p in ROOT.iterdir() if (p / "__init__.py").is_file()}
IMPORT_BY_NAME = {"import_module", "__import__"}


def _layer(path: pathlib.Path) -> str:
    rel = path.relative_to(ROOT)
    return FACE if rel.parts == ("__init__.py",) else rel.parts[0].removesuffix(".py")


def _modules(node: ast.AST) -> list[str]:
    """The modules an import statement or an `importlib.import_module("...")` call names;
    `from smlp_jax import X` names `smlp_jax.X` when X is a layer, else the face."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom):
        module = node.module or ""
        if module != "smlp_jax":
            return [module]
        return [f"smlp_jax.{a.name}" if a.name in LAYERS else "smlp_jax" for a in node.names]
    if isinstance(node, ast.Call) and _called_name(node) in IMPORT_BY_NAME and node.args:
        first = node.args[0]
        if isinstance(first, ast.Constant) and isinstance(first.value, str):
            return [first.value]
    return []


def _called_name(call: ast.Call) -> str | None:
    func = call.func
    return func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)


def _imports(path: pathlib.Path) -> list[tuple[int, str]]:
    """(line, module) of every smlp_jax module `path` imports, anywhere in it."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: relative import (the house uses absolute ones)"
        found += [(node.lineno, m) for m in _modules(node) if m.split(".")[0] == "smlp_jax"]
    return found


def test_every_module_imports_only_the_layers_below_it():
    violations = []
    for path in sorted(ROOT.rglob("*.py")):
        layer, where = _layer(path), path.relative_to(ROOT.parent)
        if layer not in ALLOWED:
            violations.append(f"{where}: in no layer (give it a row in ALLOWED)")
            continue
        for lineno, module in _imports(path):
            if module == "smlp_jax":
                violations.append(f"{where}:{lineno} imports the package face (smlp_jax)")
                continue
            imported = module.split(".")[1]
            if imported != layer and imported not in ALLOWED[layer]:
                violations.append(f"{where}:{lineno} imports smlp_jax.{imported}")
    assert not violations, "\n".join(violations)


def test_no_module_is_looked_up_by_a_name_built_at_run_time():
    """`importlib.import_module(f"smlp_jax.convert.{family}")` hides a dependency from a
    reader, a static tool and the test above: a table of imported modules says it."""
    found = []
    for path in sorted(ROOT.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and _called_name(node) in IMPORT_BY_NAME:
                first = node.args[0] if node.args else None
                if not (isinstance(first, ast.Constant) and isinstance(first.value, str)):
                    found.append(f"{path.relative_to(ROOT.parent)}:{node.lineno}")
    assert not found, "modules imported by a computed name:\n" + "\n".join(found)


def test_the_checks_see_what_they_look_for(tmp_path):
    """Each kind of seam the checks above look for is found in a module written for it."""
    module = tmp_path / "seams.py"
    module.write_text(
        "import importlib\n"
        "import smlp_jax\n"
        "from smlp_jax import create_model, data\n"
        "from smlp_jax.tools import summary\n"
        "def f(family):\n"
        "    importlib.import_module('smlp_jax.train.cli')\n"
        "    return importlib.import_module(f'smlp_jax.convert.{family}')\n"
    )
    modules = sorted(m for _, m in _imports(module))
    assert modules == [
        "smlp_jax",
        "smlp_jax",
        "smlp_jax.data",
        "smlp_jax.tools",
        "smlp_jax.train.cli",
    ]
    calls = [
        node
        for node in ast.walk(ast.parse(module.read_text()))
        if isinstance(node, ast.Call) and _called_name(node) in IMPORT_BY_NAME
    ]
    assert [isinstance(c.args[0], ast.Constant) for c in calls] == [True, False]


def test_data_sources_share_types_through_base_only():
    """The leaf sources take DataError & co from data/base.py, never from sources.py (which
    imports them: that was a circle)."""
    for name in ("folder_source", "tfds_source", "demo_dataset"):
        text = (ROOT / "data" / f"{name}.py").read_text()
        assert (
            "smlp_jax.data.sources" not in text and "from smlp_jax.data import sources" not in text
        )


def _function_level_imports(path: pathlib.Path) -> list[tuple[int, str]]:
    """(line, module) of every import inside a function body."""
    found = []
    for func in ast.walk(ast.parse(path.read_text())):
        if not isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for node in ast.walk(func):
            if isinstance(node, ast.Import):
                found += [(node.lineno, a.name) for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                found.append((node.lineno, node.module or ""))
    return sorted(set(found))


def test_function_level_imports_are_lazy_on_purpose_and_say_why():
    """Imports sit at the top of a module; the only ones inside functions are deliberately
    lazy (heavy or optional packages), each with `# lazy: <reason>` on its line or the
    line above."""
    unexplained = []
    for path in sorted([*ROOT.rglob("*.py"), ROOT.parent / "main.py"]):
        lines = path.read_text().splitlines()
        for lineno, module in _function_level_imports(path):
            here = lines[lineno - 1] + (lines[lineno - 2] if lineno > 1 else "")
            if "lazy:" not in here.lower():
                unexplained.append(f"{path.relative_to(ROOT.parent)}:{lineno} imports {module}")
    assert not unexplained, "function-level imports without a reason:\n" + "\n".join(unexplained)


def test_library_code_names_no_test_file():
    """The package says what is checked, never where: a path under tests/ or a test
    module's file name in its source would rot as the tests move."""
    named = re.compile(r"\btests/|\btest_\w+\.py\b|\bconftest\.py\b")
    found = [
        f"{path.relative_to(ROOT.parent)}:{lineno}: {line.strip()}"
        for path in sorted(ROOT.rglob("*.py"))
        for lineno, line in enumerate(path.read_text().splitlines(), start=1)
        if named.search(line)
    ]
    assert not found, "library code names test files:\n" + "\n".join(found)
