"""The README's Python snippets run as written, each in a fresh interpreter ("Use the
models"); the README stays a short page for users. The helpers here read any Markdown file
of the repository by section heading; tests/test_docs.py runs the blocks of docs/*.md."""

import re
import subprocess
import sys

from tests.train.tiny import REPO, subprocess_env

_HEADING = re.compile(r"^(#{1,6}) (.+?)\s*$")


def python_blocks(file: str = "README.md") -> dict[str, list[str]]:
    """Section heading -> the ```python blocks under it (before the next heading), for the
    Markdown file `file` (a path relative to the repository root). Lines inside fences are
    never headings (a code comment starts with '#' too)."""
    sections: dict[str, list[str]] = {}
    heading, fence, code = "", None, []
    for line in (REPO / file).read_text().splitlines():
        if fence is None:
            match = _HEADING.match(line)
            if match:
                heading = match.group(2)
                assert heading not in sections, f"{file}: two sections named {heading!r}"
                sections[heading] = []
            elif line.startswith("```"):
                fence, code = line[3:].strip(), []
        elif line.startswith("```"):
            if fence == "python":
                sections.setdefault(heading, []).append("\n".join(code) + "\n")
            fence = None
        else:
            code.append(line)
    assert fence is None, f"{file}: a code block is never closed"
    return {name: blocks for name, blocks in sections.items() if blocks}


def block(heading: str, file: str = "README.md") -> str:
    """The one ```python block of the section `heading` in `file`."""
    blocks = python_blocks(file).get(heading, [])
    assert len(blocks) == 1, f"{file}, {heading!r}: {len(blocks)} python blocks, not 1"
    return blocks[0]


def run(code: str, cwd=REPO) -> str:
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
    # A new snippet needs a test below (and its section here).
    assert {name: len(b) for name, b in python_blocks("README.md").items()} == {"Use the models": 1}


def test_use_the_models_block_runs():
    run(block("Use the models") + "\nassert logits.shape == (8, 1000), logits.shape\n")


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


def test_the_readme_is_a_short_page_for_users():
    """At most 250 lines; the rest is in docs/. It says to activate the virtual environment
    (a plain `python main.py` in a new shell does not find the packages), and names no
    issue and nothing outside the repository."""
    text = (REPO / "README.md").read_text()
    assert len(text.splitlines()) <= 250
    assert "source .venv/bin/activate" in text
    assert not re.search(r"issue[ _#]*\d|\]\(\.\./", text, re.I), "issue names or ../ links"
