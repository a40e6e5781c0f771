"""The README's Python snippets run as written, each in a fresh interpreter: "Use the
models" and "Your own training loop" (both nnx.jit and the functional jax.jit style,
with BatchNorm)."""

import re
import subprocess
import sys

from tests.train.tiny import REPO, subprocess_env


def _block(heading: str) -> str:
    text = (REPO / "README.md").read_text()
    section = text.split(f"### {heading}\n", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def _run(code: str, cwd=REPO) -> str:
    out = subprocess.run(
        [sys.executable, "-c", code],
        env=subprocess_env(1),
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def test_every_python_snippet_is_tested_here():
    text = (REPO / "README.md").read_text()
    assert text.count("```python") == 5  # a new snippet needs a test below


def test_use_the_models_block_runs():
    code = (REPO / "README.md").read_text().split("## Use the models\n", 1)[1]
    code = re.search(r"```python\n(.*?)```", code, re.S).group(1)
    _run(code + "\nassert logits.shape == (8, 1000), logits.shape\n")


def test_hugging_face_hub_block_runs():
    assert _run(_block("Hugging Face Hub")).strip().splitlines()[-1] == "0.0"


def test_export_block_runs(tmp_path):
    """README "Export": the artifact folder it writes (in a scratch directory) loads back."""
    last = _run(_block("For serving: jax.export, ONNX"), cwd=tmp_path).strip().splitlines()[-1]
    assert last.startswith("(4, 10) [0.4914, 0.4822, 0.4465]"), last
    assert sorted(p.name for p in (tmp_path / "served" / "convmixer").iterdir()) == [
        "forward.jaxexport",
        "serving.json",
        "weights.npz",
    ]


def test_features_block_runs():
    strides, final = _run(_block("Features")).strip().splitlines()
    assert strides == "[4, 8] [(2, 8, 8, 8), (2, 4, 4, 16)]", strides
    assert final == "(2, 4, 4, 16) (2, 16)", final


def test_own_training_loop_block_runs():
    last = _run(_block("Your own training loop")).strip().splitlines()[-1]
    loss = float(last.split()[1])
    assert 0.0 < loss < 2.3, last  # 6 steps on 8 fixed images: well below chance's ln 10
    assert len(last.split("predictions")[1].split(",")) == 8


def test_the_predict_examples_digit_is_written(tmp_path):
    """README "Tools": the one-liner that writes digit.png for the predict example."""
    line = next(x for x in (REPO / "README.md").read_text().splitlines() if "save_test_digit" in x)
    command = line.split('python -c "', 1)[1].rsplit('"', 1)[0]
    out = subprocess.run(
        [sys.executable, "-c", command],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env=subprocess_env(1),
    )
    assert out.returncode == 0, out.stderr[-2000:]
    from PIL import Image

    with Image.open(tmp_path / "digit.png") as image:
        assert image.size == (28, 28) and image.mode == "L"
    assert 0 <= int(out.stdout.strip()) <= 9
