"""Random quadratics f(theta) = sum((W theta - y)^2), the paper's first experiment (section 3.1).

Three variants:
  * "paper": W (d x d) and y (d) i.i.d. standard Gaussian, as the paper describes;
  * "deepmind": W, y ~ U[0, 1), as the original DeepMind code samples them;
  * "conditioned" (beyond the paper): W = Q1 diag(s) Q2^T with random rotations Q1, Q2 and
    singular values s log-spaced from 1 down to 1/sqrt(condition_number), so the Hessian 2 W^T W
    has exactly that condition number; y standard Gaussian. It probes ill-conditioning.
In all, theta0 ~ N(0, init_std^2) (the original code uses init_std = 0.01). `loss_scale`
multiplies the loss, and so every gradient: a probe of an optimizer's dependence on gradient scale.
With `loss_scale_spread` s > 1, each problem's loss is also multiplied by its own factor, drawn
log-uniformly from [1/s, s] (folded into W and y as its square root), so that meta-training sees
a range of scales.
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
    condition_number: float = struct.field(pytree_node=False, default=1.0)
    loss_scale: float = struct.field(pytree_node=False, default=1.0)
    loss_scale_spread: float = struct.field(pytree_node=False, default=1.0)

    def sample_problem(self, key: jax.Array) -> QuadraticProblem:
        """Draws W and y for one problem, times the square root of its own loss-scale factor
        when `loss_scale_spread` > 1 (the key's split for W and y is the same either way)."""
        problem = self.sample_unscaled_problem(key)
        if self.loss_scale_spread == 1.0:
            return problem
        log_spread = jnp.log(self.loss_scale_spread)
        log_factor = jax.random.uniform(jax.random.fold_in(key, 2), (), minval=-1.0) * log_spread
        root = jnp.exp(0.5 * log_factor)
        return QuadraticProblem(root * problem.W, root * problem.y)

    def sample_unscaled_problem(self, key: jax.Array) -> QuadraticProblem:
        """Draws W and y for one problem, as its variant says."""
        key_w, key_y = jax.random.split(key)
        shape_w, shape_y = (self.dim, self.dim), (self.dim,)
        if self.variant == "conditioned":
            return QuadraticProblem(
                conditioned_matrix(key_w, self.dim, self.condition_number),
                jax.random.normal(key_y, shape_y),
            )
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
        """f(theta) = loss_scale * sum((W theta - y)^2); `key` (minibatch sampling elsewhere) is
        unused here."""
        del key
        residual = problem.W @ params - problem.y
        return self.loss_scale * jnp.sum(residual**2)


def conditioned_matrix(key: jax.Array, dim: int, condition_number: float) -> jax.Array:
    """A random dim x dim matrix W whose W^T W has condition number `condition_number`: random
    rotations around singular values log-spaced from 1 to 1/sqrt(condition_number)."""
    key_left, key_right = jax.random.split(key)
    left = random_rotation(key_left, dim)
    right = random_rotation(key_right, dim)
    singular_values = jnp.logspace(0.0, -0.5 * jnp.log10(condition_number), dim)
    return (left * singular_values) @ right.T


def random_rotation(key: jax.Array, dim: int) -> jax.Array:
    """A Haar-distributed orthogonal matrix: a Gaussian matrix's columns orthonormalized in turn
    (Gram-Schmidt, each projection done twice for float32 accuracy), which is the Q of its QR
    with a positive diagonal in R. Plain matmuls: `jnp.linalg.qr`'s LAPACK call, batched over
    many problems in a loop, hung the CLI now and then on CPU."""
    gaussian = jax.random.normal(key, (dim, dim))
    earlier = jnp.arange(dim)

    def orthonormalize(column: int, q: jax.Array) -> jax.Array:
        vector = gaussian[:, column]
        for _ in range(2):
            vector = vector - q @ jnp.where(earlier < column, q.T @ vector, 0.0)
        return q.at[:, column].set(vector / jnp.linalg.norm(vector))

    return jax.lax.fori_loop(0, dim, orthonormalize, jnp.zeros((dim, dim)))
