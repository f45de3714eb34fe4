"""Evaluation: run any optimizer on held-out problems (one jitted scan) and summarize the loss curves."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from l2lgd.config import OptimizerConfig
from l2lgd.optimizers.baselines import baseline
from l2lgd.optimizers.lstm import learned_optimizer
from l2lgd.rollout import init_optimizee_state, rollout
from l2lgd.tasks import Task, sample_batch

CURVES_FILE = "curves.json"


@partial(jax.jit, static_argnames=("task", "make_optimizer", "num_problems", "num_steps"))
def loss_curves(
    task: Task,
    make_optimizer: Callable[[Any], optax.GradientTransformation],
    hyperparams: Any,
    key: jax.Array,
    num_problems: int,
    num_steps: int,
) -> jax.Array:
    """Loss curves, shape (num_steps + 1, num_problems), of `make_optimizer(hyperparams)`.

    The problems and initial parameters depend on `key` only, so two optimizers given the same
    key are evaluated on the same problems from the same starting points.
    """
    problem_key, run_key = jax.random.split(key)
    params, problems = sample_batch(task, problem_key, num_problems)
    optimizer = make_optimizer(hyperparams)
    state = init_optimizee_state(optimizer, params)
    return rollout(task, optimizer, state, problems, run_key, num_steps)[1]


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


@partial(jax.jit, static_argnames=("task", "make_optimizer", "num_problems", "num_steps"))
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


@dataclass(frozen=True)
class _BaselineFactory:
    """Hashable `learning_rate -> optax optimizer`, so that jit caches one program per baseline."""

    name: str

    def __call__(self, learning_rate: jax.Array) -> optax.GradientTransformation:
        return baseline(self.name, learning_rate)


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

    @property
    def final_losses(self) -> np.ndarray:
        return self.curves[-1]

    def mean_curve(self) -> np.ndarray:
        return self.curves.mean(axis=1)

    def ci95_curve(self) -> np.ndarray:
        """Half-width of the 95% confidence interval of the mean, per step (normal approximation)."""
        return 1.96 * self.curves.std(axis=1, ddof=1) / math.sqrt(self.curves.shape[1])

    def final_mean(self) -> float:
        return float(self.final_losses.mean())

    def final_ci95(self) -> float:
        return float(self.ci95_curve()[-1])


def save_curves(path: Path, summaries: list[CurveSummary], metadata: dict[str, Any]) -> None:
    """Writes every optimizer's mean curve, CI and per-problem final losses as readable JSON."""
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {
        **metadata,
        "optimizers": {
            summary.label: {
                "learning_rate": summary.learning_rate,
                "mean": _json_floats(summary.mean_curve()),
                "ci95": _json_floats(summary.ci95_curve()),
                "final_mean": _json_float(summary.final_mean()),
                "final_ci95": _json_float(summary.final_ci95()),
                "final_losses": _json_floats(summary.final_losses),
            }
            for summary in summaries
        },
    }
    path.write_text(json.dumps(document, indent=1))


def _json_float(value: float) -> float | None:
    """JSON has no inf or NaN: a diverged value is written as null."""
    return float(value) if math.isfinite(value) else None


def _json_floats(values: np.ndarray) -> list[float | None]:
    return [_json_float(value) for value in np.asarray(values, np.float64)]


def summary_table(summaries: list[CurveSummary], step: int) -> str:
    """A Markdown table of final mean losses with 95% CIs and the ratio to the best baseline."""
    baselines = [
        s for s in summaries if s.learning_rate is not None and math.isfinite(s.final_mean())
    ]
    best = min((s.final_mean() for s in baselines), default=math.nan)
    lines = [
        f"| optimizer | learning rate | mean loss at step {step} | 95% CI | ratio to best baseline |",
        "|---|---|---|---|---|",
    ]
    for summary in summaries:
        lr = "learned" if summary.learning_rate is None else f"{summary.learning_rate:.3g}"
        mean, ci = summary.final_mean(), summary.final_ci95()
        ratio = mean / best if math.isfinite(best) and best > 0 else math.nan
        lines.append(
            f"| {summary.label} | {lr} | {mean:.4g} | [{mean - ci:.4g}, {mean + ci:.4g}] | {ratio:.3f} |"
        )
    return "\n".join(lines) + "\n"
