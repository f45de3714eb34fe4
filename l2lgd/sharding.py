"""Data parallelism over problems: a batch of problems is split across devices with `jax.sharding`.

The problem axis of parameters, problems and LSTM states is split over a 1-D `Mesh`; the LSTM
weights and the meta-optimizer state stay replicated, and XLA adds the all-reduce of the
meta-gradient. The mesh spans every process's devices in a multi-process run (see
`l2lgd.distributed`), so the same program runs on one CPU, one GPU or a cluster. On a CPU,
XLA_FLAGS=--xla_force_host_platform_device_count=N (or JAX_NUM_CPU_DEVICES) splits the cores into
devices.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from l2lgd.errors import ConfigError

PROBLEM_AXIS = "problems"


def problem_mesh(num_devices: int = 0) -> Mesh:
    """A 1-D mesh over the first `num_devices` devices of all processes (0: every device)."""
    devices = jax.devices()
    if num_devices > len(devices):
        raise ConfigError(
            f"meta.devices is {num_devices} but only {len(devices)} devices are visible "
            f"({devices[0].platform}); use 0 for all of them"
        )
    return Mesh(np.array(devices[: num_devices or None]), (PROBLEM_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
    """Every device holds the whole array (the LSTM weights, the meta-loss)."""
    return NamedSharding(mesh, PartitionSpec())


def check_divisible(num_problems: int, mesh: Mesh, field: str) -> None:
    """Raises ConfigError unless `num_problems` splits evenly over the mesh's devices."""
    if num_problems % mesh.size:
        raise ConfigError(
            f"{field} ({num_problems}) must be a multiple of the {mesh.size} devices it is split "
            "over; change it, or set meta.devices"
        )


def shard_problems(tree: Any, mesh: Mesh | None = None) -> Any:
    """Constrains the leading (problem) axis of every leaf to be split over `mesh` (default: all
    devices). Leaves whose leading axis does not divide evenly stay as they are (replicated)."""
    mesh = mesh or problem_mesh()
    if mesh.size == 1:
        return tree
    sharded = NamedSharding(mesh, PartitionSpec(PROBLEM_AXIS))

    def constrain(leaf: jax.Array) -> jax.Array:
        if leaf.ndim == 0 or leaf.shape[0] % mesh.size:
            return leaf
        return jax.lax.with_sharding_constraint(leaf, sharded)

    return jax.tree.map(constrain, tree)
