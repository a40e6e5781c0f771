"""The quickstart's install cell works wherever the notebook is opened.

The cell's own source (read from the notebook) runs in a fresh interpreter from each
working directory a user has: the checkout's `notebooks/`, its root, the folder holding a
clone named `smlp_jax` (Colab's /content, where that folder would shadow the package), and
with `REPO` set to a git URL or an archive. Each must import this checkout's `smlp_jax`
without installing anything (this environment has every requirement; pip is pointed at
no index, so an attempt fails instead of reaching the network). The requirement logic is
checked on its own: a preinstalled recent JAX is kept, an old one is replaced by the
runtime's build.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _cell_source() -> str:
    notebook = json.loads((REPO / "notebooks" / "quickstart.ipynb").read_text())
    (source,) = [
        "".join(c["source"])
        for c in notebook["cells"]
        if c["cell_type"] == "code" and "def find_repo" in "".join(c["source"])
    ]
    return source


def _run_cell(cwd: Path, repo_setting: str = "") -> str:
    source = _cell_source().replace('REPO = ""', f"REPO = {repo_setting!r}", 1)
    env = {**os.environ, "PIP_NO_INDEX": "1", "JAX_PLATFORMS": "cpu"}
    env.pop("PYTHONPATH", None)  # the cell itself must find the package
    out = subprocess.run(
        [sys.executable, "-c", source],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "installing" not in out.stdout, out.stdout
    return out.stdout.strip().splitlines()[-1]


def _imported_from(line: str) -> Path:
    assert line.startswith("smlp_jax ") and " from " in line, line
    return Path(line.split(" from ", 1)[1])


@pytest.mark.parametrize("where", ["notebooks", "root"])
def test_from_the_checkout(where):
    cwd = REPO / "notebooks" if where == "notebooks" else REPO
    assert _imported_from(_run_cell(cwd)) == REPO / "smlp_jax"


def test_from_the_folder_holding_a_clone_named_smlp_jax(tmp_path):
    """Colab's /content after `!git clone URL smlp_jax`: that folder, a namespace package
    for a plain `import smlp_jax`, must not hide the real package inside it."""
    (tmp_path / "smlp_jax").symlink_to(REPO, target_is_directory=True)
    got = _imported_from(_run_cell(tmp_path))
    assert got == tmp_path / "smlp_jax" / "smlp_jax"


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_from_a_git_url_and_from_an_archive(tmp_path):
    if not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    by_url = tmp_path / "url"
    by_url.mkdir()
    got = _imported_from(_run_cell(by_url, f"file://{REPO}"))
    assert got == by_url / "smlp_jax_repo" / "smlp_jax"

    archive = tmp_path / "smlp_jax.tar.gz"
    subprocess.run(
        ["git", "-C", str(REPO), "archive", "--format=tar.gz", "--prefix=smlp_jax/", "HEAD"],
        stdout=archive.open("wb"),
        check=True,
    )
    by_archive = tmp_path / "archive"
    by_archive.mkdir()
    got = _imported_from(_run_cell(by_archive, str(archive)))
    assert got == by_archive / "smlp_jax_repo" / "smlp_jax" / "smlp_jax"


def _cell_functions() -> dict:
    source = _cell_source()
    namespace: dict = {}
    exec(source[: source.index("REPO = find_repo(REPO)")], namespace)  # noqa: S102
    return namespace


def test_a_recent_jax_is_kept_an_old_one_gets_the_runtimes_build(tmp_path, monkeypatch):
    cell = _cell_functions()
    assert "jax>=0.10.2" not in cell["missing_requirements"](str(REPO))
    (tmp_path / "requirements.txt").write_text("jax>=99.0  # newer than any\nnumpy>=1.0\n")
    for k in ("COLAB_TPU_ADDR", "TPU_NAME"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setattr(shutil, "which", lambda name: None)
    if cell["accelerator"]() == "cpu":  # no /dev/accel* here
        assert cell["missing_requirements"](str(tmp_path)) == ["jax>=99.0"]
        monkeypatch.setattr(shutil, "which", lambda name: "/usr/bin/nvidia-smi")
        assert cell["missing_requirements"](str(tmp_path)) == ["jax[cuda12]>=99.0"]
    monkeypatch.setenv("TPU_NAME", "v5e")
    assert cell["missing_requirements"](str(tmp_path)) == ["jax[tpu]>=99.0"]


def test_a_folder_that_is_no_checkout_is_one_clear_error(tmp_path):
    cell = _cell_functions()
    with pytest.raises(RuntimeError, match="not an smlp_jax checkout"):
        cell["find_repo"](str(tmp_path))
