"""benchmarks/device_run.sh, the GPU machine's one call: it runs the check and packs its
results into the few files the device tool brings back (at most 8, summaries first).
The check is a stand-in here (the real one has its own smoke test)."""

import subprocess
import tarfile

from tests.train.tiny import REPO

FAKE_CHECK = r"""
mkdir -p "$OUT/peer_check/hlo" "$OUT/accelerator_check" "$OUT/jax_cache"
echo '{"rows": []}' > "$OUT/peer_check/peer_check.json"
echo '| table |' > "$OUT/peer_check/peer_check.md"
echo '{}' > "$OUT/accelerator_check/accelerator_check.json"
echo 'cached' > "$OUT/jax_cache/entry.json"
echo 'HloModule m' > "$OUT/peer_check/hlo/smlpnet_b_b128_train_step.txt"
for m in mixer_b16 smlpnet_b_plain convmixer_768_32 smlpnet_b smlpnet_t a b c d; do
  mkdir -p "$OUT/peer_check/trace/$m/plugins" && echo x > "$OUT/peer_check/trace/$m/plugins/t"
done
echo "check ran with: $*"
exit 3
"""


def test_the_results_come_back_packed_summaries_first(tmp_path):
    check, back, results = tmp_path / "check.sh", tmp_path / "back", tmp_path / "results"
    check.write_text(FAKE_CHECK)
    env = {"PATH": "/usr/bin:/bin", "OUT": str(back), "PY": "python3", "NO_WHEELS": "1"}
    env |= {"CHECK": str(check), "RESULTS": str(results)}
    proc = subprocess.run(
        ["bash", str(REPO / "benchmarks" / "device_run.sh"), "--tiny"],
        env=env, capture_output=True, text=True, timeout=60, cwd=REPO,
    )  # fmt: skip
    assert proc.returncode == 3, proc.stderr  # the check's own status
    assert "check ran with: --budget 480 --tiny" in (back / "log.txt").read_text()
    files = sorted(p.name for p in back.iterdir())
    assert len(files) == 8 and {"machine.txt", "log.txt", "summary.tar.gz", "hlo.tar.gz"} < set(
        files
    ), files
    # sMLPNet-B's traces first (the per-op account's), then others while 8 files last.
    assert {"trace_smlpnet_b.tar.gz", "trace_smlpnet_b_plain.tar.gz"} < set(files)
    with tarfile.open(back / "summary.tar.gz") as tar:
        names = sorted(tar.getnames())
    assert names == [
        "./accelerator_check/accelerator_check.json",
        "./peer_check/peer_check.json",
        "./peer_check/peer_check.md",
    ]  # the compilation cache stays on the machine
