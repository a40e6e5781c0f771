"""The Python blocks of docs/*.md run as written, each in a fresh interpreter, and every
one is counted here, so a new block without a test fails; the links of the README and the
docs pages lead somewhere."""

import re

import pytest

from tests.test_readme import block, python_blocks, run
from tests.train.tiny import REPO

DOCS = sorted(p.relative_to(REPO).as_posix() for p in (REPO / "docs").glob("*.md"))

# Every docs page, and the sections holding its Python blocks (each run by a test below).
TESTED = {
    "docs/data.md": {},
    "docs/design.md": {},
    "docs/models.md": {
        "Hugging Face Hub": 1,
        "Features": 1,
        "For serving: jax.export, ONNX": 1,
    },
    "docs/results.md": {},
    "docs/training.md": {"Evaluators": 1, "Your own training loop": 1},
}


def test_every_docs_page_is_listed_here():
    assert DOCS == sorted(TESTED)


@pytest.mark.parametrize("page", DOCS)
def test_every_python_block_is_tested_here(page):
    # A new block needs a test below (and its section in TESTED).
    assert {name: len(b) for name, b in python_blocks(page).items()} == TESTED.get(page)


def test_hugging_face_hub_block_runs():
    assert run(block("Hugging Face Hub", "docs/models.md")).strip().splitlines()[-1] == "0.0"


def test_export_block_runs(tmp_path):
    """docs/models.md "For serving": the artifact folder it writes (in a scratch directory)
    loads back."""
    code = block("For serving: jax.export, ONNX", "docs/models.md")
    last = run(code, cwd=tmp_path).strip().splitlines()[-1]
    assert last.startswith("(4, 10) [0.4914, 0.4822, 0.4465]"), last
    assert sorted(p.name for p in (tmp_path / "served" / "convmixer").iterdir()) == [
        "forward.jaxexport",
        "serving.json",
        "weights.npz",
    ]


def test_features_block_runs():
    strides, final = run(block("Features", "docs/models.md")).strip().splitlines()
    assert strides == "[4, 8] [(2, 8, 8, 8), (2, 4, 4, 16)]", strides
    assert final == "(2, 4, 4, 16) (2, 16)", final


def test_own_training_loop_block_runs():
    """docs/training.md: both of Flax's styles (nnx.jit and jax.jit over pure state), with
    BatchNorm."""
    last = run(block("Your own training loop", "docs/training.md")).strip().splitlines()[-1]
    loss = float(last.split()[1])
    assert 0.0 < loss < 2.3, last  # 6 steps on 8 fixed images: well below chance's ln 10
    assert len(last.split("predictions")[1].split(",")) == 8


def test_evaluators_block_runs():
    """docs/training.md "Evaluators": the config file's evaluators, each with every field of
    its kind (the ImageNet-C one's `clean` defaults to the run's own "eval")."""
    last = run(block("Evaluators", "docs/training.md")).strip().splitlines()[-1]
    assert last == "['a', 'c', 'eval', 'fewshot', 'real', 'v2'] imagenet_a eval eval/top1", last


def _anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")


def _headings(path) -> set[str]:
    text = re.sub(r"^```.*?^```", "", path.read_text(), flags=re.S | re.M)
    return {_anchor(m) for m in re.findall(r"^#{1,6} (.+?)\s*$", text, re.M)}


@pytest.mark.parametrize("page", ["README.md", *DOCS])
def test_relative_links_lead_somewhere(page):
    """Every relative link (files, images, #anchors) of the page names a file of the
    repository and, with an anchor into a Markdown file, one of its headings."""
    source = REPO / page
    text = re.sub(r"^```.*?^```", "", source.read_text(), flags=re.S | re.M)
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target):  # https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        resolved = (source.parent / path).resolve() if path else source
        if not resolved.exists() or REPO.resolve() not in [resolved, *resolved.parents]:
            broken.append(target)
        elif anchor and resolved.suffix == ".md" and anchor not in _headings(resolved):
            broken.append(target)
    assert not broken, f"{page}: {broken}"
