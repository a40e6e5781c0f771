"""Smoke tests of the benchmark harnesses (benchmarks/throughput.py: a tiny model, batch 2;
benchmarks/depthwise.py: a tiny stack; benchmarks/smlp_formulations.py: tiny sMLPNet).

No timing assertions: speeds only have to be positive and finite. CI has no torch, so
the PyTorch columns stay empty and say why; the full comparison is run by hand.
"""

import json
import math
import sys

import jax
import numpy as np
import pytest
from flax import nnx

import smlp_jax
from tests.train.tiny import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
import depthwise  # noqa: E402
import smlp_formulations  # noqa: E402
import throughput  # noqa: E402

from smlp_jax.models import layers, smlpnet  # noqa: E402


def test_every_family_has_tiny_hyperparameters_that_build():
    families = {smlp_jax.models.registry.get_entry(n).family for n in smlp_jax.list_models()}
    assert families <= set(throughput.TINY), families - set(throughput.TINY)
    for family in sorted(families):
        name = smlp_jax.list_models(family)[0]
        _, hp = throughput.hyperparameters(name, tiny=True)
        model = nnx.eval_shape(
            lambda name=name, hp=hp: smlp_jax.create_model(
                name, image_size=throughput.TINY_IMAGE_SIZE, num_classes=10, **hp
            )
        )
        assert jax.tree.leaves(nnx.state(model, nnx.Param)), name
        assert hp.get("drop_path_rate", 0.0) == 0.0


X86_CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 25
model\t\t: 17
model name\t: AMD EPYC
stepping\t: 1
flags\t\t: fpu sse2 avx2 fma avx512f avx512bw avx512_bf16 avx512_vnni

processor\t: 1
model name\t: a second core, not read
"""

ARM_CPUINFO = """processor\t: 0
BogoMIPS\t: 50.00
Features\t: fp asimd evtstrm aes sve
CPU implementer\t: 0x41
"""


def test_cpu_description_names_the_generation_and_vector_isa():
    # The model name alone ("AMD EPYC") hid a 1.5x difference in GEMM rate between hosts.
    assert (
        throughput.cpu_description(X86_CPUINFO)
        == "AMD EPYC, family 25 model 17 stepping 1, avx512_bf16 avx512f avx2"
    )
    arm = throughput.cpu_description(ARM_CPUINFO)
    assert arm.endswith(", asimd") and "family" not in arm


def test_harness_runs_and_reports_every_column(tmp_path, capsys):
    out = tmp_path / "rows.json"
    rows = throughput.main(
        [
            "--tiny",
            "--models",
            "smlpnet_t",
            "--batch-sizes",
            "2",
            "--num-classes",
            "10",
            "--warmup",
            "1",
            "--repeats",
            "2",
            "--iters",
            "1",
            "--no-torch",
            "--json",
            str(out),
        ]
    )
    (row,) = rows
    model = nnx.eval_shape(  # shapes only: no second initialisation
        lambda: smlp_jax.create_model(
            "smlpnet_t",
            image_size=32,
            num_classes=10,
            **throughput.hyperparameters("smlpnet_t", True)[1],
        )
    )
    expected = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(nnx.state(model, nnx.Param)))
    assert row.params == expected
    assert row.macs > 0
    for value in (row.jax_fwd, row.jax_train, row.compile_train_s, row.xla_train_mib, row.rss_mib):
        assert math.isfinite(value) and value > 0
    assert row.torch_fwd is None and row.fwd_ratio is None  # --no-torch

    printed = capsys.readouterr().out
    assert "# versions:" in printed and "jax" in printed
    assert "PyTorch reference columns empty: --no-torch" in printed
    table_rows = [line for line in printed.splitlines() if line.startswith("| smlpnet_t |")]
    assert len(table_rows) == 1 and table_rows[0].count("|") == 15

    saved = json.loads(out.read_text())
    assert saved["rows"][0]["model"] == "smlpnet_t" and saved["rows"][0]["params"] == expected
    assert {"date", "host", "jax devices", "versions"} <= set(saved["header"])


def test_unknown_model_is_one_clear_line():
    with pytest.raises(SystemExit, match="unknown model.*smlpnet_x.*list_models"):
        throughput.main(["--models", "smlpnet_x", "--no-torch"])


def test_depthwise_benchmark_checks_every_implementation(capsys):
    args = "--kernel-sizes 3 --batch 1 --size 6 --channels 4 --depth 2 --repeats 1"
    impls = ["shift", "shift_unchunked", "autodiff", "xla", "torch"]
    rows = depthwise.main([*args.split(), "--impls", *impls])
    printed = capsys.readouterr().out
    try:
        import torch  # noqa: F401
    except ImportError:
        impls.remove("torch")
        assert printed.count("torch not installed") == 1
    assert [(r["k"], r["impl"]) for r in rows] == [(3, i) for i in impls]
    for row in rows:
        assert row["err"] < 1e-5, row  # every form gives the first one's kernel gradient
        assert row["fwd_ms"] > 0 and row["train_ms"] > 0
    assert all(row["xla_mib"] is not None for row in rows if row["impl"] != "torch")


def test_depthwise_benchmark_refuses_unknown_implementation(capsys):
    with pytest.raises(SystemExit):
        depthwise.main(["--impls", "fft"])
    assert "unknown --impls ['fft']" in capsys.readouterr().err


def test_isolate_times_jax_in_a_process_of_its_own(capsys):
    """--isolate: the row comes from a child process (`--side jax`), merged and printed here."""
    argv = "--tiny --isolate --models mixer_s16 --batch-sizes 2 --num-classes 10"
    (row,) = throughput.main([*argv.split(), "--repeats", "1", "--iters", "1", "--no-torch"])
    assert row.model == "mixer_s16" and row.params > 0 and row.macs > 0
    assert math.isfinite(row.jax_train) and row.jax_train > 0
    assert math.isfinite(row.compile_train_s) and row.torch_train is None
    printed = capsys.readouterr().out
    assert "# isolated: each library timed in a process of its own" in printed
    assert [line for line in printed.splitlines() if line.startswith("| mixer_s16 | 2 |")]


def test_side_torch_without_torch_is_one_clear_line():
    try:
        import torch  # noqa: F401
    except ImportError:
        with pytest.raises(SystemExit, match="--side torch: torch not installed"):
            throughput.main(["--side", "torch", "--models", "mixer_s16"])
    else:
        pytest.skip("torch is installed here: --side torch runs")


def test_formulation_variants_are_built_in_the_benchmarks_own_model_copy(capsys):
    """Each variant computes the model's logits, and the library's classes are left as
    they were (variants swap classes of the benchmark's own instances, nothing global)."""
    calls = (smlpnet.SMLP.__call__, layers.DepthwiseConv.__call__, layers.Mlp.__call__)
    variants = ["model", "split_fuse", "grouped_conv", "gelu_vjp", "no_store_grad"]
    argv = "--tiny --image-size 32 --batch 2 --repeats 1 --fwd-iters 1 --no-train"
    errors = smlp_formulations.main([*argv.split(), "--variants", *variants])
    assert sorted(errors) == sorted(variants)
    assert max(errors.values()) < 1e-4, errors
    assert (smlpnet.SMLP.__call__, layers.DepthwiseConv.__call__, layers.Mlp.__call__) == calls
    table = capsys.readouterr().out
    assert all(f"| {v} |" in table for v in variants)


def test_remat_benchmark_reports_saved_bytes_and_step_per_policy(capsys):
    """benchmarks/remat_policies.py on a tiny sMLPNet: one row a policy in each table;
    recomputing every block keeps fewer bytes per image than keeping everything."""
    import remat_policies

    remat_policies.main(
        ["--tiny", "--models", "smlpnet_t", "--policies", "none", "nothing_saveable"]
        + ["--repeats", "1", "--batch", "2"]
    )
    out = capsys.readouterr().out
    saved = next(line for line in out.splitlines() if line.startswith("| smlpnet_t |"))
    none, nothing = (float(cell.split()[0]) for cell in saved.strip("| ").split(" | ")[1:])
    assert 0 < nothing < none, saved
    steps = [line for line in out.splitlines() if line.startswith(("| none |", "| nothing_"))]
    assert len(steps) == 2 and "1.00x" in steps[0], out
    assert all(float(line.split("|")[2].split()[0]) > 0 for line in steps), steps


def test_page_faults_benchmark_measures_each_allocator_setting_in_its_own_process(tmp_path):
    """benchmarks/page_faults.py on a tiny sMLPNet: a row per setting, each from a child
    process with the setting in place; an allocator the system lacks is a skipped row."""
    import page_faults

    out = tmp_path / "rows.json"
    page_faults.main(
        ["--tiny", "--batch", "2", "--steps", "2", "--settings", "glibc", "glibc-kept"]
        + ["--json", str(out)]
    )
    rows = json.loads(out.read_text())
    assert [r["setting"] for r in rows] == ["glibc", "glibc-kept"], rows
    for row in rows:
        assert row["step_ms"] > 0 and row["peak_rss_mib"] > 0 and row["xla_mib"] > 0, row
        assert row["faults_per_step"] >= 0 and row["system_s_per_step"] >= 0, row
    missing = page_faults.setting_env("tcmalloc")
    assert isinstance(missing, dict) or missing == "tcmalloc is not installed"
    assert page_faults.setting_env("hugetlb") == {"GLIBC_TUNABLES": "glibc.malloc.hugetlb=1"}


def test_state_init_benchmark_times_both_ways_in_fresh_processes(capsys):
    """benchmarks/state_init.py on a tiny sMLPNet: the compiled and op-by-op states, each
    timed in a process of its own, hold the same values to float rounding; the draws'
    compile is timed per count."""
    import state_init

    result = state_init.main(["--tiny", "--draws", "2"])
    assert result["compiled"]["seconds"] > 0 and result["op_by_op"]["seconds"] > 0
    assert result["compiled"]["leaves"] == result["op_by_op"]["leaves"] > 10
    assert result["largest_difference"] < 1e-6
    assert list(result["draws"]) == [2] and result["draws"][2] > 0
    assert "op_by_op" in capsys.readouterr().out


def test_step_program_benchmark_measures_the_trainers_step_in_a_fresh_process(tmp_path):
    """benchmarks/step_program.py on a tiny sMLPNet: the trainer's own step, compiled in a
    process of its own, counted (the copies among its instructions), loaded back from its
    serialised executable and run on a demo batch to a finite loss; each row is written."""
    import step_program

    out = tmp_path / "rows.jsonl"
    (row,) = step_program.main(["--tiny", "--steps", "1", "--out", str(out)])
    assert row["compile_s"] > 0 and row["trace_s"] > 0 and row["step_s"] > 0
    assert row["instructions"] > row["fusions"] > 0 and row["copies"] >= 0
    assert row["executable_mb"] > 0 and row["temp_mb"] > 0 and len(row["load_s"]) == 2
    assert row["finite"]
    assert json.loads(out.read_text()) == row
