"""Random streams: every draw traces back to one seed, and training, validation, tuning and test
problems come from different streams, so they never share a draw."""

from __future__ import annotations

import jax

TRAIN_STREAM, VALIDATION_STREAM, TEST_STREAM, INIT_STREAM, TUNING_STREAM = 0, 1, 2, 3, 4


def stream_key(seed: int, stream: int) -> jax.Array:
    """The key of one stream of `seed`."""
    return jax.random.fold_in(jax.random.key(seed), stream)
