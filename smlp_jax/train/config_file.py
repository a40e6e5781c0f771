"""A config file and its `--config.KEY=VALUE` overrides, read as `main.py` reads them.

`load("configs/smlpnet.py:demo", ["--config.batch_size=8"])` is ml_collections' config flag
(`config_flags.DEFINE_config_file`, locked), the one `main.py` defines, on a private set of
absl flags: `FILE.py[:ARG]` -> the file's `get_config(ARG)`, then each override parsed by
the type of the field it sets (an int field takes `8`, a float `5e-3` or `1`, a bool `true`
/ `false` / `True`, a tuple `(1, 2)`, a str the text as written, a placeholder its declared
type), and a key the config does not have is refused (the config is locked). So an override
means the same to the trainer and to the tools. `override(config, overrides)` applies them,
by the same rules, to a config already built (a run record's); a field the record holds as
None (its type is not recorded) takes a Python literal, else the text.

A failure is a `ConfigError` of one line (`explain`, which `main.py` prints for its own flag
errors too): a missing file names the configs there are, a misspelt key the closest key and
the keys known at its level.
"""

from __future__ import annotations

import difflib
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import ml_collections
from absl import flags
from ml_collections import config_dict, config_flags

from smlp_jax.train.errors import ConfigError

FLAG = "config"
PREFIX = f"--{FLAG}."
# The repository's config files (for the line naming them when --config names none).
CONFIGS = Path(__file__).resolve().parents[2] / "configs"
# What absl and ml_collections raise for a bad file, key or value (a config file that is
# not valid Python: SyntaxError, with its IndentationError and TabError).
PARSE_ERRORS = (
    flags.Error, AttributeError, KeyError, TypeError, ValueError, OSError, SyntaxError
)  # fmt: skip


def load(spec: str, overrides: Sequence[str] = ()) -> ml_collections.ConfigDict:
    """`FILE.py[:ARG]`'s `get_config(ARG)`, locked, with `--config.KEY=VALUE` `overrides`
    applied as `main.py --config=FILE.py[:ARG] --config.KEY=VALUE` applies them."""
    path = spec.split(":", 1)[0]
    # The config files import `configs.common`: the repository root (the folder above the
    # file's) goes on the path, as it is for main.py run from there.
    root = str(Path(path).resolve().parent.parent)
    if os.path.isfile(path) and root not in sys.path:
        sys.path.insert(0, root)
    try:
        return _parse_file(spec, overrides)
    except PARSE_ERRORS as err:
        raise ConfigError(explain(err, spec, overrides)) from None


def override(
    config: ml_collections.ConfigDict, overrides: Sequence[str]
) -> ml_collections.ConfigDict:
    """`overrides` (`--config.KEY=VALUE`) applied to `config` by `load`'s rules (and `config`
    locked, as main.py's is, when there are any). Returns it."""
    if not overrides:
        return config
    for arg in overrides:
        _untyped_none_takes_a_literal(config, _key(arg))
    argv = ["smlp_jax", *overrides]
    values = flags.FlagValues()
    try:
        config_flags.DEFINE_config_dict(
            FLAG, config, "config", flag_values=values, lock_config=True, sys_argv=argv
        )
        values(argv)
    except PARSE_ERRORS as err:
        raise ConfigError(explain(err, None, overrides, config)) from None
    return values[FLAG].value


def explain(
    err: BaseException,
    spec: str | None,
    overrides: Sequence[str],
    config: ml_collections.ConfigDict | None = None,
) -> str:
    """One line for a config that did not load or an override that did not apply: the
    missing file, the Python syntax error (file, line, the text), the unknown key, or the
    useful line of the library's message."""
    if isinstance(err, SyntaxError):
        return syntax_error(err)
    if spec is not None:
        missing = missing_file(spec)
        if missing:
            return missing
        config = _plain(spec) if config is None else config
    return (config is not None and unknown_key(config, overrides)) or one_line(err)


def missing_file(spec: str) -> str | None:
    """A line naming the config file of `spec` when it does not exist, with the ones that
    do; None when it exists."""
    path = spec.split(":", 1)[0]
    if os.path.isfile(path):
        return None
    line = f"config file {path} not found"
    names = sorted(p.name for p in CONFIGS.glob("*.py") if p.name[0] != "_")
    names = [f"configs/{n}" for n in names if n != "common.py"]
    return f"{line}; the configs are {', '.join(names)}" if names else line


def syntax_error(err: SyntaxError) -> str:
    """`config file FILE line N: MESSAGE: TEXT` for a config file (or a module it imports)
    that is not valid Python."""
    where = f"config file {err.filename or '?'} line {err.lineno or '?'}"
    text = (err.text or "").strip()
    return f"{where}: {err.msg}" + (f": {text}" if text else "")


def unknown_key(config: Any, overrides: Sequence[str]) -> str | None:
    """A line for the first override that names no key of `config`: the closest key and
    the keys known at that level; None when every key exists."""
    for arg in overrides:
        if not arg.startswith(PREFIX):
            continue
        path = _key(arg)
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


def one_line(err: BaseException) -> str:
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


def _key(arg: str) -> str:
    """`--config.a.b=1` -> `a.b`."""
    return arg.removeprefix(PREFIX).split("=", 1)[0]


def _parse_file(spec: str, overrides: Sequence[str]) -> ml_collections.ConfigDict:
    """main.py's --config flag on a private set of absl flags; raises what they raise."""
    argv = ["smlp_jax", f"--{FLAG}={spec}", *overrides]
    values = flags.FlagValues()
    config_flags.DEFINE_config_file(
        FLAG, None, "config file", flag_values=values, lock_config=True, sys_argv=argv
    )
    values(argv)
    config = values[FLAG].value
    config.get("model")  # a file that failed to load raises only when read
    return config


def _plain(spec: str) -> ml_collections.ConfigDict | None:
    """`spec`'s config before overrides, or None if it does not load (only to explain an
    error: the library's own message stands then)."""
    try:
        return _parse_file(spec, ())
    except Exception:  # noqa: BLE001 - any failure leaves the library's message as it is
        return None


def _untyped_none_takes_a_literal(config: Any, path: str) -> None:
    """A field at `path` that holds None with no declared type (a run record's: JSON keeps
    no placeholder types) becomes a placeholder of any type, parsed as a Python literal."""
    *parents, leaf = path.split(".")
    node = config
    for part in parents:
        if not isinstance(node, ml_collections.ConfigDict) or part not in node:
            return
        node = node[part]
    if not isinstance(node, ml_collections.ConfigDict) or leaf not in node:
        return
    if node[leaf] is None and node.get_type(leaf) is type(None):
        node[leaf] = config_dict.placeholder(object)
