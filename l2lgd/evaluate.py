"""Evaluation: run any optimizer on held-out problems (one jitted scan) and summarize the loss curves."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from l2lgd.config import OptimizerConfig
from l2lgd.optimizers.baselines import baseline
from l2lgd.optimizers.learned import learned_optimizer
from l2lgd.rollout import optimize_sampled_problems
from l2lgd.tasks import Task

Metrics = dict[str, jax.Array]


class EvaluationRun(NamedTuple):
    """What `evaluation_run` returns: loss curves (num_steps + 1, problems), each problem's final
    test-set metrics (problems,) (empty unless asked for), and the final parameters."""

    curves: jax.Array
    test_metrics: Metrics
    final_params: Any


@partial(
    jax.jit,
    static_argnames=("make_optimizer", "num_problems", "num_steps", "with_test_metrics"),
)
def evaluation_run(
    task: Task,
    make_optimizer: Callable[[Any], optax.GradientTransformation],
    hyperparams: Any,
    key: jax.Array,
    num_problems: int,
    num_steps: int,
    with_test_metrics: bool = False,
) -> EvaluationRun:
    """Runs `make_optimizer(hyperparams)` on `num_problems` problems for `num_steps` steps: the
    one compiled evaluation program, which comparisons, figures and styled images all call.

    The problems and initial parameters depend on `key` only (see `optimize_sampled_problems`).
    The task (its data included) and the optimizer's hyper-parameters (learning rate, learned
    weights) are arguments, so a new value of either compiles nothing.

    Returns:
      The loss curves, shape (num_steps + 1, num_problems); if `with_test_metrics` (tasks with a
      test split), each problem's final test-set metrics, shape (num_problems,) each; and the
      final parameters.
    """
    optimizer = make_optimizer(hyperparams)
    state, curves = optimize_sampled_problems(task, optimizer, key, num_problems, num_steps)
    # One problem at a time: a whole test split per problem at once would not fit in memory.
    metrics = jax.lax.map(task.test_metrics, state.params) if with_test_metrics else {}
    return EvaluationRun(curves, metrics, state.params)


def loss_curves(
    task: Task,
    make_optimizer: Callable[[Any], optax.GradientTransformation],
    hyperparams: Any,
    key: jax.Array,
    num_problems: int,
    num_steps: int,
) -> jax.Array:
    """Only the loss curves of `evaluation_run`, shape (num_steps + 1, num_problems)."""
    return evaluation_run(task, make_optimizer, hyperparams, key, num_problems, num_steps).curves


def has_test_metrics(task: Task) -> bool:
    """Whether a task can score trained parameters on a test split."""
    return hasattr(task, "test_metrics")


def baseline_curves(
    task: Task,
    name: str,
    learning_rates: jax.Array,
    key: jax.Array,
    num_problems: int,
    num_steps: int,
) -> np.ndarray:
    """Curves of baseline `name` for each learning rate: shape (rates, num_steps + 1, problems)."""
    rates = jnp.asarray(learning_rates, jnp.float32)
    return np.asarray(
        _baseline_grid_curves(task, _BaselineFactory(name), rates, key, num_problems, num_steps)
    )


@partial(jax.jit, static_argnames=("make_optimizer", "num_problems", "num_steps"))
def _baseline_grid_curves(
    task: Task,
    make_optimizer: Callable[[Any], optax.GradientTransformation],
    learning_rates: jax.Array,
    key: jax.Array,
    num_problems: int,
    num_steps: int,
) -> jax.Array:
    """One compiled program per baseline and shape that runs every learning rate in turn."""
    return jax.lax.map(
        lambda rate: loss_curves(task, make_optimizer, rate, key, num_problems, num_steps),
        learning_rates,
    )


def learned_curves(
    task: Task,
    weights: Any,
    config: OptimizerConfig,
    key: jax.Array,
    num_problems: int,
    num_steps: int,
) -> np.ndarray:
    """Curves of the learned optimizer with `weights`: shape (num_steps + 1, problems)."""
    return np.asarray(
        loss_curves(task, _LearnedFactory(config), weights, key, num_problems, num_steps)
    )


def evaluate_baseline(
    task: Task,
    name: str,
    learning_rate: float,
    key: jax.Array,
    num_problems: int,
    num_steps: int,
    test_metrics: bool = True,
) -> CurveSummary:
    """A baseline at one learning rate on the test problems, with test metrics where the task has
    them (unless `test_metrics` is False: they cost a pass over the test split per problem)."""
    curves, metrics, _ = evaluation_run(
        task,
        _BaselineFactory(name),
        jnp.float32(learning_rate),
        key,
        num_problems,
        num_steps,
        test_metrics and has_test_metrics(task),
    )
    return CurveSummary(name, np.asarray(curves), learning_rate, _to_numpy(metrics))


def evaluate_learned(
    task: Task,
    label: str,
    weights: Any,
    config: OptimizerConfig,
    key: jax.Array,
    num_problems: int,
    num_steps: int,
    test_metrics: bool = True,
) -> CurveSummary:
    """A learned optimizer on the test problems, with test metrics where the task has them
    (unless `test_metrics` is False)."""
    curves, metrics, _ = evaluation_run(
        task,
        _LearnedFactory(config),
        weights,
        key,
        num_problems,
        num_steps,
        test_metrics and has_test_metrics(task),
    )
    return CurveSummary(label, np.asarray(curves), None, _to_numpy(metrics))


def _to_numpy(metrics: Metrics) -> dict[str, np.ndarray]:
    return {name: np.asarray(values) for name, values in metrics.items()}


@dataclass(frozen=True)
class _BaselineFactory:
    """Hashable `learning_rate -> optax optimizer`, so that jit caches one program per baseline."""

    name: str

    def __call__(self, learning_rate: jax.Array) -> optax.GradientTransformation:
        return baseline(self.name, learning_rate)


@dataclass(frozen=True)
class FixedOptimizer:
    """A given transformation as a factory that ignores its hyper-parameters (pass None), so that
    `evaluation_run` compiles once per transformation and reuses the program on each call."""

    optimizer: optax.GradientTransformation

    def __call__(self, hyperparams: None) -> optax.GradientTransformation:
        del hyperparams
        return self.optimizer


@dataclass(frozen=True)
class _LearnedFactory:
    """Hashable `weights -> learned optimizer` for one architecture."""

    config: OptimizerConfig

    def __call__(self, weights: Any) -> optax.GradientTransformation:
        return learned_optimizer(weights, self.config)


@dataclass
class CurveSummary:
    """One optimizer's results on the test problems."""

    label: str
    curves: np.ndarray
    learning_rate: float | None = None
    test_metrics: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def final_losses(self) -> np.ndarray:
        return self.curves[-1]

    def mean_curve(self) -> np.ndarray:
        return self.curves.mean(axis=1)

    def ci95_curve(self) -> np.ndarray:
        """Half-width of the 95% confidence interval of the mean loss, per step."""
        return ci95_half_width(self.curves, axis=1)

    def final_mean(self) -> float:
        return float(self.final_losses.mean())

    def final_ci95(self) -> float:
        return float(self.ci95_curve()[-1])


def ci95_half_width(values: np.ndarray, axis: int = -1) -> np.ndarray:
    """Half-width of the 95% confidence interval of the mean (normal approximation)."""
    return 1.96 * values.std(axis=axis, ddof=1) / math.sqrt(values.shape[axis])
