"""smlp_jax.tools.hugepages: when the entry points re-execute with jemalloc preloaded or
under glibc's huge-page tunable, and that the re-executed process really has it."""

import os
import subprocess
import sys
import textwrap

import pytest

from smlp_jax.tools import hugepages
from tests.train.tiny import REPO

LINUX = dict(system="Linux", libc=("glibc", "2.36"), thp="madvise")


def test_reexecutes_only_where_the_tunable_exists_and_is_not_set():
    assert hugepages.why_not({}, **LINUX) is None
    assert hugepages.why_not({}, **{**LINUX, "thp": "always"}) is None
    assert "SMLP_JAX_HUGEPAGES=0" in hugepages.why_not({"SMLP_JAX_HUGEPAGES": "0"}, **LINUX)
    # The user's own setting stands, whatever its value.
    set_off = {"GLIBC_TUNABLES": "glibc.malloc.hugetlb=0"}
    assert "already sets" in hugepages.why_not(set_off, **LINUX)
    assert "not Linux" in hugepages.why_not({}, **{**LINUX, "system": "Darwin"})
    preloaded = {"LD_PRELOAD": "libjemalloc.so.2"}  # glibc's malloc is not the one in use
    assert "already names an allocator" in hugepages.why_not(preloaded, **LINUX)
    assert "not Linux" in hugepages.why_not({}, **{**LINUX, "libc": ("", "")})
    assert "2.35+" in hugepages.why_not({}, **{**LINUX, "libc": ("glibc", "2.31")})
    assert "never" in hugepages.why_not({}, **{**LINUX, "thp": "never"})
    assert "unavailable" in hugepages.why_not({}, **{**LINUX, "thp": None})


def test_never_on_an_accelerator_host():
    assert hugepages.accelerator({"JAX_PLATFORMS": "cuda,cpu"}) == "cuda"
    assert hugepages.accelerator({"JAX_PLATFORMS": "tpu"}) == "tpu"
    assert hugepages.accelerator({"JAX_PLATFORMS": "cpu"}) is None
    assert "JAX runs on gpu" in hugepages.why_not({}, **LINUX, device="gpu")


def test_an_accelerator_run_is_not_reexecuted():
    env = _clean_env(JAX_PLATFORMS="tpu", **{hugepages.JEMALLOC_OPT_IN: "1"})
    out = _run(env)  # JAX_PLATFORMS only read here: jax is never imported
    assert len([line for line in out if line.startswith("run ")]) == 1, out
    (result,) = [line for line in out if line.startswith("tunables ")]
    assert "jemalloc: JAX runs on tpu" in result and "hugetlb: JAX runs on tpu" in result, out


def test_tunable_is_appended_to_the_users_tunables():
    assert hugepages.tunables_with_hugepages("") == "glibc.malloc.hugetlb=1"
    assert (
        hugepages.tunables_with_hugepages("glibc.malloc.arena_max=2")
        == "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1"
    )


def test_thp_mode_reads_the_bracketed_mode(tmp_path):
    path = tmp_path / "enabled"
    path.write_text("always [madvise] never\n")
    assert hugepages.thp_mode(str(path)) == "madvise"
    assert hugepages.thp_mode(str(tmp_path / "absent")) is None


SCRIPT = textwrap.dedent(
    """
    import importlib.util, os, sys
    spec = importlib.util.spec_from_file_location("hp", {path!r})
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    print("run", os.getpid(), flush=True)
    module.reexec_with_hugepages()
    print("tunables", os.environ.get("GLIBC_TUNABLES", ""), sys.argv[1:], module.status())
    print("mapped", "libjemalloc" in open("/proc/self/maps").read())
    """
)


def _run(env):
    script = SCRIPT.format(path=str(REPO / "smlp_jax" / "tools" / "hugepages.py"))
    out = subprocess.run(
        [sys.executable, "-c", script, "--some", "args"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.splitlines()
    return out


def _clean_env(**extra: str) -> dict[str, str]:
    """This environment without anything that decides the re-exec, plus `extra`."""
    decisive = ("GLIBC_TUNABLES", "LD_PRELOAD", "MALLOC_CONF")
    decisive += (hugepages.OPT_OUT, hugepages.JEMALLOC_OPT_IN)
    return {**{k: v for k, v in os.environ.items() if k not in decisive}, **extra}


def _reexecuted_once(env) -> tuple[str, list[str]]:
    """The re-executed run's `tunables ...` line and all output, checking that the command
    ran twice in one process (exec keeps the PID)."""
    out = _run(env)
    runs = [line for line in out if line.startswith("run ")]
    assert len(runs) == 2 and len(set(runs)) == 1, out
    (result,) = [line for line in out if line.startswith("tunables ")]
    return result, out


def test_reexec_runs_the_same_command_once_more_with_the_tunable():
    env = _clean_env()  # jemalloc not asked for: the huge-page path
    reason = hugepages.why_not(env, thp=hugepages.thp_mode(), device=hugepages.accelerator(env))
    if reason is not None:
        pytest.skip(f"no re-exec here: {reason}")
    result, _ = _reexecuted_once(env)
    assert result.startswith("tunables glibc.malloc.hugetlb=1 ['--some', 'args']"), result
    assert "glibc.malloc.hugetlb=1 (transparent huge pages:" in result


def test_opt_out_runs_once_without_the_tunable():
    env = _clean_env(**{hugepages.OPT_OUT: "0"})
    out = _run(env)
    assert len([line for line in out if line.startswith("run ")]) == 1, out
    (result,) = [line for line in out if line.startswith("tunables ")]
    assert "hugetlb" not in result.split("[")[0] and "SMLP_JAX_HUGEPAGES=0" in result
    assert "jemalloc: SMLP_JAX_HUGEPAGES=0" in result  # neither allocator change
    # Asked for jemalloc too: the opt-out still wins.
    out = _run(_clean_env(**{hugepages.OPT_OUT: "0", hugepages.JEMALLOC_OPT_IN: "1"}))
    assert len([line for line in out if line.startswith("run ")]) == 1, out


def test_jemalloc_is_preloaded_only_when_asked_for_and_installed():
    found = "libjemalloc.so.2"
    linux = dict(system="Linux", libc=("glibc", "2.36"))
    asked = {"SMLP_JAX_JEMALLOC": "1"}
    assert hugepages.jemalloc_why_not(asked, found, **linux) is None
    assert "not asked for (SMLP_JAX_JEMALLOC=1)" in hugepages.jemalloc_why_not({}, found, **linux)
    assert "not asked for" in hugepages.jemalloc_why_not({"SMLP_JAX_JEMALLOC": "0"}, found, **linux)
    assert "not installed" in hugepages.jemalloc_why_not(asked, None, **linux)
    assert "SMLP_JAX_HUGEPAGES=0" in hugepages.jemalloc_why_not(
        {**asked, "SMLP_JAX_HUGEPAGES": "0"}, found, **linux
    )
    # The user's allocator stands; another preloaded library does not stop it.
    for preload in ("/opt/lib/libtcmalloc_minimal.so.4", "libjemalloc.so.2"):
        reason = hugepages.jemalloc_why_not({**asked, "LD_PRELOAD": preload}, found, **linux)
        assert "already names an allocator" in reason
    other = {**asked, "LD_PRELOAD": "libfoo.so"}
    assert hugepages.jemalloc_why_not(other, found, **linux) is None
    assert "JAX runs on gpu" in hugepages.jemalloc_why_not(asked, found, **linux, device="gpu")
    assert "not Linux" in hugepages.jemalloc_why_not(asked, found, system="Darwin", libc=("", ""))

    env = hugepages.with_jemalloc({"LD_PRELOAD": "libfoo.so", "PATH": "/bin"}, found)
    assert env == {
        "LD_PRELOAD": "libjemalloc.so.2 libfoo.so",
        "MALLOC_CONF": "dirty_decay_ms:-1,muzzy_decay_ms:-1",
        "PATH": "/bin",
    }
    mine = hugepages.with_jemalloc({"MALLOC_CONF": "narenas:2"}, found)
    assert mine["MALLOC_CONF"] == "narenas:2"  # the user's settings stand


def test_reexec_preloads_jemalloc_when_asked_for_where_installed():
    env = _clean_env(**{hugepages.JEMALLOC_OPT_IN: "1"})
    found = hugepages.find_jemalloc(env)
    assert hugepages.find_jemalloc({}) is None  # not asked for: not even looked for
    reason = hugepages.jemalloc_why_not(env, found, device=hugepages.accelerator(env))
    if reason is not None:
        pytest.skip(f"no jemalloc re-exec here: {reason}")
    result, out = _reexecuted_once(env)
    assert f"jemalloc (LD_PRELOAD={found}, MALLOC_CONF=dirty_decay_ms:-1" in result, result
    (maps,) = [line for line in out if line.startswith("mapped ")]
    assert maps == "mapped True", out  # the re-executed process really runs jemalloc
