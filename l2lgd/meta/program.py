"""What a meta-training run repeats, whatever it trains on: one meta-iteration, and a validation
of the current weights. A config's own task gives one of each; a `mixture` gives one per member,
taken in turn (`l2lgd.meta.mixture`)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax

from l2lgd.config import Config
from l2lgd.meta.mixture import member_configs
from l2lgd.meta.unroll import MetaState, make_meta_iteration
from l2lgd.optimizers.learned import learned_optimizer
from l2lgd.rollout import final_mean_loss, optimize_sampled_problems
from l2lgd.seeds import VALIDATION_STREAM, stream_key
from l2lgd.sharding import check_divisible, problem_mesh, replicated
from l2lgd.tasks import Task, make_task


class TrainingProgram(NamedTuple):
    """iterate(meta state, iteration, key) -> (new meta state, meta-loss of each unroll);
    validate(weights) -> a metrics record with at least "validation_loss" (lower is better)."""

    iterate: Callable[[MetaState, int, jax.Array], tuple[MetaState, jax.Array]]
    validate: Callable[[Any], dict[str, Any]]


def make_learned_evaluator(
    task: Task, config: Config, num_problems: int, num_steps: int, key: jax.Array
) -> Callable[[Any], jax.Array]:
    """A function weights -> loss curves (steps + 1, problems) on fixed sampled problems.

    One compiled program takes the task as an argument (its data are not compiled in). The
    problems are split over the devices of meta-training; the curves come back whole on every
    device, so every process can read them.
    """
    mesh = problem_mesh(config.meta.devices)
    check_divisible(num_problems, mesh, "meta.num_validation_problems")

    def evaluate(weights: Any, task: Task) -> jax.Array:
        optimizer = learned_optimizer(weights, config.optimizer)
        return optimize_sampled_problems(task, optimizer, key, num_problems, num_steps, mesh)[1]

    everywhere = replicated(mesh)
    compiled = jax.jit(evaluate, in_shardings=everywhere, out_shardings=everywhere)
    return lambda weights: compiled(weights, task)


def task_program(config: Config, validation_key: jax.Array) -> TrainingProgram:
    """Meta-iterations on the config's task; validation: the mean final loss of its
    `meta.num_validation_problems` problems drawn from `validation_key`."""
    task = make_task(config.task)
    meta_iteration = make_meta_iteration(config.optimizer, config.meta)
    evaluate = make_learned_evaluator(
        task, config, config.meta.num_validation_problems, config.meta.num_steps, validation_key
    )
    return TrainingProgram(
        iterate=lambda meta_state, iteration, key: meta_iteration(meta_state, task, key),
        validate=lambda weights: {"validation_loss": final_mean_loss(evaluate(weights))},
    )


def mixture_program(config: Config) -> TrainingProgram:
    """Meta-iteration i on member i mod n of the mixture; validation: each member's (on its own
    problems), and as "validation_loss" their geometric mean, which a member's loss scale
    (a quadratic's, an MNIST cross-entropy's) does not dominate. A member that diverged makes
    it inf."""
    validation_key = stream_key(config.seed, VALIDATION_STREAM)
    members = [
        task_program(member, jax.random.fold_in(validation_key, index))
        for index, member in enumerate(member_configs(config))
    ]

    def iterate(meta_state: MetaState, iteration: int, key: jax.Array) -> Any:
        return members[iteration % len(members)].iterate(meta_state, iteration, key)

    def validate(weights: Any) -> dict[str, Any]:
        losses = [member.validate(weights)["validation_loss"] for member in members]
        finite = all(math.isfinite(loss) and loss > 0 for loss in losses)
        mean_log = sum(math.log(loss) for loss in losses) / len(losses) if finite else math.inf
        return {"validation_loss": math.exp(mean_log), "member_validation_losses": losses}

    return TrainingProgram(iterate, validate)


def training_program(config: Config) -> TrainingProgram:
    """The program of a run: its mixture's if it has members, else its task's."""
    if config.mixture.members:
        return mixture_program(config)
    return task_program(config, stream_key(config.seed, VALIDATION_STREAM))
