"""The meta-objective: truncated unrolls of the learned optimizer, and one meta-iteration of Adam on it.

A meta-iteration samples fresh problems and optimizes them for `num_steps` steps in
`num_steps / unroll` truncated unrolls. Each unroll's meta-loss is the mean over problems of the
summed optimizee losses, as in the original code; its gradient updates the LSTM weights, and the
optimizee parameters and LSTM state are carried into the next unroll with the gradient cut.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from l2lgd.config import MetaConfig, OptimizerConfig
from l2lgd.optimizers.learned import learned_optimizer
from l2lgd.rollout import OptimizeeState, init_optimizee_state, rollout
from l2lgd.sharding import check_divisible, problem_mesh, replicated
from l2lgd.tasks.protocol import Task, sample_batch


class MetaState(NamedTuple):
    """What meta-training carries between iterations."""

    weights: Any
    meta_opt_state: Any


def meta_optimizer(config: MetaConfig) -> optax.GradientTransformation:
    """Adam on the LSTM weights, optionally after global-norm clipping of the meta-gradient."""
    adam = optax.adam(config.learning_rate)
    if config.grad_clip > 0:
        return optax.chain(optax.clip_by_global_norm(config.grad_clip), adam)
    return adam


def meta_loss(
    weights: Any,
    task: Task,
    optimizer_config: OptimizerConfig,
    meta_config: MetaConfig,
    state: OptimizeeState,
    problems: Any,
    key: jax.Array,
) -> tuple[jax.Array, OptimizeeState]:
    """The meta-loss of one truncated unroll, averaged over problems; also the final state.

    objective "sum" is the paper's: the sum of the optimizee losses over the unroll. "log_sum"
    sums their logarithms instead, so that late steps (small losses) weigh as much as early ones.
    """
    optimizer = learned_optimizer(weights, optimizer_config)
    state, losses = rollout(
        task,
        optimizer,
        state,
        problems,
        key,
        meta_config.unroll,
        meta_config.second_derivatives,
        meta_config.remat,
    )
    if meta_config.objective == "log_sum":
        losses = jnp.log(losses)
    return jnp.mean(jnp.sum(losses, axis=0)), state


def make_meta_iteration(
    optimizer_config: OptimizerConfig, meta_config: MetaConfig
) -> Callable[[MetaState, Task, jax.Array], tuple[MetaState, jax.Array]]:
    """A jitted function (meta state, task, key) -> (new meta state, meta-loss of each unroll).

    The whole iteration (sampling, every unroll, every Adam step) is one compiled program; the
    task is an argument (its data are not compiled in) and the meta state's buffers are donated,
    so that nothing is copied between iterations. The problems are split over
    `meta_config.devices` devices; the meta state and the task are replicated on them.
    """
    mesh = problem_mesh(meta_config.devices)
    check_divisible(meta_config.num_problems, mesh, "meta.num_problems")
    meta_opt = meta_optimizer(meta_config)
    num_unrolls = meta_config.num_steps // meta_config.unroll
    grad_fn = jax.value_and_grad(meta_loss, has_aux=True)

    def one_unroll(
        carry: tuple[MetaState, OptimizeeState], unroll_key: jax.Array, task: Task, problems: Any
    ) -> tuple[tuple[MetaState, OptimizeeState], jax.Array]:
        meta_state, state = carry
        (loss, state), grads = grad_fn(
            meta_state.weights, task, optimizer_config, meta_config, state, problems, unroll_key
        )
        updates, meta_opt_state = meta_opt.update(
            grads, meta_state.meta_opt_state, meta_state.weights
        )
        weights = optax.apply_updates(meta_state.weights, updates)
        return (MetaState(weights, meta_opt_state), jax.lax.stop_gradient(state)), loss

    def meta_iteration(
        meta_state: MetaState, task: Task, key: jax.Array
    ) -> tuple[MetaState, jax.Array]:
        problem_key, unroll_key = jax.random.split(key)
        params, problems = sample_batch(task, problem_key, meta_config.num_problems, mesh)
        optimizer = learned_optimizer(meta_state.weights, optimizer_config)
        state = init_optimizee_state(optimizer, params)
        (meta_state, _), losses = jax.lax.scan(
            lambda carry, k: one_unroll(carry, k, task, problems),
            (meta_state, state),
            jax.random.split(unroll_key, num_unrolls),
        )
        return meta_state, losses

    everywhere = replicated(mesh)
    return jax.jit(
        meta_iteration,
        in_shardings=everywhere,
        out_shardings=everywhere,
        donate_argnums=0,
    )


def init_meta_state(weights: Any, meta_config: MetaConfig) -> MetaState:
    """Meta state for initial weights (Adam's moments at zero), replicated on the devices of
    meta-training, where every meta-iteration leaves it."""
    state = MetaState(weights, meta_optimizer(meta_config).init(weights))
    return jax.device_put(state, replicated(problem_mesh(meta_config.devices)))
