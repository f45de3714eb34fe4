"""Shared test fixtures: a shrunken config that runs the whole pipeline in seconds."""

from __future__ import annotations

import pytest

from l2lgd.config import SMOKE_OVERRIDES, Config, with_overrides

TINY_OVERRIDES = list(SMOKE_OVERRIDES)


@pytest.fixture
def tiny_config() -> Config:
    """The default quadratic config shrunk to a few problems and steps."""
    return with_overrides(Config(), TINY_OVERRIDES)


@pytest.fixture(scope="session")
def compilation_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Shares compiled XLA programs between tests through JAX's persistent compilation cache.

    Every `meta_train` call builds new jitted closures, so without it each run (and each CLI
    invocation) recompiles the same meta-iteration for several seconds. The cache changes no
    numbers: a hit returns the executable that compiling the same program would produce. JAX's
    config is global, so once a test asks for the cache it stays on for the rest of the session.
    """
    import jax

    jax.config.update("jax_compilation_cache_dir", str(tmp_path_factory.mktemp("jax_cache")))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
