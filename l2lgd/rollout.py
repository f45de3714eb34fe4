"""Running any optax optimizer on a batch of problems for T steps, as one `lax.scan`.

Meta-training (a truncated unroll of the learned optimizer) and evaluation (a whole run of any
optimizer) are both this one scan; they differ only in what is differentiated and reported.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh

from l2lgd.optimizers.architecture import CoordinatewiseState, IndependentCoordinates
from l2lgd.tasks.protocol import Task, sample_batch


class OptimizeeState(NamedTuple):
    """What a rollout carries for a batch of problems: their parameters and optimizer states."""

    params: Any
    opt_state: Any


def init_optimizee_state(optimizer: optax.GradientTransformation, params: Any) -> OptimizeeState:
    """Fresh optimizer state for a batch of parameters (leading axis = problems): `optimizer`,
    written for one problem, gets its own state for each problem (`vectorized`)."""
    return OptimizeeState(params, vectorized(optimizer).init(params))


def vectorized(optimizer: optax.GradientTransformation) -> optax.GradientTransformation:
    """`optimizer`, written for one problem, applied to a batch of problems, each alone.

    The one place where optimizers meet batches (`jax.vmap`): a learned optimizer sees one
    problem's coordinates, so its global averaging cells and memories are that problem's. The
    parameters, gradients and updates carry the problems axis first; a learned optimizer's
    `CoordinatewiseState` carries it just before the coordinates, so that all problems'
    coordinates lie side by side, as its `coordinatewise` layers take them. An optimizer of
    `IndependentCoordinates` (the plain LSTM, alone or in parameter groups) is already each
    problem alone on a batch, and is returned as it is: as fast as a vmap can be, on any device
    split of the problems.
    """

    if isinstance(optimizer, IndependentCoordinates):  # each problem alone by construction
        return optimizer

    def state_axes(params: Any) -> Any:
        leaves = jax.tree.leaves(params)
        one_problem = jax.tree.map(
            lambda leaf: jax.ShapeDtypeStruct(leaf.shape[1:], leaf.dtype), params
        )
        state = jax.eval_shape(optimizer.init, one_problem)
        if leaves and leaves[0].shape[0] == 1:  # one problem: first, so XLA copies no layouts
            return 0
        return problem_axes(state)

    def init(params: Any) -> Any:
        return jax.vmap(optimizer.init, out_axes=state_axes(params))(params)

    def update(grads: Any, state: Any, params: Any = None) -> tuple[Any, Any]:
        axes = state_axes(grads)
        return jax.vmap(optimizer.update, in_axes=(0, axes, 0), out_axes=(0, axes))(
            grads, state, params
        )

    return optax.GradientTransformation(init, update)


def problem_axes(state: Any) -> Any:
    """Where a batch of optimizer states holds the problems axis, leaf by leaf: just before the
    coordinates (the last axis) in a `CoordinatewiseState`, first elsewhere."""

    def axes(node: Any) -> Any:
        if isinstance(node, CoordinatewiseState):
            return jax.tree.map(lambda leaf: leaf.ndim - 1, node)
        return 0

    return jax.tree.map(axes, state, is_leaf=lambda node: isinstance(node, CoordinatewiseState))


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
    remat: str = "steps",
) -> tuple[OptimizeeState, jax.Array]:
    """Takes `num_steps` optimizer steps on every problem of the batch.

    Args:
      task: the problem family (its loss).
      optimizer: any optax transformation for one problem (`vectorized` over the batch); its
        updates are added to the parameters.
      state: parameters and optimizer states, leading axis = problems (`init_optimizee_state`).
      problems: the batch of problems.
      key: randomness for minibatches; step t uses fold_in(key, t).
      num_steps: T, the number of updates.
      second_derivatives: if False (the paper's choice) the optimizee gradient enters the
        optimizer as a constant, so a meta-gradient ignores d(grad f)/d(theta).
      remat: what a gradient through the rollout keeps (see `scan_steps`); no effect otherwise.

    Returns:
      The final state and the losses, shape (T + 1, problems): the loss before each update and
      the loss after the last one.
    """
    num_problems = jax.tree.leaves(state.params)[0].shape[0]
    grad_fn = jax.vmap(jax.value_and_grad(task.loss))
    update = vectorized(optimizer).update

    def step(state: OptimizeeState, step: jax.Array) -> tuple[OptimizeeState, jax.Array]:
        keys = jax.random.split(jax.random.fold_in(key, step), num_problems)
        if second_derivatives:
            losses, grads = grad_fn(state.params, problems, keys)
        else:
            losses, grads = first_order_loss_and_grad(grad_fn, state.params, problems, keys)
        updates, opt_state = update(grads, state.opt_state, state.params)
        return OptimizeeState(optax.apply_updates(state.params, updates), opt_state), losses

    state, losses = scan_steps(step, state, num_steps, remat)
    final_losses = batch_loss(task, state.params, problems, jax.random.fold_in(key, num_steps))
    return state, jax.numpy.concatenate([losses, final_losses[None]], axis=0)


def first_order_loss_and_grad(
    grad_fn: Callable[..., tuple[jax.Array, Any]], params: Any, *args: Any
) -> tuple[jax.Array, Any]:
    """Per-problem losses and gradients, for a meta-gradient without second derivatives.

    The gradients are constants (the paper's choice). The losses are the first-order Taylor
    expansion loss(p) + <grad, params - p> at p = params: the same value, and, since grad is
    the loss's gradient on the same minibatch, the same derivative with respect to the params.
    So a meta-gradient needs no backward pass through the optimizee's loss, and keeps none of
    its activations: the optimizee's forward and backward pass run once per step, outside the
    differentiated program.
    """
    frozen = jax.lax.stop_gradient(params)
    losses, grads = jax.lax.stop_gradient(grad_fn(frozen, *args))
    moved = jax.tree.map(lambda leaf, at: leaf - at, params, frozen)
    per_problem = [
        jnp.sum((grad * delta).reshape(grad.shape[0], -1), axis=1)
        for grad, delta in zip(jax.tree.leaves(grads), jax.tree.leaves(moved), strict=True)
    ]
    return losses + sum(per_problem), grads


def scan_steps(
    step: Callable[[Any, jax.Array], tuple[Any, jax.Array]], state: Any, num_steps: int, remat: str
) -> tuple[Any, jax.Array]:
    """`lax.scan` of `step` over steps 0..num_steps-1, with a rematerialization policy.

    What the backward pass keeps of the forward pass:
      "none": everything every step computed; memory grows with num_steps.
      "steps": each step's matmul outputs; the cheap elementwise rest is recomputed. About 1.5x
        faster meta-training on CPU than "none" (scripts/benchmark.py); memory still linear.
      "sqrt": only the carry at the start of each block of about sqrt(num_steps) steps; a block
        is recomputed (as "steps") when its gradient is needed. Peak memory grows like
        sqrt(num_steps), for one more forward pass (scripts/memory.py).
    """
    steps = jnp.arange(num_steps)
    if remat == "none":
        return jax.lax.scan(step, state, steps)
    saving_dots = jax.checkpoint(step, policy=jax.checkpoint_policies.dots_saveable)
    if remat == "steps":
        return jax.lax.scan(saving_dots, state, steps)
    block = sqrt_block_length(num_steps)

    @jax.checkpoint
    def run_block(state: Any, block_steps: jax.Array) -> tuple[Any, jax.Array]:
        return jax.lax.scan(saving_dots, state, block_steps)

    state, losses = jax.lax.scan(run_block, state, steps.reshape(-1, block))
    return state, losses.reshape(num_steps, *losses.shape[2:])


def sqrt_block_length(num_steps: int) -> int:
    """The largest divisor of `num_steps` that is at most its square root."""
    return max(d for d in range(1, math.isqrt(num_steps) + 1) if num_steps % d == 0)


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
    params, problems, run_key = sampled_start(task, key, num_problems, mesh)
    state = init_optimizee_state(optimizer, params)
    return rollout(task, optimizer, state, problems, run_key, num_steps)


def sampled_start(
    task: Task, key: jax.Array, num_problems: int, mesh: Mesh | None = None
) -> tuple[Any, Any, jax.Array]:
    """The initial parameters and problems `optimize_sampled_problems` draws from `key`, and the
    key of its run (the minibatches): what a figure needs to start where a comparison did."""
    problem_key, run_key = jax.random.split(key)
    params, problems = sample_batch(task, problem_key, num_problems, mesh)
    return params, problems, run_key


def final_mean_loss(curves: jax.Array) -> float:
    """Mean loss over problems at the last step of `curves`; inf if it is not finite (diverged).

    The score of validation (early stopping) and of the baselines' learning-rate search.
    """
    value = float(np.mean(np.asarray(curves[-1], dtype=np.float64)))  # a float32 sum may overflow
    return value if math.isfinite(value) else math.inf
