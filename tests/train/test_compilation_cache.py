"""`config.compilation_cache_dir`: JAX's persistent compilation cache for main.py runs.

A second run of the same config loads its train step from the cache and says so; the
"default" directory is resolved per host at run time; a directory that cannot be written
is one warning and a run without the cache. The suite itself runs with the cache off
(tests/conftest.py), so no test writes the user's ~/.cache.
"""

import os
import re
import warnings

import jax
import pytest

from smlp_jax.train import compilation_cache
from smlp_jax.train.compilation_cache import CompilationCacheWarning
from tests.train.tiny import run_main, tiny_config


def test_a_second_run_loads_the_train_step_from_the_cache(demo_data_dir, tmp_path):
    cache = tmp_path / "jax_cache"
    run = {"compilation_cache_dir": str(cache), "total_steps": 2, "checkpoint_every": 0}
    lines = {}
    for name in ("first", "second"):  # a fresh workdir each: nothing is resumed
        out = run_main(tmp_path / name, demo_data_dir, **run)
        assert out.returncode == 0, out.stderr[-3000:]
        (lines[name],) = [x for x in out.stdout.splitlines() if x.startswith("train step ")]
    # Ready apart from the first run, with what the time went to.
    number = r"\d+\.\d"
    first = rf"train step compiled in {number}s \(tracing {number}s, lowering {number}s, "
    assert re.fullmatch(first + rf"XLA {number}s\), then run once in {number}s", lines["first"])
    second = first.replace("compiled", "loaded from the compilation cache")
    ending = rf"reading the cache {number}s\), then run once in {number}s"
    assert re.fullmatch(second + ending, lines["second"]), lines
    names = {p.name.split("-")[0] for p in cache.iterdir()}
    # The train step (it compiles in over MIN_COMPILE_TIME_SECS), the eval step when it does
    # too (host-dependent: under these fast-compile flags it may not); never the one-op
    # programs, nor a state init (on one CPU device the state is made op by op).
    assert {"jit_train_step"} <= names <= {"jit_eval_step", "jit_train_step"}, names


def test_the_suite_runs_without_a_cache():
    assert os.environ["JAX_COMPILATION_CACHE_DIR"] == ""  # tests/conftest.py
    assert compilation_cache.resolve(tiny_config("unused").compilation_cache_dir) is None


def test_default_is_per_user_and_resolved_at_run_time(monkeypatch, tmp_path):
    assert tiny_config("unused").compilation_cache_dir == "default"  # no host's path
    monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert compilation_cache.resolve("default") == str(tmp_path / "xdg/smlp_jax/jax_cache")
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert compilation_cache.resolve("default") == str(tmp_path / "home/.cache/smlp_jax/jax_cache")
    monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", str(tmp_path / "jax"))  # JAX's own wins
    assert compilation_cache.resolve("default") == str(tmp_path / "jax")
    assert compilation_cache.resolve("") is None and compilation_cache.resolve(None) is None
    assert compilation_cache.resolve(str(tmp_path / "mine")) == str(tmp_path / "mine")


def test_an_unwritable_directory_is_one_warning_and_no_cache(tmp_path):
    (tmp_path / "a_file").write_text("")
    bad = tmp_path / "a_file" / "cache"  # under a file: fails even for root
    try:
        assert compilation_cache.enable(str(tmp_path / "good")) == str(tmp_path / "good")
        assert jax.config.jax_compilation_cache_dir == str(tmp_path / "good")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert compilation_cache.enable(str(bad)) is None
        assert [w.category for w in caught] == [CompilationCacheWarning]
        message = str(caught[0].message)
        assert message.startswith(f"config.compilation_cache_dir: cannot write {bad} ")
        assert message.endswith("running without the compilation cache.")
        assert jax.config.jax_compilation_cache_dir is None
    finally:
        compilation_cache.enable("")
    assert jax.config.jax_compilation_cache_dir is None


def test_cache_hits_counts_the_compiles_inside_the_with(tmp_path):
    def program(x):
        return jax.numpy.sin(x) * 3.0 + 1.0

    min_time = jax.config.jax_persistent_cache_min_compile_time_secs
    try:
        compilation_cache.enable(str(tmp_path / "cache"))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
        with compilation_cache.CacheHits() as first:
            jax.jit(program)(1.0).block_until_ready()
        jax.clear_caches()  # the in-memory cache: the next call looks on disk
        with compilation_cache.CacheHits() as second:
            jax.jit(program)(1.0).block_until_ready()
    finally:
        jax.config.update("jax_persistent_cache_min_compile_time_secs", min_time)
        compilation_cache.enable("")
    assert (first.requests, first.hits, first.loaded) == (1, 0, False)
    assert (second.requests, second.hits, second.loaded) == (1, 1, True)
    # Each call's phases are timed: traced, lowered, then compiled or read from the cache.
    for hits in (first, second):
        assert set(hits.phases()) == {"tracing", "lowering", "XLA"}
        assert all(seconds > 0 for seconds in hits.phases().values()), hits.phases()
        assert hits.ready_at is not None
    assert first.read_seconds == 0 < second.read_seconds <= second.phases()["XLA"]
    assert "compiled in " in first.describe(0.0) and "XLA" in first.describe(0.0)
    assert "loaded from the compilation cache in " in second.describe(0.0)
    assert "reading the cache" in second.describe(0.0)


def test_phase_spans_are_counted_once_when_they_nest():
    # An inner jit traced inside an outer one reports a span inside the outer's.
    union = compilation_cache._union_seconds
    assert union([]) == 0.0
    assert union([(0.0, 4.0), (1.0, 2.0)]) == 4.0  # nested
    assert union([(0.0, 2.0), (1.0, 3.0), (5.0, 6.0)]) == 4.0  # overlapping, then apart


@pytest.mark.parametrize("value", ["", None])
def test_off(value):
    assert compilation_cache.enable(value) is None
    # Off is unset: None, or "" as $JAX_COMPILATION_CACHE_DIR="" leaves it (tests/conftest.py).
    assert not jax.config.jax_compilation_cache_dir
