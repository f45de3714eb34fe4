"""Tuned baselines against learned optimizers on the same held-out problems (the paper's comparisons).

Each baseline's learning rate is chosen on a log grid by the best mean final loss on problems
from the *training* seed, the grid growing past its ends until the best rate is inside it; every
optimizer is then evaluated on the same test problems.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from l2lgd.config import Config, EvalConfig, config_to_dict
from l2lgd.errors import L2LError
from l2lgd.evaluate import CurveSummary, baseline_curves, evaluate_baseline, evaluate_learned
from l2lgd.optimizers.baselines import check_baseline_name
from l2lgd.outputs import OutputFolder, claimed_output_folder
from l2lgd.plot import plot_curves
from l2lgd.results import (
    CURVES_FILE,
    GRID_EDGE,
    Comparison,
    OptimizerResult,
    save_comparison,
)
from l2lgd.rollout import final_mean_loss
from l2lgd.seeds import TEST_STREAM, TUNING_STREAM, stream_key
from l2lgd.sources import LearnedOptimizer, load_learned
from l2lgd.specs import BaselineChoice, OptimizerChoice, parse_optimizer_spec
from l2lgd.tasks import Task, make_task, task_description

# At most this many rates are added past each end of the configured grid (3 decades at 2 per
# decade), so that a baseline that never stops improving in one direction still ends.
MAX_GRID_EXTENSIONS = 6


def learning_rate_grid(config: EvalConfig, below: int = 0, above: int = 0) -> np.ndarray:
    """Log-spaced learning rates from lr_min to lr_max, lr_per_decade per factor of 10, in
    increasing order, and `below` more rates under lr_min and `above` more over lr_max, spaced
    lr_per_decade per factor of 10 too."""
    decades = math.log10(config.lr_max / config.lr_min)
    count = max(2, round(decades * config.lr_per_decade) + 1)
    # Exponents rather than products of a step, so that a decade beyond 1e-3 is 1e-2 exactly.
    below_exponents = math.log10(config.lr_min) - np.arange(below, 0, -1) / config.lr_per_decade
    above_exponents = math.log10(config.lr_max) + np.arange(1, above + 1) / config.lr_per_decade
    return np.concatenate(
        [
            10.0**below_exponents,
            np.geomspace(config.lr_min, config.lr_max, count),
            10.0**above_exponents,
        ]
    )


@dataclass(frozen=True)
class LearningRateSearch:
    """One baseline's learning-rate search on the training problems.

    `scores` maps each rate tried, in increasing order, to its mean final loss (inf where it
    diverged); `extended_below` and `extended_above` count the rates added past lr_min and lr_max.
    """

    scores: dict[float, float]
    extended_below: int = 0
    extended_above: int = 0

    @property
    def best_learning_rate(self) -> float:
        """The rate with the lowest score; of equal scores (all diverged, say) the smallest rate."""
        return min(self.scores, key=self.scores.get)

    @property
    def best_is_interior(self) -> bool:
        """Whether the grid holds a rate on each side of the best one (each scored worse, or the
        same if larger): a best rate on the grid's edge may only mean the grid stopped too soon."""
        rates = list(self.scores)
        return rates[0] < self.best_learning_rate < rates[-1]

    def record(self) -> dict[str, Any]:
        """The search as tuning.json records it."""
        return {
            "best_learning_rate": self.best_learning_rate,
            "best_is_interior": self.best_is_interior,
            "extended_below": self.extended_below,
            "extended_above": self.extended_above,
            "learning_rates": list(self.scores),
            "final_mean_loss_by_learning_rate": self.scores,
        }


def tune_learning_rate(task: Task, name: str, config: Config) -> LearningRateSearch:
    """Finds the learning rate with the lowest mean final loss on training problems.

    Starts from `learning_rate_grid(config.eval)` and, while the best rate sits on an edge of
    the grid, adds the next rate beyond that edge (at most MAX_GRID_EXTENSIONS per side), so
    that a grid chosen too narrow for a baseline does not cap its tuned rate. Diverged rates
    score inf, worse than any other.
    """
    search = LearningRateSearch(_scores(task, name, learning_rate_grid(config.eval), config))
    while (side := _side_to_extend(search)) is not None:
        below = search.extended_below + (side == "below")
        above = search.extended_above + (side == "above")
        grid = learning_rate_grid(config.eval, below, above)
        new_rate = grid[:1] if side == "below" else grid[-1:]
        scores = search.scores | _scores(task, name, new_rate, config)
        search = LearningRateSearch(dict(sorted(scores.items())), below, above)
    return search


def _side_to_extend(search: LearningRateSearch) -> Literal["below", "above"] | None:
    """The edge of the grid the best rate sits on, unless that side has MAX_GRID_EXTENSIONS
    already; None when the best rate is interior (or the cap is reached)."""
    rates, best = list(search.scores), search.best_learning_rate
    if best == rates[0] and search.extended_below < MAX_GRID_EXTENSIONS:
        return "below"
    if best == rates[-1] and search.extended_above < MAX_GRID_EXTENSIONS:
        return "above"
    return None


def _scores(
    task: Task, name: str, learning_rates: np.ndarray, config: Config
) -> dict[float, float]:
    """Each rate's mean final loss on the tuning problems (inf where it diverged), all rates in
    one compiled call."""
    curves = baseline_curves(
        task,
        name,
        learning_rates,
        stream_key(config.seed, TUNING_STREAM),
        config.eval.num_tuning_problems,
        config.eval.num_steps,
    )
    return {float(lr): final_mean_loss(c) for lr, c in zip(learning_rates, curves, strict=True)}


def compare(
    config: Config, baselines: list[str], learned: list[LearnedOptimizer], out_dir: Path
) -> list[CurveSummary]:
    """Tunes the baselines, evaluates everything on the test problems and writes the results.

    Writes `curves.json` (curves and per-problem final losses), `tuning.json` (the grid search)
    and `summary.md` (the table) into `out_dir`.
    """
    summaries, tuning = compare_optimizers(config, baselines, learned)
    write_comparison(out_dir, config, summaries, tuning)
    return summaries


def compare_optimizers(
    config: Config,
    baselines: list[str],
    learned: list[LearnedOptimizer],
    log: Callable[[str], None] | None = None,
) -> tuple[list[CurveSummary], dict[str, Any]]:
    """Tunes the baselines and evaluates everything on the test problems; writes nothing.

    Returns every optimizer's curves (learned first) and each baseline's grid search. `log`, if
    given, gets one line per optimizer done, with the elapsed time and an estimate of the rest.
    """
    for name in baselines:
        check_baseline_name(name)
    task = make_task(config.task)
    test_key = stream_key(config.eval.seed, TEST_STREAM)
    num_problems, num_steps = config.eval.num_problems, config.eval.num_steps
    progress = _ProgressLog(len(learned) + len(baselines), log)
    summaries = []
    for item in learned:
        summaries.append(
            evaluate_learned(
                task,
                item.label,
                item.weights,
                item.config,
                test_key,
                num_problems,
                num_steps,
                config.eval.test_metrics,
            )
        )
        progress.done(f"{item.label}: final mean loss {summaries[-1].final_mean():.4g}")
    tuning = {}
    for name in baselines:
        search = tune_learning_rate(task, name, config)
        tuning[name] = search.record()
        summaries.append(
            evaluate_baseline(
                task,
                name,
                search.best_learning_rate,
                test_key,
                num_problems,
                num_steps,
                config.eval.test_metrics,
            )
        )
        edge = "" if search.best_is_interior else f" ({GRID_EDGE}: widen eval.lr_min/lr_max)"
        progress.done(
            f"{name}: tuned lr {search.best_learning_rate:.3g}{edge}, final mean loss "
            f"{summaries[-1].final_mean():.4g}"
        )
    return summaries, tuning


class _ProgressLog:
    """One line per finished optimizer: what it reached, time so far, and an ETA that assumes
    the rest take as long on average (learned optimizers are faster: it errs long)."""

    def __init__(self, total: int, log: Callable[[str], None] | None) -> None:
        self.total, self.log, self.count = total, log, 0
        self.start = time.perf_counter()

    def done(self, what: str) -> None:
        self.count += 1
        if self.log is None:
            return
        elapsed = time.perf_counter() - self.start
        eta = elapsed / self.count * (self.total - self.count)
        self.log(f"  [{self.count}/{self.total}] {what}  ({elapsed:.0f}s elapsed, ETA {eta:.0f}s)")


def write_comparison(
    out_dir: Path, config: Config, summaries: list[CurveSummary], tuning: dict[str, Any]
) -> None:
    """Writes curves.json, tuning.json and summary.md for a set of evaluated optimizers."""
    results = [
        OptimizerResult.from_summary(s, None if s.learning_rate is None else tuning.get(s.label))
        for s in summaries
    ]
    comparison = Comparison(
        task=config.task.name,
        test_seed=config.eval.seed,
        num_problems=config.eval.num_problems,
        num_steps=config.eval.num_steps,
        optimizers=tuple(results),
        config=config_to_dict(config),
        description=task_description(config.task),
    )
    save_comparison(out_dir, comparison)


def evaluate_choice(config: Config, choice: OptimizerChoice) -> CurveSummary:
    """One optimizer, as parsed from a spec, on the config's test problems."""
    task = make_task(config.task)
    key = stream_key(config.eval.seed, TEST_STREAM)
    shape = (key, config.eval.num_problems, config.eval.num_steps, config.eval.test_metrics)
    if isinstance(choice, BaselineChoice):
        return evaluate_baseline(task, choice.name, choice.learning_rate, *shape)
    return evaluate_learned(task, choice.label, choice.weights, choice.config, *shape)


def write_results(
    folder: OutputFolder, config: Config, summaries: list[CurveSummary], tuning: dict[str, Any]
) -> list[Path]:
    """Replaces a claimed folder's old results (with --force) by a comparison and its figures,
    in one critical section: a stopped command leaves the old results or the new, whole."""
    with folder.replacing():
        write_comparison(folder.path, config, summaries, tuning)
        return plot_curves(folder.path / CURVES_FILE)


def run_evaluation(config: Config, spec: str, out_dir: Path, force: bool = False) -> list[Path]:
    """`l2l evaluate`: one optimizer on the test problems, written to `out_dir` with its figures
    (the folder is claimed before any work; see `outputs.claimed_output_folder`)."""
    choice = parse_optimizer_spec(spec)  # a bad spec fails before a folder is made
    with claimed_output_folder(out_dir, force) as folder:
        return write_results(folder, config, [evaluate_choice(config, choice)], {})


def run_comparison(
    config: Config,
    baselines: list[str],
    learned_specs: list[str],
    out_dir: Path,
    force: bool = False,
    log: Callable[[str], None] | None = None,
) -> list[Path]:
    """`l2l compare`: tune the baselines, compare them with the learned optimizers on the same
    test problems, write the results and figures to `out_dir`."""
    if not baselines and not learned_specs:
        raise L2LError("nothing to compare: name --baselines, or a --learned optimizer, or both")
    for name in baselines:
        check_baseline_name(name)
    learned = [load_learned(spec) for spec in learned_specs]
    with claimed_output_folder(out_dir, force) as folder:
        make_task(config.task)  # missing data fails before anything is printed
        if log is not None:
            log(
                f"tuning {', '.join(baselines) or 'no baselines'} on "
                f"{config.eval.num_tuning_problems} training problems, then evaluating on "
                f"{config.eval.num_problems} test problems..."
            )
        summaries, tuning = compare_optimizers(config, baselines, learned, log)
        return write_results(folder, config, summaries, tuning)
