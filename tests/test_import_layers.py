"""Dependencies run one way: entry points -> train -> factory -> convert -> models, with
data beside models and serving (which needs only models) beside factory. Checked on the
source (every import statement, at any depth), so a function-level import cannot hide a
circle."""

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1] / "smlp_jax"

# A package may import its own modules and those of the packages listed for it.
ALLOWED = {
    "models": set(),
    "data": set(),
    "convert": {"models"},
    "factory": {"convert", "models"},
    "serving": {"models"},
    "train": {"factory", "convert", "models", "data"},
    "tools": {"train", "factory", "convert", "models", "data", "serving"},
}


def _package(path: pathlib.Path) -> str:
    rel = path.relative_to(ROOT)
    return rel.parts[0].removesuffix(".py") if rel.parts[0] != "__init__.py" else ""


def _imported_packages(path: pathlib.Path) -> set[str]:
    """The smlp_jax subpackages `path` imports anywhere (absolute or relative imports)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: relative import (the house uses absolute ones)"
            module = node.module or ""
            names = (
                [f"{module}.{alias.name}" for alias in node.names]
                if module == "smlp_jax"
                else [module]
            )
        for name in names:
            parts = name.split(".")
            if parts[0] == "smlp_jax" and len(parts) > 1:
                found.add(parts[1])
    return found


def test_every_package_imports_only_the_layers_below_it():
    violations = []
    for path in sorted(ROOT.rglob("*.py")):
        package = _package(path)
        if package not in ALLOWED:  # the top-level package and its entry modules
            continue
        for imported in _imported_packages(path) - {package}:
            if imported not in ALLOWED[package]:
                violations.append(f"{path.relative_to(ROOT.parent)} imports smlp_jax.{imported}")
    assert not violations, "\n".join(violations)


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
