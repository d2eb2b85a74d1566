"""Session settings that make the suite compile faster; they never change what a test checks.

Most of the suite's time is XLA compiling many small, different programs (the runs themselves are a few
thousand steps), so two settings apply to this process, the xdist workers and every subprocess a
test starts (they inherit the environment):

* ``--xla_backend_optimization_level=0``: XLA:CPU skips LLVM's optimisation passes. A vmapped DQN
  look-ahead program on MultiUAV compiles in 2.9 s instead of 6.9 s; the programs compute the same
  operations (float results may differ from an optimised build at rounding level, and no test
  compares against numbers stored from another build). The notebooks test has done this since it
  was written.
* A persistent compilation cache in a temporary folder shared by the workers and subprocesses, so
  a program compiled twice (a resumed CLI run, a rerun with the same config) is compiled once.
  The folder is removed at the end of the session. ``test_same_key_is_bit_identical_across_processes``
  turns it off for its two processes, so that each compiles its own program.

Measured on the 2-core development machine (``pytest -q -n 2``): 13:34 without either, 12:01 with
the cache alone, 7:36 with both (538 tests). ``DTRL_TEST_FAST_COMPILE=0`` runs the suite with XLA's
default settings and no cache.
"""

from __future__ import annotations

import os
import shutil
import tempfile

FAST = os.environ.get("DTRL_TEST_FAST_COMPILE", "1") != "0"
OPT_FLAG = "--xla_backend_optimization_level=0"
CACHE_VAR = "JAX_COMPILATION_CACHE_DIR"
_created_cache: str | None = None

if FAST:
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_backend_optimization_level" not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} {OPT_FLAG}".strip()
    if CACHE_VAR not in os.environ:  # the controller creates it; workers and subprocesses inherit it
        _created_cache = tempfile.mkdtemp(prefix="dtrl-jax-test-cache-")
        os.environ[CACHE_VAR] = _created_cache
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.3")

    import jax  # noqa: E402  (after the environment is set; the backend starts on first use)

    jax.config.update("jax_compilation_cache_dir", os.environ[CACHE_VAR])
    jax.config.update("jax_persistent_cache_min_compile_time_secs",
                      float(os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"]))


def pytest_unconfigure(config):
    if _created_cache is not None and not hasattr(config, "workerinput"):
        shutil.rmtree(_created_cache, ignore_errors=True)
