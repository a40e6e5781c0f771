#!/usr/bin/env bash
# The one prepared GPU run: every GPU measurement the open speed issues ask for, most
# important first, inside one time budget. Run from the repository root on a machine with
# one GPU (or TPU), after `make install`; the PyTorch rows need torch and timm in the same
# Python (PY=python3 on the lent GPU machine, where both are installed).
#
#   bash benchmarks/accelerator_check.sh [--budget SECONDS] [--tiny] [accelerator_check.py args]
#
# 1. benchmarks/peer_check.py (most of the budget): per model, sMLPNet-B first, our train
#    step with the default forms ("jax") and the PyTorch code eager and under
#    torch.compile; then, past every model, each model's step as it was before the lean
#    VJPs ("jax plain") and with every block recomputed in the backward ("jax remat",
#    config.remat; not with --tiny); HLO and profiler traces of the jax rows
#    (benchmarks/trace_account.py reads them). $PEER_ARGS are added to its args.
# 2. XLA flag A/B (smlp_jax/tools/xla_flags.py GPU_CANDIDATES): sMLPNet-T's jax row, one
#    process per candidate flag, against the defaults (skipped with --tiny or past budget).
# 3. benchmarks/end_to_end.py (20% of the budget, kept free by step 2): main.py with
#    sMLPNet-T's full recipe on generated ImageNet-like JPEGs, batch 128, host augmentation
#    and device resize, the default worker count (all cores but two) and in-process: img/s
#    and input wait against the step alone (skipped with --tiny; CI runs its own smoke test).
# 4. benchmarks/accelerator_check.py with what is left: fp32 rows, the depthwise paths,
#    device augmentation, the grain input pipeline.
# Each writes its JSON and table after every row, under $OUT (default
# benchmarks/results), and skips rows past its share; one JAX persistent compilation
# cache inside that folder (jax_cache/) serves all three, so a rerun on the same machine
# loads the compiled steps instead of compiling them again.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${OUT:-benchmarks/results}
BUDGET=540
TINY=()
CHECK_ARGS=()
while (($#)); do
  case "$1" in
    --budget) BUDGET=$2; shift 2 ;;
    --budget=*) BUDGET=${1#*=}; shift ;;
    --tiny) TINY=(--tiny); shift ;;
    *) CHECK_ARGS+=("$1"); shift ;;
  esac
done
mkdir -p "$OUT"
export JAX_COMPILATION_CACHE_DIR=${JAX_COMPILATION_CACHE_DIR:-$(cd "$OUT" && pwd)/jax_cache}
START=$SECONDS
left() { echo $((BUDGET - (SECONDS - START))); }
status=0

# 1. the peer check: 65% of the budget; rows that would start in its last 20% are skipped
PEER=$((BUDGET * 65 / 100))
# shellcheck disable=SC2086  # PEER_ARGS: words on purpose
timeout "$PEER" "$PY" benchmarks/peer_check.py --out "$OUT/peer_check" \
  --budget $((PEER * 80 / 100)) ${TINY[@]+"${TINY[@]}"} \
  --models smlpnet_b smlpnet_t mixer_b16 convmixer_768_32 \
  --jax-forms default plain $( ((${#TINY[@]})) || echo remat) ${PEER_ARGS:-} \
  || { status=$?; echo "peer_check.py exited with status $status" >&2; }

# 2. XLA flags, one process each (XLA reads XLA_FLAGS at start-up), leaving step 3's share
E2E=$((BUDGET * 20 / 100))
if ((${#TINY[@]} == 0)); then
  for name in $("$PY" -c "from smlp_jax.tools import xla_flags as x; print(*x.GPU_CANDIDATES)"); do
    if (($(left) < E2E + 120)); then echo "flags: no time left for $name" >&2; break; fi
    flag=$("$PY" -c "from smlp_jax.tools import xla_flags as x; print(x.GPU_CANDIDATES['$name'])")
    XLA_FLAGS="${XLA_FLAGS:-} $flag" timeout $(($(left) - 60)) "$PY" benchmarks/peer_check.py \
      --out "$OUT/flags/$name" --models smlpnet_t --jax-forms default --no-torch \
      --trace-models --budget 30 || echo "flag $name: status $?" >&2
  done
fi

# 3. end to end: main.py on a JPEG folder (rows that would start past 70% of its share skipped)
if ((${#TINY[@]} == 0)) && (($(left) > 90)); then
  timeout $((E2E < $(left) ? E2E : $(left))) "$PY" benchmarks/end_to_end.py \
    --out "$OUT/end_to_end" --workers -1 0 --modes "" resize_and_augment \
    --batch 128 --steps 24 --images 512 --budget $((E2E * 70 / 100)) \
    || echo "end_to_end.py: status $?" >&2
fi

# 4. the earlier accelerator check with what is left
LEFT=$(left)
if ((LEFT < 60)); then
  echo "no time left for accelerator_check.py (budget $BUDGET s)" >&2
  exit "$status"
fi
timeout "$LEFT" "$PY" benchmarks/accelerator_check.py --out "$OUT/accelerator_check" \
  --budget $((LEFT > 120 ? LEFT - 60 : LEFT / 2)) ${TINY[@]+"${TINY[@]}"} \
  ${CHECK_ARGS[@]+"${CHECK_ARGS[@]}"} \
  || { s=$?; echo "accelerator_check.py exited with status $s" >&2; status=$((status ? status : s)); }
exit "$status"
