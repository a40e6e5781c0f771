"""Writes our exported weights for the official code to load (the JAX side of the export
check; `make fixtures` runs it with .venv before reference/make_export_fixture.py):

    .venv/bin/python reference/write_export_weights.py

tests/fixtures/export/<family>.safetensors: `smlp_jax.convert.export.save_weights` of the
case in tests/convert/export_cases.py; <family>_images.npy: its inputs (NHWC).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from smlp_jax.convert.export import save_weights  # noqa: E402
from tests.convert.export_cases import EXPORTS, build, cases, images  # noqa: E402


def main() -> None:
    EXPORTS.mkdir(exist_ok=True)
    for family in cases():
        keys = save_weights(build(family), EXPORTS / f"{family}.safetensors")
        np.save(EXPORTS / f"{family}_images.npy", images(family))
        print(f"{family}: {len(keys)} arrays")


if __name__ == "__main__":
    main()
