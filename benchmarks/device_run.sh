#!/usr/bin/env bash
# The lent GPU machine's one call, start to finish: install the carried wheels, run the
# prepared check (accelerator_check.sh) inside the call's time, and pack what it wrote into
# the few files the device tool brings back (its $OUT: at most 8 files of 16 MiB each, no
# deeper than 2 folders), the summaries first.
#
#   here:   python benchmarks/device_wheels.py download
#   device: run(carry=["wheels"], timeout_s=600, command="bash benchmarks/device_run.sh")
#   smoke:  OUT=/tmp/back PY=.venv/bin/python NO_WHEELS=1 bash benchmarks/device_run.sh --tiny
#
# Arguments go to accelerator_check.sh (default --budget 480: with the install and the
# packing the call stays inside 600 s). Its results stay in benchmarks/results on the
# machine too, with the JAX compilation cache, so a rerun on the warm machine compiles
# nothing again.
set -uo pipefail
cd "$(dirname "$0")/.."
BACK=${OUT:?"OUT: the folder the device tool brings back"}
PY=${PY:-python3}
RESULTS=${RESULTS:-benchmarks/results}
mkdir -p "$BACK" "$RESULTS"
{
  date -u
  nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv 2>/dev/null || true
  "$PY" -c "import sys, jax; print(sys.version.split()[0], jax.__version__, jax.devices())"
} >"$BACK/machine.txt" 2>&1
if [[ -z ${NO_WHEELS:-} ]]; then
  "$PY" benchmarks/device_wheels.py install >>"$BACK/machine.txt" 2>&1 || {
    echo "the carried wheels did not install (machine.txt)" >&2
    exit 1
  }
fi

ARGS=("$@")
[[ " $* " == *" --budget"* ]] || ARGS=(--budget 480 "${ARGS[@]}")
CHECK=${CHECK:-benchmarks/accelerator_check.sh}  # (the test's stand-in writes a few files)
OUT=$RESULTS PY=$PY bash "$CHECK" "${ARGS[@]}" 2>&1 | tee "$BACK/log.txt"
status=${PIPESTATUS[0]}

# Pack: every table and JSON in one archive, then the HLO, then the traces (the per-op
# account's input, sMLPNet-B's first), one archive each while the tool's 8 files last.
(cd "$RESULTS" && find . -path ./jax_cache -prune -o \( -name '*.json' -o -name '*.md' \) \
  -type f -print | tar czf "$BACK/summary.tar.gz" -T -)
[[ -d $RESULTS/peer_check/hlo ]] && tar czf "$BACK/hlo.tar.gz" -C "$RESULTS/peer_check" hlo
for trace in "$RESULTS"/peer_check/trace/smlpnet_b "$RESULTS"/peer_check/trace/smlpnet_b_plain \
  "$RESULTS"/peer_check/trace/*; do
  name=$(basename "$trace")
  [[ -d $trace && ! -e $BACK/trace_$name.tar.gz ]] || continue
  (($(find "$BACK" -type f | wc -l) < 8)) || break
  tar czf "$BACK/trace_$name.tar.gz" -C "$RESULTS/peer_check/trace" "$name"
done
# A file over the tool's 16 MiB would not come back: say so in what does.
find "$BACK" -type f -size +16M -printf 'too large to come back: %f (%s bytes)\n' \
  | tee -a "$BACK/machine.txt" >&2
ls -l "$BACK" >&2
exit "$status"
