"""The README's "Your own training loop" block runs as written (both nnx.jit and the
functional jax.jit style, with BatchNorm), in a fresh interpreter."""

import re
import subprocess
import sys

from tests.train.tiny import REPO, subprocess_env


def _block(heading: str) -> str:
    text = (REPO / "README.md").read_text()
    section = text.split(f"### {heading}\n", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_own_training_loop_block_runs():
    out = subprocess.run(
        [sys.executable, "-c", _block("Your own training loop")],
        env=subprocess_env(1),
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    last = out.stdout.strip().splitlines()[-1]
    loss = float(last.split()[1])
    assert 0.0 < loss < 2.3, last  # 6 steps on 8 fixed images: well below chance's ln 10
    assert len(last.split("predictions")[1].split(",")) == 8
