"""What meta-training and evaluation need from a task family, free of the data layer.

A task is a pytree: its arrays (data sets, content images, network weights) are leaves and its
hyper-parameters static, so compiled programs take it as an ordinary argument instead of
carrying its data as constants. Its methods are pure and vmap over a batch of problems.
"""

from __future__ import annotations

from typing import Any, Protocol

import jax
from jax.sharding import Mesh

from l2lgd.sharding import shard_problems


class Task(Protocol):
    """A problem family: samples problems, initializes their parameters, scores them."""

    def sample_problem(self, key: jax.Array) -> Any: ...

    def init_params(self, key: jax.Array, problem: Any) -> Any: ...

    def loss(self, params: Any, problem: Any, key: jax.Array) -> jax.Array: ...


def sample_batch(
    task: Task, key: jax.Array, num_problems: int, mesh: Mesh | None = None
) -> tuple[Any, Any]:
    """`num_problems` problems and their initial parameters, each with a leading batch axis.

    Inside `jit`, the batch is split across the devices of `mesh` (default: all; see
    `l2lgd.sharding`).
    """
    problem_keys, init_keys = jax.random.split(key)
    problems = jax.vmap(task.sample_problem)(jax.random.split(problem_keys, num_problems))
    params = jax.vmap(task.init_params)(jax.random.split(init_keys, num_problems), problems)
    return shard_problems((params, problems), mesh)
