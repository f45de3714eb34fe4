"""Running any optax optimizer on a batch of problems for T steps, as one `lax.scan`.

Meta-training (a truncated unroll of the learned optimizer) and evaluation (a whole run of any
optimizer) are both this one scan; they differ only in what is differentiated and reported.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import numpy as np
import optax
from jax.sharding import Mesh

from l2lgd.tasks import Task, sample_batch


class OptimizeeState(NamedTuple):
    """What a rollout carries for a batch of problems: their parameters and optimizer states."""

    params: Any
    opt_state: Any


def init_optimizee_state(optimizer: optax.GradientTransformation, params: Any) -> OptimizeeState:
    """Fresh optimizer state for a batch of parameters (leading axis = problems).

    Every optimizer here acts coordinatewise (each coordinate's update depends only on its own
    gradient history), so one optimizer over the whole batch equals one per problem, and lets the
    learned optimizer see all coordinates of all problems as rows of one matrix.
    """
    return OptimizeeState(params, optimizer.init(params))


def batch_loss(task: Task, params: Any, problems: Any, key: jax.Array) -> jax.Array:
    """Per-problem losses (shape: problems) at `params`, one minibatch key per problem."""
    keys = jax.random.split(key, jax.tree.leaves(params)[0].shape[0])
    return jax.vmap(task.loss)(params, problems, keys)


def rollout(
    task: Task,
    optimizer: optax.GradientTransformation,
    state: OptimizeeState,
    problems: Any,
    key: jax.Array,
    num_steps: int,
    second_derivatives: bool = False,
) -> tuple[OptimizeeState, jax.Array]:
    """Takes `num_steps` optimizer steps on every problem of the batch.

    Args:
      task: the problem family (its loss).
      optimizer: any optax transformation; its updates are added to the parameters.
      state: parameters and optimizer states, leading axis = problems.
      problems: the batch of problems.
      key: randomness for minibatches; step t uses fold_in(key, t).
      num_steps: T, the number of updates.
      second_derivatives: if False (the paper's choice) the optimizee gradient enters the
        optimizer as a constant, so a meta-gradient ignores d(grad f)/d(theta).

    Returns:
      The final state and the losses, shape (T + 1, problems): the loss before each update and
      the loss after the last one.
    """
    num_problems = jax.tree.leaves(state.params)[0].shape[0]
    grad_fn = jax.vmap(jax.value_and_grad(task.loss))

    def step(state: OptimizeeState, step: jax.Array) -> tuple[OptimizeeState, jax.Array]:
        keys = jax.random.split(jax.random.fold_in(key, step), num_problems)
        losses, grads = grad_fn(state.params, problems, keys)
        if not second_derivatives:
            grads = jax.lax.stop_gradient(grads)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        return OptimizeeState(optax.apply_updates(state.params, updates), opt_state), losses

    # In the backward pass, keep each step's matmul outputs and recompute the cheap elementwise
    # rest: about 1.5x faster meta-training on CPU than saving everything or nothing
    # (scripts/benchmark.py). Evaluation, which is not differentiated, is unaffected.
    remat_step = jax.checkpoint(step, policy=jax.checkpoint_policies.dots_saveable)
    state, losses = jax.lax.scan(remat_step, state, jax.numpy.arange(num_steps))
    final_losses = batch_loss(task, state.params, problems, jax.random.fold_in(key, num_steps))
    return state, jax.numpy.concatenate([losses, final_losses[None]], axis=0)


def optimize_sampled_problems(
    task: Task,
    optimizer: optax.GradientTransformation,
    key: jax.Array,
    num_problems: int,
    num_steps: int,
    mesh: Mesh | None = None,
) -> tuple[OptimizeeState, jax.Array]:
    """Samples `num_problems` problems from `key` and runs `optimizer` on them from scratch.

    The problems, initial parameters and minibatches depend on `key` only, so two optimizers
    given the same key meet the same problems from the same starting points.
    """
    problem_key, run_key = jax.random.split(key)
    params, problems = sample_batch(task, problem_key, num_problems, mesh)
    state = init_optimizee_state(optimizer, params)
    return rollout(task, optimizer, state, problems, run_key, num_steps)


def final_mean_loss(curves: jax.Array) -> float:
    """Mean loss over problems at the last step of `curves`; inf if it is not finite (diverged).

    The score of validation (early stopping) and of the baselines' learning-rate search.
    """
    value = float(np.mean(np.asarray(curves[-1])))
    return value if math.isfinite(value) else math.inf
