"""Data parallelism over problems: a batch of problems is split across all devices.

The problem axis of parameters and problems is sharded over a 1-D mesh of every device; the LSTM
weights stay replicated, and XLA adds the all-reduce of the meta-gradient. On one device this is a
no-op. On a CPU, `jax_num_cpu_devices` (environment variable JAX_NUM_CPU_DEVICES) splits the
cores into devices that run in parallel.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

PROBLEM_AXIS = "problems"


def shard_problems(tree: Any) -> Any:
    """Constrains the leading (problem) axis of every leaf to be split across the devices.

    Leaves whose leading axis does not divide evenly stay as they are (replicated).
    """
    devices = jax.devices()
    if len(devices) == 1:
        return tree
    mesh = Mesh(np.array(devices), (PROBLEM_AXIS,))
    sharded = NamedSharding(mesh, PartitionSpec(PROBLEM_AXIS))

    def constrain(leaf: jax.Array) -> jax.Array:
        if leaf.ndim == 0 or leaf.shape[0] % len(devices):
            return leaf
        return jax.lax.with_sharding_constraint(leaf, sharded)

    return jax.tree.map(constrain, tree)
