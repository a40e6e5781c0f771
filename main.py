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

import difflib
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


def _one_line(err: BaseException) -> str:
    """The useful line of a flag-parsing error (ml_collections nests repr'd messages and
    whole tracebacks of a failing get_config inside them)."""
    text = str(err).replace("\\n", "\n").replace("\\'", "'")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if any(line.startswith("Traceback") for line in lines):
        lines = [f"{lines[0].split(':', 1)[0]}: {lines[-1]}"]  # the flag and the final error
    message = " ".join(lines).strip("'\"")
    if isinstance(err, AttributeError | KeyError) and "Did you mean" in message:
        message = f"unknown config key '{message}"  # "batchsize' Did you mean ..."
    return message


def _config_arg(argv: list[str]) -> str | None:
    """The value of --config in `argv` (`FILE.py` or `FILE.py:ARG`), or None."""
    for i, arg in enumerate(argv):
        if arg.startswith("--config="):
            return arg[len("--config=") :]
        if arg == "--config" and i + 1 < len(argv):
            return argv[i + 1]
    return None


def _missing_config_file(argv: list[str]) -> str | None:
    """A line naming the --config file when it does not exist, with the ones that do."""
    value = _config_arg(argv)
    path = None if value is None else value.split(":", 1)[0]
    if path is None or os.path.isfile(path):
        return None
    folder = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs")
    names = sorted(n for n in os.listdir(folder) if n.endswith(".py") and n[0] != "_")
    names = [f"configs/{n}" for n in names if n != "common.py"]
    return f"config file {path} not found; the configs are {', '.join(names)}"


def _load_config(argv: list[str]):
    """The --config file's config (before overrides), or None if it does not load."""
    value = _config_arg(argv)
    if value is None:
        return None
    path, _, arg = value.partition(":")
    try:
        spec = importlib.util.spec_from_file_location("_main_config", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module.get_config(arg) if arg else module.get_config()
    except Exception:  # noqa: BLE001 - only to explain an error; absl's message stands
        return None


def _unknown_config_key(argv: list[str]) -> str | None:
    """A line for the first `--config.KEY=...` that names no key of the loaded config:
    the closest key and the keys known at that level."""
    config = _load_config(argv)
    if config is None:
        return None
    for arg in argv[1:]:
        if not arg.startswith("--config."):
            continue
        path = arg[len("--config.") :].split("=", 1)[0]
        parts, node = path.split("."), config
        for i, part in enumerate(parts):
            if not hasattr(node, "keys"):  # a key below a plain value
                break
            if part in node:
                node = node[part]
                continue
            known = sorted(node.keys())
            close = difflib.get_close_matches(part, known, n=1)
            fixed = ".".join([*parts[:i], *close[:1], *parts[i + 1 :]])
            hint = f" (did you mean '{fixed}'?)" if close else ""
            where = f"under {'.'.join(parts[:i])}" if i else "at the top level"
            return f"unknown config key '{path}'{hint}; known keys {where}: {', '.join(known)}"
    return None


def parse_flags(argv: list[str]) -> list[str]:
    """absl's parsing, with a bad flag or config key (`--config.batchsize=8`, a typo under
    the locked config) reported as one line and exit status 2 instead of a traceback."""
    try:
        rest = FLAGS(argv)
        FLAGS.config.get("model")  # a config file that failed to load raises only when read
        return rest
    except (flags.Error, AttributeError, KeyError, TypeError, ValueError, OSError) as err:
        message = _missing_config_file(argv) or _unknown_config_key(argv) or _one_line(err)
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
    # glibc's huge-page tunable where it helps (tools/hugepages.py), then the XLA flags
    # measured faster on this host's accelerator (tools/xla_flags.py), before jax starts.
    _load_tool("hugepages").reexec_with_hugepages()
    _load_tool("xla_flags").apply()
    app.run(main, flags_parser=parse_flags)
