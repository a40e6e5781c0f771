"""The same steps on 1 device, 8 fake devices (data x FSDP) and 2 processes (data-parallel).

Every source of randomness is on (augmentation on the device: flip, RandAugment, random
erasing, after the crop's resize there; Mixup/CutMix, label smoothing, drop path), with
gradient accumulation and EMA, so the comparison covers the whole step, and shows that
the per-example augmentation draws do not depend on the number of devices or processes.
The child runs start first and run while this process computes the references.
"""

import json
import socket
import subprocess
from pathlib import Path

import numpy as np
import pytest

from smlp_jax import data
from smlp_jax.train import trainer
from tests.train.tiny import REPO, main_command, read_metrics, subprocess_env, tiny_config

FEATURES = {
    "total_steps": 6,
    "checkpoint_every": 0,
    "grad_accum_steps": 2,
    "ema.decay": 0.9,
    "model_kwargs.drop_path_rate": 0.1,
    "mixup.mixup_alpha": 0.8,
    "mixup.cutmix_alpha": 1.0,
    "mixup.label_smoothing": 0.1,
    "fsdp_min_size": 256,  # so that the tiny model's larger arrays are really split
    "input.on_device": "resize_and_augment",
    "input.hflip": 0.5,
    "input.randaugment": "rand-m9-mstd0.5-inc1",
    "input.re_prob": 0.25,
    # (the crop's resize in the step too: padded images, boxes and sizes split with the batch)
    "input.resize_max": 24,
}
# One 8-device mesh with both axes: the batch split over `data` (and `fsdp`), the larger
# arrays over `fsdp`. Plain data parallelism is what the 2-process run does (4 devices).
PARALLEL_RUNS = {
    "data2_fsdp4": dict(devices=8, changes={"mesh.fsdp": 4, "sharding": "fsdp"}),
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(workdir: Path, data_dir: str, devices: int, *extra: str, log_name="", **changes):
    log_path = workdir.parent / f"{workdir.name}{log_name}.log"
    log = open(log_path, "w")  # noqa: SIM115 - closed in _finish
    proc = subprocess.Popen(
        main_command(workdir, data_dir, *extra, **{**FEATURES, **changes}),
        env=subprocess_env(devices),
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=REPO,
    )
    return proc, log, workdir, log_path


def _finish(run) -> Path:
    proc, log, workdir, log_path = run
    try:
        proc.wait(timeout=300)
    finally:
        proc.kill()
        log.close()
    assert proc.returncode == 0, log_path.read_text()[-3000:]
    return workdir


def _losses(workdir) -> list[float]:
    return [m["train/loss"] for m in read_metrics(workdir) if "train/loss" in m]


def _eval(workdir) -> dict:
    return [m for m in read_metrics(workdir) if "eval/top1" in m][-1]


class _ShardsTogether:
    """One process reading what `count` processes read: their local batches, concatenated
    in process order, are the global batches of a `count`-process run."""

    def __init__(self, make, config, count, **kwargs):
        self._parts = [
            make(config, process_index=i, process_count=count, **kwargs) for i in range(count)
        ]

    def __iter__(self):
        for batches in zip(*self._parts):
            yield {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}

    def __next__(self):
        batches = [next(part) for part in self._parts]
        return {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}

    def get_state(self):
        return {}

    def close(self):
        for part in self._parts:
            if hasattr(part, "close"):  # train iterators (eval iterables close themselves)
                part.close()


def test_one_device_eight_devices_and_two_processes_agree(demo_data_dir, tmp_path, monkeypatch):
    children = {
        name: _start(tmp_path / name, demo_data_dir, run["devices"], **run["changes"])
        for name, run in PARALLEL_RUNS.items()
    }
    address = f"--coordinator_address=127.0.0.1:{_free_port()}"
    processes = [
        _start(
            tmp_path / "two_processes",  # one shared workdir, as on a cluster's shared disk
            demo_data_dir,
            2,
            address,
            "--num_processes=2",
            f"--process_id={i}",
            log_name=f"_p{i}",
        )
        for i in range(2)
    ]

    # References in this process (1 device).
    one = tmp_path / "one_device"
    trainer.train_and_evaluate(tiny_config(demo_data_dir, **FEATURES), str(one))
    # The batches a 2-process run sees, read by one process.
    make_train, make_eval = data.create_train_iterator, data.create_eval_iterator
    monkeypatch.setattr(data, "create_train_iterator", lambda c: _ShardsTogether(make_train, c, 2))
    monkeypatch.setattr(
        data, "create_eval_iterator", lambda c, **kw: _ShardsTogether(make_eval, c, 2, **kw)
    )
    one_as_two = tmp_path / "one_device_as_two"
    trainer.train_and_evaluate(tiny_config(demo_data_dir, **FEATURES), str(one_as_two))

    expected = _losses(one)
    assert len(expected) == 6
    for name, run in children.items():
        workdir = _finish(run)
        np.testing.assert_allclose(_losses(workdir), expected, atol=1e-5, err_msg=name)
        for key in ("eval/loss", "eval/ema_loss", "eval/top1", "eval/ema_top1"):
            assert _eval(workdir)[key] == pytest.approx(_eval(one)[key], abs=1e-5), (name, key)

    two = _finish(processes[0])
    _finish(processes[1])
    np.testing.assert_allclose(_losses(two), _losses(one_as_two), atol=1e-5)
    for key in ("eval/loss", "eval/ema_loss", "eval/top1"):
        assert _eval(two)[key] == pytest.approx(_eval(one_as_two)[key], abs=1e-5), key
    # The final checkpoint says how many processes wrote it, each its own iterator file.
    final = two / "checkpoints" / str(FEATURES["total_steps"])
    assert json.loads((final / "meta" / "meta.json").read_text())["process_count"] == 2
    for i in range(2):
        assert json.loads((final / "data" / f"process_{i}.json").read_text())["kind"] == "dict"
