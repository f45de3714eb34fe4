"""Shared test fixtures: a shrunken config that runs the whole pipeline in seconds."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from l2lgd.config import SMOKE_OVERRIDES, Config, with_overrides
from l2lgd.data import ImageDataset

TINY_OVERRIDES = list(SMOKE_OVERRIDES)
REPO = Path(__file__).resolve().parents[1]


def load_example(name: str):
    """examples/NAME.py as a module (examples/ is not a package)."""
    spec = importlib.util.spec_from_file_location(name, REPO / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it executes
    spec.loader.exec_module(module)
    return module


def synthetic_dataset(num_train=256, num_test=64):
    """Two classes told apart by the brightness of the image: learnable in a few steps."""
    rng = np.random.default_rng(0)

    def split(n):
        labels = rng.integers(0, 2, n).astype(np.int32)
        images = rng.integers(0, 100, (n, 6, 6)) + 120 * labels[:, None, None]
        return images.astype(np.uint8), labels

    (train_images, train_labels), (test_images, test_labels) = split(num_train), split(num_test)
    return ImageDataset("synthetic", train_images, train_labels, test_images, test_labels, 2)


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
