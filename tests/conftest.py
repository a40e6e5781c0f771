"""Test-wide set-up: CPU only, parsed absl flags (grain workers need them), offline."""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
# Never let a test reach the network through tfds.
os.environ.setdefault("TFDS_DISABLE_DOWNLOAD", "1")
os.environ.setdefault("NO_GCE_CHECK", "true")
# No persistent compilation cache unless a test asks for one (`subprocess_env(cache_dir=)`,
# `--config.compilation_cache_dir=`): config.compilation_cache_dir "default" reads this
# variable first, so no run of the suite (in process, main.py children, notebook kernels)
# writes the user's ~/.cache/smlp_jax/jax_cache.
os.environ["JAX_COMPILATION_CACHE_DIR"] = ""
# Cheap XLA compiles for the test processes too (as for the main.py children): the suite's
# programs run a few steps on tiny inputs, so compilation dominates (the six zoo training
# tests: 173 -> 137 s with the first two flags; the whole suite, 2 workers: 14-17 -> 11 min
# with the fusion emitters off as well).
# Read when jax initialises its backend, after this file: no test module imports jax first.
from tests.train.tiny import FAST_COMPILE  # noqa: E402

if FAST_COMPILE not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {FAST_COMPILE}".strip()

from absl import flags  # noqa: E402

flags.FLAGS.mark_as_parsed()

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def demo_data_dir(tmp_path_factory) -> str:
    """A tfds data dir holding the built demo digits; built once per test run (xdist workers
    share it: the build takes a file lock) so any test can use config.dataset = "demo"."""
    from smlp_jax.data import demo_dataset

    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent
    data_dir = root / "demo_tfds"
    demo_dataset.ensure_built(str(data_dir))
    return str(data_dir)


# The tiny demo run the tools' tests share: 4 steps, checkpoints at 2 and 4, evaluated at the
# end (tests/train/tiny.py). Tests that change it copy the workdir first.
TRAINED_RUN_CHANGES = dict(total_steps=4, checkpoint_every=2, log_every=2)


@pytest.fixture(scope="session")
def trained_demo_run(demo_data_dir, tmp_path_factory):
    """(workdir of a tiny sMLPNet trained by the trainer, its config overrides as a dict)."""
    from smlp_jax.train import trainer
    from tests.train.tiny import tiny_config, tiny_overrides

    workdir = tmp_path_factory.mktemp("trained_demo_run")
    trainer.train_and_evaluate(tiny_config(demo_data_dir, **TRAINED_RUN_CHANGES), str(workdir))
    return workdir, tiny_overrides(demo_data_dir, **TRAINED_RUN_CHANGES)
