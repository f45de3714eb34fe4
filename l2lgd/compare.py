"""Tuned baselines against learned optimizers on the same held-out problems (the paper's comparisons).

Each baseline's learning rate is chosen on a log grid by the best mean final loss on problems
from the *training* seed; every optimizer is then evaluated on the same test problems.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from l2lgd.config import Config, EvalConfig, config_to_dict
from l2lgd.evaluate import (
    CURVES_FILE,
    CurveSummary,
    baseline_curves,
    evaluate_baseline,
    evaluate_learned,
    save_curves,
    summary_table,
)
from l2lgd.optimizers.baselines import check_baseline_name
from l2lgd.rollout import final_mean_loss
from l2lgd.seeds import TEST_STREAM, TUNING_STREAM, stream_key
from l2lgd.sources import LearnedOptimizer
from l2lgd.tasks import Task, make_task, task_description

SUMMARY_FILE = "summary.md"
TUNING_FILE = "tuning.json"


def learning_rate_grid(config: EvalConfig) -> np.ndarray:
    """Log-spaced learning rates from lr_min to lr_max, lr_per_decade per factor of 10."""
    decades = math.log10(config.lr_max / config.lr_min)
    count = max(2, round(decades * config.lr_per_decade) + 1)
    return np.geomspace(config.lr_min, config.lr_max, count)


def tune_learning_rate(task: Task, name: str, config: Config) -> tuple[float, dict[float, float]]:
    """The grid learning rate with the lowest mean final loss on training problems.

    Returns:
      The best rate and, for the record, each rate's mean final loss (inf where it diverged).
    """
    grid = learning_rate_grid(config.eval)
    curves = baseline_curves(
        task,
        name,
        grid,
        stream_key(config.seed, TUNING_STREAM),
        config.eval.num_tuning_problems,
        config.eval.num_steps,
    )
    finals = [final_mean_loss(c) for c in curves]
    scores = dict(zip((float(lr) for lr in grid), finals, strict=True))
    return min(scores, key=scores.get), scores


def compare(
    config: Config, baselines: list[str], learned: list[LearnedOptimizer], out_dir: Path
) -> list[CurveSummary]:
    """Tunes the baselines, evaluates everything on the test problems and writes the results.

    Writes `curves.json` (curves and per-problem final losses), `tuning.json` (the grid search)
    and `summary.md` (the table) into `out_dir`.
    """
    for name in baselines:
        check_baseline_name(name)
    task = make_task(config.task)
    test_key = stream_key(config.eval.seed, TEST_STREAM)
    num_problems, num_steps = config.eval.num_problems, config.eval.num_steps
    summaries = [
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
        for item in learned
    ]
    tuning = {}
    for name in baselines:
        best_lr, scores = tune_learning_rate(task, name, config)
        tuning[name] = {"best_learning_rate": best_lr, "final_mean_loss_by_learning_rate": scores}
        summaries.append(
            evaluate_baseline(
                task, name, best_lr, test_key, num_problems, num_steps, config.eval.test_metrics
            )
        )
    write_comparison(out_dir, config, summaries, tuning)
    return summaries


def write_comparison(
    out_dir: Path, config: Config, summaries: list[CurveSummary], tuning: dict[str, Any]
) -> None:
    """Writes curves.json, tuning.json and summary.md for a set of evaluated optimizers."""
    out_dir.mkdir(parents=True, exist_ok=True)
    metadata = {
        "task": config.task.name,
        "num_problems": config.eval.num_problems,
        "num_steps": config.eval.num_steps,
        "test_seed": config.eval.seed,
        "config": config_to_dict(config),
    }
    save_curves(out_dir / CURVES_FILE, summaries, metadata)
    (out_dir / TUNING_FILE).write_text(json.dumps(_json_safe(tuning), indent=1))
    header = (
        f"# {config.task.name}: {config.eval.num_problems} held-out problems "
        f"(test seed {config.eval.seed}), {config.eval.num_steps} steps\n\n"
    )
    if description := task_description(config.task):
        header += description + "\n\n"
    (out_dir / SUMMARY_FILE).write_text(header + summary_table(summaries, config.eval.num_steps))


def _json_safe(tree: Any) -> Any:
    """Replaces inf and NaN (not valid JSON) by None, recursively."""
    if isinstance(tree, dict):
        return {str(key): _json_safe(value) for key, value in tree.items()}
    if isinstance(tree, float) and not math.isfinite(tree):
        return None
    return tree
