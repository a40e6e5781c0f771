#!/usr/bin/env bash
# The prepared accelerator check (issue 21): run on a machine with one GPU or TPU, from the
# repository root, after `make install`. Writes accelerator_check.json / .md in $OUT (or .).
# Expected time: under 8 minutes on one H100/H200-class GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${OUT:-.}
timeout 480 "$PY" benchmarks/accelerator_check.py --out "$OUT/accelerator_check" "$@"
