"""benchmarks/trace_account.py: kernels of a GPU trace by kind, idle gaps, per step; the
derived "XLA Ops" line of the device is not counted twice."""

import gzip
import json
import sys

import pytest

from tests.train.tiny import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
import trace_account  # noqa: E402


def _trace(folder):
    meta = [
        {"ph": "M", "pid": 1, "name": "process_name", "args": {"name": "/host:CPU"}},
        {"ph": "M", "pid": 2, "name": "process_name", "args": {"name": "/device:GPU:0"}},
        {"ph": "M", "pid": 2, "tid": 7, "name": "thread_name", "args": {"name": "Stream #7"}},
        {"ph": "M", "pid": 2, "tid": 9, "name": "thread_name", "args": {"name": "XLA Ops"}},
    ]
    kernels = [  # (name, ts us, dur us) on stream 7; a gap of 10 us after the GEMM
        ("sm90_xmma_gemm_bf16bf16_bf16f32", 0, 40),
        ("loop_transpose_fusion", 50, 10),
        ("input_reduce_fusion_3", 60, 20),
        ("loop_multiply_fusion", 80, 10),
        ("cudnn_infer_conv2d_kernel", 90, 30),
        ("nccl_all_reduce", 120, 20),
    ]
    events = meta + [
        {"ph": "X", "pid": 2, "tid": 7, "ts": ts, "dur": dur, "name": name}
        for name, ts, dur in kernels
    ]
    events += [  # the derived line and the host: not counted
        {"ph": "X", "pid": 2, "tid": 9, "ts": 0, "dur": 140, "name": "fusion.1"},
        {"ph": "X", "pid": 1, "tid": 3, "ts": 0, "dur": 500, "name": "$python"},
    ]
    folder.mkdir(parents=True)
    with gzip.open(folder / "host.trace.json.gz", "wt") as f:
        json.dump({"traceEvents": events}, f)


def test_account_by_kind_and_idle(tmp_path, capsys):
    _trace(tmp_path / "after" / "plugins" / "profile" / "run")
    columns = trace_account.main([str(tmp_path / "after"), "--steps", "2"])
    ms = columns["after"]
    expected = {"gemm": 40, "transpose": 10, "reduction": 20, "elementwise": 10}
    expected.update({"convolution": 30, "other": 20, "idle": 10, "total": 140})
    for kind, us in expected.items():
        assert ms[kind] == pytest.approx(us / 1e3 / 2), kind
    assert "| idle | 0.01 |" in capsys.readouterr().out


def test_missing_trace_says_what_it_wants(tmp_path):
    with pytest.raises(FileNotFoundError, match="jax.profiler trace"):
        trace_account.load_events(tmp_path)
