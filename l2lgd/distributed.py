"""Multi-process (multi-host) runs on JAX's own distributed runtime.

Every process runs the same program; `jax.distributed.initialize` joins them, after which
`jax.devices()` lists the devices of all processes and one sharded computation spans them.
Only process 0 writes files.
"""

from __future__ import annotations

import jax

from l2lgd.errors import ConfigError


def initialize(
    coordinator: str | None, num_processes: int | None = None, process_id: int | None = None
) -> None:
    """Joins a multi-process run coordinated at `coordinator` ("host:port"); with none, nothing.

    A missing process count or id is left to JAX, which reads them from a cluster scheduler
    (SLURM, Open MPI, Kubernetes, Cloud TPU). Must run before any other JAX computation.
    """
    if coordinator is None:
        if num_processes is not None or process_id is not None:
            raise ConfigError("--num-processes and --process-id need --coordinator HOST:PORT")
        return
    if ":" not in coordinator:
        raise ConfigError(f"--coordinator must be HOST:PORT, got {coordinator!r}")
    if None not in (num_processes, process_id) and not 0 <= process_id < num_processes:
        raise ConfigError(f"--process-id must lie in [0, {num_processes}), got {process_id}")
    jax.distributed.initialize(coordinator, num_processes, process_id)


def is_primary() -> bool:
    """Whether this process writes results: process 0 (the only one, when there is one)."""
    return jax.process_index() == 0


def is_multi_process() -> bool:
    """Whether this run spans several processes."""
    return jax.process_count() > 1
