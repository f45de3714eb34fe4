"""Random quadratics f(theta) = sum((W theta - y)^2), the paper's first experiment (section 3.1).

Two variants:
  * "paper": W (d x d) and y (d) i.i.d. standard Gaussian, as the paper describes;
  * "deepmind": W, y ~ U[0, 1), as the original DeepMind code samples them.
In both, theta0 ~ N(0, init_std^2) (the original code uses init_std = 0.01).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import struct


class QuadraticProblem(NamedTuple):
    """One sampled problem: minimize sum((W theta - y)^2)."""

    W: jax.Array
    y: jax.Array


@struct.dataclass
class QuadraticTask:
    """The task family: a pytree without leaves (every field a static hyper-parameter)."""

    variant: str = struct.field(pytree_node=False, default="paper")
    dim: int = struct.field(pytree_node=False, default=10)
    init_std: float = struct.field(pytree_node=False, default=0.01)

    def sample_problem(self, key: jax.Array) -> QuadraticProblem:
        """Draws W and y for one problem."""
        key_w, key_y = jax.random.split(key)
        shape_w, shape_y = (self.dim, self.dim), (self.dim,)
        if self.variant == "paper":
            return QuadraticProblem(
                jax.random.normal(key_w, shape_w), jax.random.normal(key_y, shape_y)
            )
        return QuadraticProblem(
            jax.random.uniform(key_w, shape_w), jax.random.uniform(key_y, shape_y)
        )

    def init_params(self, key: jax.Array, problem: QuadraticProblem) -> jax.Array:
        """theta0 ~ N(0, init_std^2), independent of the problem."""
        del problem
        return self.init_std * jax.random.normal(key, (self.dim,))

    def loss(self, params: jax.Array, problem: QuadraticProblem, key: jax.Array) -> jax.Array:
        """f(theta) = sum((W theta - y)^2); `key` (minibatch sampling elsewhere) is unused here."""
        del key
        residual = problem.W @ params - problem.y
        return jnp.sum(residual**2)
