"""Learned optimizers shipped inside the package, each with its provenance and the figures it reached.

A shipped weights file is an ordinary weights file (`l2lgd.checkpoint.save_weights`) whose
provenance holds, besides the training config, seed, iteration and code version:
- `description`: one line on what it was trained for;
- `evaluation`: the figures of `l2l compare` on held-out test problems (the learned optimizer's
  final mean loss with its 95% CI, each tuned baseline's, the ratio to the best baseline);
- `suite` (optional): its ratio to the best tuned baseline on each task of a held-out suite
  (`scripts/suite.py`'s suite.json), for an optimizer meant for many tasks;
- `check`: a small evaluation (seed, problems, steps) and the mean final loss it gave, with a
  relative tolerance. `check_figure` recomputes it: tests run it for every shipped file, so a code
  change that silently alters what the weights do fails CI.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from l2lgd import runs
from l2lgd.checkpoint import load_weights, save_weights
from l2lgd.config import config_from_dict
from l2lgd.errors import L2LError
from l2lgd.evaluate import learned_curves
from l2lgd.results import figures_record, load_comparison
from l2lgd.rollout import final_mean_loss
from l2lgd.seeds import TEST_STREAM, stream_key
from l2lgd.tasks import make_task

PRETRAINED_PREFIX = "pretrained:"
WEIGHTS_SUFFIX = ".msgpack"
CHECK_RTOL = 0.01
"""Relative tolerance of the check figure: float32 reductions may differ in the last bits across
CPUs and XLA versions; a change to what the optimizer computes moves the figure far more."""


@dataclass(frozen=True)
class CheckSpec:
    """A small evaluation that pins down what a shipped optimizer does."""

    seed: int
    num_problems: int
    num_steps: int


def weights_dir() -> Path:
    """The package folder that holds the shipped weights files."""
    return Path(str(resources.files("l2lgd") / "weights"))


def pretrained_names() -> list[str]:
    """Names of the shipped optimizers, sorted."""
    return sorted(path.stem for path in weights_dir().glob(f"*{WEIGHTS_SUFFIX}"))


def pretrained_name(spec: str) -> str | None:
    """The shipped optimizer `spec` names ("mnist" or "pretrained:mnist"), or None."""
    name = spec.removeprefix(PRETRAINED_PREFIX)
    return name if name in pretrained_names() else None


def pretrained_path(name: str) -> Path:
    """The weights file of a shipped optimizer; an unknown name is an error listing the known."""
    if name not in pretrained_names():
        raise L2LError(
            f"no pretrained optimizer {name!r}; shipped: {', '.join(pretrained_names())}"
        )
    return weights_dir() / f"{name}{WEIGHTS_SUFFIX}"


def read_provenance(name: str) -> dict[str, Any]:
    """The provenance stored with a shipped optimizer."""
    return load_weights(pretrained_path(name))[2]


def check_figure(weights: Any, provenance: dict[str, Any], check: CheckSpec) -> float:
    """Mean final loss of the optimizer on the check problems of its own training task."""
    config = config_from_dict(provenance["config"])
    task = make_task(config.task)
    key = stream_key(check.seed, TEST_STREAM)
    curves = learned_curves(
        task, weights, config.optimizer, key, check.num_problems, check.num_steps
    )
    return final_mean_loss(curves)


def evaluation_figures(comparison_dir: Path, learned_label: str | None = None) -> dict[str, Any]:
    """The headline figures of one learned optimizer in an `l2l compare` folder: the only one,
    or the one labelled `learned_label` (e.g. "LSTM (cifar10_sub)")."""
    comparison = load_comparison(comparison_dir)
    learned = [r for r in comparison.learned() if learned_label in (None, r.label)]
    if len(learned) != 1:
        wanted = "" if learned_label is None else f" labelled {learned_label!r}"
        raise L2LError(
            f"{comparison_dir} holds {len(learned)} learned optimizers{wanted}; expected 1"
        )
    return figures_record(comparison, learned[0])


def package_pretrained(
    name: str,
    run_dir: Path,
    comparison_dir: Path,
    description: str,
    check: CheckSpec,
    out_dir: Path | None = None,
    learned_label: str | None = None,
    suite: dict[str, Any] | None = None,
) -> Path:
    """Writes a run's best weights as shipped optimizer `name`, with figures and a check figure.

    Args:
      name: the name users will type (`--learned NAME`).
      run_dir: the meta-training run folder.
      comparison_dir: an `l2l compare` folder evaluating that run on held-out test problems.
      description: one line for `l2l pretrained`.
      check: the small evaluation whose result is stored and re-checked by the tests.
      out_dir: where to write (default: the package's weights folder).
      learned_label: which learned optimizer of the comparison is this run's, if it holds several.
      suite: its held-out suite results (`scripts/suite.py`'s suite.json), if it has them.

    Returns:
      The written file.
    """
    weights, config, provenance = load_weights(runs.best_weights_path(run_dir))
    figure = check_figure(weights, provenance, check)
    if not math.isfinite(figure):
        raise L2LError(f"the weights of {run_dir} diverge on the check problems")
    provenance = {
        **provenance,
        "description": description,
        "evaluation": evaluation_figures(comparison_dir, learned_label),
        "check": {
            "seed": check.seed,
            "num_problems": check.num_problems,
            "num_steps": check.num_steps,
            "mean_final_loss": figure,
            "rtol": CHECK_RTOL,
        },
        **({"suite": suite} if suite is not None else {}),
    }
    path = (out_dir or weights_dir()) / f"{name}{WEIGHTS_SUFFIX}"
    save_weights(path, weights, config, provenance)
    return path


def refresh_evaluation(
    name: str, comparison_dir: Path, learned_label: str | None = None, out_dir: Path | None = None
) -> Path:
    """Replaces the stored test figures of shipped optimizer `name` with those of a new
    `l2l compare` of it (e.g. against more baselines); weights and check figure stay as they are."""
    weights, config, provenance = load_weights(pretrained_path(name))
    provenance = {**provenance, "evaluation": evaluation_figures(comparison_dir, learned_label)}
    path = (out_dir or weights_dir()) / f"{name}{WEIGHTS_SUFFIX}"
    save_weights(path, weights, config, provenance)
    return path
