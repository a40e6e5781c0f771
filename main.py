r"""Train or evaluate from a config file.

    python main.py --config=configs/smlpnet.py:demo --workdir=workdirs/demo
    python main.py --config=configs/smlpnet.py:t --workdir=DIR --config.batch_size=512
    python main.py --config=configs/smlpnet.py:s --workdir=DIR --mode=eval \
        --config.init_from=smlp_s.pth
    python main.py --config=configs/smlpnet.py:demo --workdir=workdirs/demo --mode=probe

Re-running the same command with the same --workdir resumes from its latest checkpoint.
Multi-host (TPU pod slice, SLURM): add --distributed (see README "Multi-host").
"""

from __future__ import annotations

import importlib.util
import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file(
    "config", None, "Config file, e.g. configs/smlpnet.py:t.", lock_config=True
)
flags.DEFINE_string("workdir", None, "Directory for checkpoints and metrics.")
flags.DEFINE_enum(
    "mode",
    "train",
    ["train", "eval", "probe"],
    "Train (and evaluate), only evaluate, or linear-probe / few-shot the frozen model.",
)
flags.DEFINE_bool("distributed", False, "Call jax.distributed.initialize() (multi-host runs).")
flags.DEFINE_string("coordinator_address", None, "host:port of process 0 (else auto-detected).")
flags.DEFINE_integer("num_processes", None, "Number of processes (else auto-detected).")
flags.DEFINE_integer("process_id", None, "This process's index (else auto-detected).")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    if not FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)  # Orbax/tfds INFO lines drown the progress
    # lazy: after the flags and the huge-page re-exec, so neither waits for jax to import
    from smlp_jax.train import cli

    return cli.run(
        FLAGS.config,
        FLAGS.workdir,
        mode=FLAGS.mode,
        distributed=FLAGS.distributed or FLAGS.coordinator_address is not None,
        coordinator_address=FLAGS.coordinator_address,
        num_processes=FLAGS.num_processes,
        process_id=FLAGS.process_id,
    )


def _config_arg(argv: list[str]) -> str | None:
    """The value of --config in `argv` (`FILE.py` or `FILE.py:ARG`), or None."""
    for i, arg in enumerate(argv):
        if arg.startswith("--config="):
            return arg[len("--config=") :]
        if arg == "--config" and i + 1 < len(argv):
            return argv[i + 1]
    return None


def parse_flags(argv: list[str]) -> list[str]:
    """absl's parsing, with a bad flag or config key (`--config.batchsize=8`, a typo under
    the locked config) reported as one line and exit status 2 instead of a traceback: the
    line the tools give for the same mistake (`smlp_jax.train.config_file.explain`)."""
    try:
        rest = FLAGS(argv)
        FLAGS.config.get("model")  # a config file that failed to load raises only when read
        return rest
    except (
        flags.Error,
        AttributeError,
        KeyError,
        TypeError,
        ValueError,
        OSError,
        SyntaxError,
    ) as err:
        # lazy: the package (and jax) only to explain a bad flag, after the re-exec
        from smlp_jax.train import config_file

        overrides = [arg for arg in argv[1:] if arg.startswith(config_file.PREFIX)]
        message = config_file.explain(err, _config_arg(argv), overrides)
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)


def _load_tool(name: str):
    """smlp_jax/tools/<name>.py loaded by its path: importing the `smlp_jax` package would
    import jax, which must start only after the huge-page re-exec and the XLA flags."""
    here = os.path.dirname(os.path.abspath(__file__))
    path = os.path.join(here, "smlp_jax", "tools", f"{name}.py")
    spec = importlib.util.spec_from_file_location(f"_smlp_jax_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


if __name__ == "__main__":
    # The host allocator for XLA:CPU's steps (glibc's huge-page tunable, or jemalloc with
    # SMLP_JAX_JEMALLOC=1: tools/hugepages.py), then the XLA flags measured faster on this
    # host's accelerator (tools/xla_flags.py), before jax starts.
    _load_tool("hugepages").reexec_with_hugepages()
    _load_tool("xla_flags").apply()
    app.run(main, flags_parser=parse_flags)
