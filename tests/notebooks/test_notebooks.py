"""Every notebook in notebooks/ runs top to bottom on CPU, failing on any cell error.

The kernel is this interpreter (a kernelspec written to a temporary JUPYTER_PATH, so a
user-wide "python3" kernel elsewhere cannot be picked up instead), with the repository on
PYTHONPATH (the notebooks' install cell then finds smlp_jax and skips pip), the demo
digits already built, and `SMLP_NOTEBOOK_STEPS` small so training takes seconds.
"""

import json
import os
import sys
from pathlib import Path

import pytest

from tests.train.tiny import FAST_COMPILE

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
KERNEL = "smlp-jax-test"
STEPS = 12


@pytest.fixture(scope="module")
def kernel_env(tmp_path_factory, demo_data_dir):
    """Environment variables for the kernel (set on os.environ, which it inherits)."""
    jupyter_path = tmp_path_factory.mktemp("jupyter")
    spec_dir = jupyter_path / "kernels" / KERNEL
    spec_dir.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    spec = {"argv": argv, "display_name": "smlp_jax tests", "language": "python"}
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    env = {
        "JUPYTER_PATH": str(jupyter_path),
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        "JAX_PLATFORMS": "cpu",
        "XLA_FLAGS": FAST_COMPILE,
        "TFDS_DATA_DIR": demo_data_dir,
        "SMLP_NOTEBOOK_STEPS": str(STEPS),
        "MPLBACKEND": "Agg",
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    yield env
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def test_there_are_notebooks():
    assert {p.name for p in NOTEBOOKS} >= {"quickstart.ipynb"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_top_to_bottom(path, kernel_env):
    notebook = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        notebook,
        kernel_name=KERNEL,
        timeout=300,
        resources={"metadata": {"path": str(path.parent)}},
    )
    client.execute()  # raises CellExecutionError, naming the cell, on any error
    outputs = "".join(
        out.get("text", "")
        for cell in notebook.cells
        if cell.cell_type == "code"
        for out in cell.get("outputs", [])
    )
    if path.name == "quickstart.ipynb":
        assert "Running on CPU" in outputs
        assert f"logged train steps: {list(range(1, STEPS + 1))}" in outputs
        assert "held-out top-1" in outputs
        assert "predictions [" in outputs  # section 9, the own-loop block ran
