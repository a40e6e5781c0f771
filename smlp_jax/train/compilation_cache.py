"""JAX's persistent compilation cache for our runs (`config.compilation_cache_dir`).

A compiled program is written to the cache directory and read back by the next run that
compiles the same program (same model, batch, devices, XLA flags, JAX version), so a
second run of a config skips most of its compilation. `config.compilation_cache_dir`:

- "default": `$JAX_COMPILATION_CACHE_DIR` if that is set (empty: off), else
  `$XDG_CACHE_HOME/smlp_jax/jax_cache` (`~/.cache/smlp_jax/jax_cache`), resolved at run
  time, so a config names no host's path;
- a path: that directory; "" (or None): off.

A directory that cannot be created or written is one warning and a run without the cache.
`CacheHits` tells whether the compiles inside a `with` came from the cache.
"""

from __future__ import annotations

import os
import tempfile
import warnings

import jax
from jax.experimental.compilation_cache import compilation_cache

DEFAULT = "default"
ENV = "JAX_COMPILATION_CACHE_DIR"
# Programs that compile faster than this are not written. On this 2-core CPU the demo's
# state init, train and eval steps take 2.3, 5.6 and 1.5 s (0.46 s for the eval step of
# the tests' tiny config), its one-op programs 0.01-0.07 s: JAX's default, 1 s, would
# drop the eval step on a faster host. $JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS wins.
MIN_COMPILE_TIME_SECS = 0.5

# The events jax._src.compiler.compile_or_get_cached records (JAX 0.10): one request per
# compile that consults the cache, then a hit (read from disk) or a compile.
_REQUEST = "/jax/compilation_cache/compile_requests_use_cache"
_HIT = "/jax/compilation_cache/cache_hits"
_READ = "/jax/compilation_cache/cache_retrieval_time_sec"
# JAX's time spans of a jit's way to an executable (jax._src.dispatch, JAX 0.10).
_PHASES = {
    "/jax/core/compile/jaxpr_trace_duration": "tracing",
    "/jax/core/compile/jaxpr_to_mlir_module_duration": "lowering",
    "/jax/core/compile/backend_compile_duration": "XLA",
}


class CompilationCacheWarning(UserWarning):
    """The compilation cache directory is unusable: the run goes on without it."""


def default_dir() -> str:
    """`$XDG_CACHE_HOME/smlp_jax/jax_cache`, else `~/.cache/smlp_jax/jax_cache`."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "smlp_jax", "jax_cache")


def resolve(value: str | None) -> str | None:
    """The directory `config.compilation_cache_dir` names on this host, or None (off)."""
    if not value:
        return None
    if value == DEFAULT:
        if ENV in os.environ:
            return os.environ[ENV] or None
        return default_dir()
    return os.path.expanduser(str(value))


def _writable(path: str) -> None:
    """Raises OSError unless `path` exists (created if need be) and takes a new file."""
    os.makedirs(path, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path, prefix=".write-test-"):
        pass


def enable(value: str | None) -> str | None:
    """Points JAX's persistent compilation cache at `resolve(value)` (or turns it off)
    before this run's first compile. -> the directory in use, or None."""
    path = resolve(value)
    if path is not None:
        try:
            _writable(path)
        except OSError as err:
            warnings.warn(
                f"config.compilation_cache_dir: cannot write {path} "
                f"({err.strerror or err}); running without the compilation cache.",
                CompilationCacheWarning,
                stacklevel=3,
            )
            path = None
    if path != (jax.config.jax_compilation_cache_dir or None):
        jax.config.update("jax_compilation_cache_dir", path)
        # A cache an earlier run of this process opened stays open until reset.
        compilation_cache.reset_cache()
    if path is not None and "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS" not in os.environ:
        jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_TIME_SECS)
    return path


class CacheHits:
    """Counts, inside `with CacheHits() as hits:`, the compiles that consulted the cache
    (`hits.requests`) and those read from it (`hits.hits`); `hits.loaded`: every one was.

    It also times what JAX did before the program could run, from JAX's own time spans:
    `phases()` -> seconds spent tracing to a jaxpr, lowering to MLIR, and in XLA (compiling,
    or reading the cache), each the union of its spans (a jit traced inside another is
    inside the outer span, not counted twice); `ready_at`: the wall time (`time.time()`)
    the last of them ended, i.e. when the executable was ready."""

    def __init__(self) -> None:
        self.requests = 0
        self.hits = 0
        self.read_seconds = 0.0  # reading and loading executables from the cache
        self.ready_at: float | None = None
        self._spans: dict[str, list[tuple[float, float]]] = {p: [] for p in _PHASES.values()}

    def _on_event(self, event: str, **kwargs) -> None:
        if event == _REQUEST:
            self.requests += 1
        elif event == _HIT:
            self.hits += 1

    def _on_duration(self, event: str, seconds: float, **kwargs) -> None:
        if event == _READ:
            self.read_seconds += seconds

    def _on_span(self, event: str, start: float, end: float, **kwargs) -> None:
        if event in _PHASES:
            self._spans[_PHASES[event]].append((start, end))
            self.ready_at = end if self.ready_at is None else max(self.ready_at, end)

    def __enter__(self) -> CacheHits:
        jax.monitoring.register_event_listener(self._on_event)
        jax.monitoring.register_event_duration_secs_listener(self._on_duration)
        jax.monitoring.register_event_time_span_listener(self._on_span)
        return self

    def __exit__(self, *exc) -> None:
        jax.monitoring.unregister_event_listener(self._on_event)
        jax.monitoring.unregister_event_duration_listener(self._on_duration)
        jax.monitoring.unregister_event_time_span_listener(self._on_span)

    @property
    def loaded(self) -> bool:
        return self.hits > 0 and self.hits == self.requests

    def phases(self) -> dict[str, float]:
        """Seconds per phase ("tracing", "lowering", "XLA"), each the union of its spans."""
        return {name: _union_seconds(spans) for name, spans in self._spans.items()}

    def describe(self, start: float) -> str:
        """ "compiled in 41.2s (tracing 6.1s, lowering 1.3s, XLA 33.8s)", or "loaded from the
        compilation cache in ..." with XLA's part named "reading the cache"; `start`: the
        `time.time()` the call began."""
        ready = (self.ready_at or start) - start
        phases = self.phases()
        if self.loaded:
            phases["reading the cache"] = phases.pop("XLA")
        parts = ", ".join(f"{name} {seconds:.1f}s" for name, seconds in phases.items())
        how = "loaded from the compilation cache" if self.loaded else "compiled"
        return f"{how} in {ready:.1f}s ({parts})"


def _union_seconds(spans: list[tuple[float, float]]) -> float:
    """The length of the union of (start, end) intervals."""
    total, reach = 0.0, float("-inf")
    for start, end in sorted(spans):
        if end > reach:
            total += end - max(start, reach)
            reach = end
    return total
