"""A comparison's results as typed objects, saved to and loaded from a folder a person can read.

A comparison folder holds `curves.json` (the task, test seed, problems, steps and config, and per
optimizer its learning rate, mean loss curve with its 95% CI, per-problem final losses and test
metrics), `tuning.json` (each baseline's learning-rate search) and `summary.md` (the table).
Plots, reports, the shipped optimizers' figures and the scripts read results here and only here,
so that "learned", "diverged" and "ratio to the best baseline" mean one thing everywhere.

JSON has no inf or NaN: a diverged value is written as null and loaded as NaN.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from l2lgd.evaluate import CurveSummary, ci95_half_width
from l2lgd.jsonsafe import json_safe

CURVES_FILE = "curves.json"
SUMMARY_FILE = "summary.md"
GRID_EDGE = "grid edge"
GRID_EDGE_NOTE = (
    f"{GRID_EDGE}: the tuned rate is the last one tried on its side of the grid (every rate "
    "diverged, or the grid's extensions ran out), so that baseline may be under-tuned: widen "
    "eval.lr_min / eval.lr_max."
)
TUNING_FILE = "tuning.json"


@dataclass(frozen=True, eq=False)
class MetricResult:
    """One test-set metric of an optimizer: its mean over problems with the 95% CI half-width,
    and each problem's value."""

    mean: float
    ci95: float
    per_problem: np.ndarray


@dataclass(frozen=True, eq=False)
class OptimizerResult:
    """One optimizer's results on a comparison's test problems (NaN where it diverged).

    `learning_rate` is a baseline's (tuned) rate and None for a learned optimizer; `tuning` is a
    tuned baseline's learning-rate search as tuning.json records it.
    """

    label: str
    learning_rate: float | None
    mean: np.ndarray
    ci95: np.ndarray
    final_mean: float
    final_ci95: float
    final_losses: np.ndarray
    test_metrics: dict[str, MetricResult] = field(default_factory=dict)
    tuning: dict[str, Any] | None = None

    @property
    def learned(self) -> bool:
        """Whether a learned optimizer made these results (a baseline has a learning rate)."""
        return self.learning_rate is None

    @property
    def diverged(self) -> bool:
        """Whether the final loss is inf or NaN on some test problem."""
        return not math.isfinite(self.final_mean)

    @property
    def tuned_on_grid_edge(self) -> bool:
        """Whether this baseline's tuned rate is the last its search tried on one side (the
        extensions ran out, or every rate diverged): a better rate may lie beyond it."""
        return self.tuning is not None and not self.tuning.get("best_is_interior", True)

    @classmethod
    def from_summary(
        cls, summary: CurveSummary, tuning: dict[str, Any] | None = None
    ) -> OptimizerResult:
        """The results of an evaluated optimizer, with its learning-rate search if tuned."""
        return cls(
            label=summary.label,
            learning_rate=summary.learning_rate,
            mean=_nan_for_inf(summary.mean_curve()),
            ci95=_nan_for_inf(summary.ci95_curve()),
            final_mean=_nan_for_inf(summary.final_mean()).item(),
            final_ci95=_nan_for_inf(summary.final_ci95()).item(),
            final_losses=_nan_for_inf(summary.final_losses),
            test_metrics={
                name: MetricResult(
                    _nan_for_inf(values.mean()).item(),
                    _nan_for_inf(ci95_half_width(values)).item(),
                    _nan_for_inf(values),
                )
                for name, values in summary.test_metrics.items()
            },
            tuning=None if tuning is None else json_safe(tuning),
        )


@dataclass(frozen=True, eq=False)
class Comparison:
    """Optimizers evaluated on the same held-out test problems.

    `config` is the resolved config as plain values; `description` is one line on what the
    results depend on beyond the config's name (empty for most tasks). Files written before a
    field existed load with it as None (or empty).
    """

    task: str
    test_seed: int | None
    num_problems: int | None
    num_steps: int | None
    optimizers: tuple[OptimizerResult, ...]
    config: dict[str, Any] | None = None
    description: str = ""

    @property
    def labels(self) -> list[str]:
        """The optimizers' labels, in the order they were evaluated."""
        return [result.label for result in self.optimizers]

    def optimizer(self, label: str) -> OptimizerResult:
        """The results of the optimizer labelled `label`."""
        for result in self.optimizers:
            if result.label == label:
                return result
        raise KeyError(f"no optimizer {label!r}; have: {', '.join(self.labels)}")

    def learned(self) -> list[OptimizerResult]:
        """The learned optimizers' results, in order."""
        return [result for result in self.optimizers if result.learned]

    def baselines(self) -> list[OptimizerResult]:
        """The baselines' results, in order."""
        return [result for result in self.optimizers if not result.learned]

    def best_baseline(self) -> OptimizerResult | None:
        """The baseline with the lowest final mean loss; None if every baseline diverged (or
        there is none)."""
        finite = [result for result in self.baselines() if not result.diverged]
        return min(finite, key=lambda result: result.final_mean, default=None)

    def ratio_to_best_baseline(self, result: OptimizerResult) -> float:
        """`result`'s final mean loss over the best baseline's: inf if `result` diverged, NaN
        if there is no finite positive best baseline to divide by."""
        best = self.best_baseline()
        if best is None or best.final_mean <= 0:
            return math.nan
        return math.inf if result.diverged else result.final_mean / best.final_mean

    def heading(self) -> str:
        """One line on what was compared: task, test problems, seed and steps."""
        return (
            f"{self.task}: {self.num_problems} held-out problems (test seed {self.test_seed}), "
            f"{self.num_steps} steps"
        )


def save_comparison(out_dir: Path, comparison: Comparison) -> None:
    """Writes curves.json, tuning.json and summary.md into `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / CURVES_FILE).write_text(json.dumps(comparison_document(comparison), indent=1))
    tuning = {r.label: r.tuning for r in comparison.optimizers if r.tuning is not None}
    (out_dir / TUNING_FILE).write_text(json.dumps(tuning, indent=1))
    (out_dir / SUMMARY_FILE).write_text(summary_markdown(comparison))


def load_comparison(path: Path) -> Comparison:
    """The comparison of a folder (or of its curves.json), with tuning.json's searches if there."""
    curves_path = path / CURVES_FILE if path.is_dir() else path
    tuning_path = curves_path.parent / TUNING_FILE
    tuning = json.loads(tuning_path.read_text()) if tuning_path.is_file() else {}
    return comparison_from_document(json.loads(curves_path.read_text()), tuning)


def comparison_document(comparison: Comparison) -> dict[str, Any]:
    """The comparison as curves.json holds it (JSON values, null where diverged)."""
    return {
        "task": comparison.task,
        "num_problems": comparison.num_problems,
        "num_steps": comparison.num_steps,
        "test_seed": comparison.test_seed,
        "config": comparison.config,
        "description": comparison.description,
        "optimizers": {
            result.label: {
                "learning_rate": result.learning_rate,
                "mean": _json_floats(result.mean),
                "ci95": _json_floats(result.ci95),
                "final_mean": json_float(result.final_mean),
                "final_ci95": json_float(result.final_ci95),
                "final_losses": _json_floats(result.final_losses),
                "test_metrics": {
                    name: {
                        "mean": json_float(metric.mean),
                        "ci95": json_float(metric.ci95),
                        "per_problem": _json_floats(metric.per_problem),
                    }
                    for name, metric in result.test_metrics.items()
                },
            }
            for result in comparison.optimizers
        },
    }


def comparison_from_document(
    document: dict[str, Any], tuning: dict[str, Any] | None = None
) -> Comparison:
    """The comparison a curves.json document holds, with `tuning` (tuning.json's searches).

    Each optimizer needs its learning rate and final mean; other keys missing from a file
    written by hand or by older code load as empty.
    """
    tuning = tuning or {}
    return Comparison(
        task=document.get("task", ""),
        test_seed=document.get("test_seed"),
        num_problems=document.get("num_problems"),
        num_steps=document.get("num_steps"),
        optimizers=tuple(
            _optimizer_from_entry(label, entry, tuning.get(label))
            for label, entry in document["optimizers"].items()
        ),
        config=document.get("config"),
        description=document.get("description", ""),
    )


def _optimizer_from_entry(
    label: str, entry: dict[str, Any], tuning: dict[str, Any] | None
) -> OptimizerResult:
    """One optimizer of a curves.json document."""
    return OptimizerResult(
        label=label,
        learning_rate=entry["learning_rate"],
        mean=_array(entry.get("mean", [])),
        ci95=_array(entry.get("ci95", [])),
        final_mean=_float(entry["final_mean"]),
        final_ci95=_float(entry.get("final_ci95")),
        final_losses=_array(entry.get("final_losses", [])),
        test_metrics={
            name: MetricResult(
                _float(metric["mean"]), _float(metric["ci95"]), _array(metric["per_problem"])
            )
            for name, metric in entry.get("test_metrics", {}).items()
        },
        tuning=tuning,
    )


def summary_markdown(comparison: Comparison) -> str:
    """summary.md: a heading, the description if any, and the table."""
    description = f"{comparison.description}\n\n" if comparison.description else ""
    return f"# {comparison.heading()}\n\n{description}{summary_table(comparison)}"


def summary_table(comparison: Comparison) -> str:
    """A Markdown table of final mean losses with 95% CIs, the ratio to the best baseline and
    the test metrics; a diverged optimizer's row says so."""
    metric_names = sorted({name for r in comparison.optimizers for name in r.test_metrics})
    header = ["optimizer", "learning rate", f"mean loss at step {comparison.num_steps}", "95% CI"]
    header += ["ratio to best baseline", *(f"{name} (95% CI)" for name in metric_names)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for result in comparison.optimizers:
        lr = "learned" if result.learned else f"{result.learning_rate:.3g}"
        if result.tuned_on_grid_edge:
            lr += f" ({GRID_EDGE})"
        cells = [result.label, lr, *_final_loss_cells(comparison, result)]
        for name in metric_names:
            metric = result.test_metrics.get(name)
            cells.append("" if metric is None else f"{metric.mean:.4g} ± {metric.ci95:.2g}")
        lines.append("| " + " | ".join(cells) + " |")
    if any(result.tuned_on_grid_edge for result in comparison.optimizers):
        lines += ["", GRID_EDGE_NOTE]
    return "\n".join(lines) + "\n"


def _final_loss_cells(comparison: Comparison, result: OptimizerResult) -> list[str]:
    """The table's mean, CI and ratio cells of one optimizer."""
    if result.diverged:
        return ["diverged", "", ""]
    mean, ci = result.final_mean, result.final_ci95
    ratio = comparison.ratio_to_best_baseline(result)
    return [
        f"{mean:.4g}",
        f"[{mean - ci:.4g}, {mean + ci:.4g}]",
        f"{ratio:.3f}" if math.isfinite(ratio) else "",
    ]


def figures_record(comparison: Comparison, learned: OptimizerResult) -> dict[str, Any]:
    """The headline figures of one learned optimizer of a comparison, as the shipped weights'
    provenance stores them under `evaluation`: its final mean loss with the 95% CI and test
    metric means, each baseline's, and the ratio to the best baseline (null if none)."""
    return {
        "test_seed": comparison.test_seed,
        "num_problems": comparison.num_problems,
        "num_steps": comparison.num_steps,
        "learned": _figures(learned),
        "baselines": {result.label: _figures(result) for result in comparison.baselines()},
        "ratio_to_best_baseline": json_float(comparison.ratio_to_best_baseline(learned)),
    }


def comparison_from_figures(record: dict[str, Any], learned_label: str = "learned") -> Comparison:
    """The comparison a `figures_record` summarizes: final figures only, no curves; the learned
    optimizer (whose label the record does not keep) is labelled `learned_label`."""
    baselines = [_result_from_figures(label, f) for label, f in record["baselines"].items()]
    return Comparison(
        task="",
        test_seed=record["test_seed"],
        num_problems=record["num_problems"],
        num_steps=record["num_steps"],
        optimizers=(_result_from_figures(learned_label, record["learned"]), *baselines),
    )


_FIGURE_KEYS = ("learning_rate", "final_mean", "final_ci95")


def _figures(result: OptimizerResult) -> dict[str, Any]:
    """An optimizer's learning rate, final mean loss, its CI and its test metrics' means."""
    figures = {
        "learning_rate": result.learning_rate,
        "final_mean": json_float(result.final_mean),
        "final_ci95": json_float(result.final_ci95),
    }
    for name, metric in result.test_metrics.items():
        figures[name] = json_float(metric.mean)
    return figures


def _result_from_figures(label: str, figures: dict[str, Any]) -> OptimizerResult:
    """The inverse of `_figures`, with empty curves (the figures do not keep them)."""
    empty = np.zeros(0)
    metrics = {
        name: MetricResult(_float(value), math.nan, empty)
        for name, value in figures.items()
        if name not in _FIGURE_KEYS
    }
    return OptimizerResult(
        label=label,
        learning_rate=figures["learning_rate"],
        mean=empty,
        ci95=empty,
        final_mean=_float(figures["final_mean"]),
        final_ci95=_float(figures["final_ci95"]),
        final_losses=empty,
        test_metrics=metrics,
    )


def _nan_for_inf(values: Any) -> np.ndarray:
    """Values as float64, NaN where not finite: what a save and a load give back."""
    values = np.asarray(values, np.float64)
    return np.where(np.isfinite(values), values, np.nan)


def _float(value: float | None) -> float:
    """A JSON number, or NaN for null."""
    return math.nan if value is None else float(value)


def _array(values: list[float | None]) -> np.ndarray:
    """A JSON list of numbers as float64, NaN for null."""
    return np.array([_float(value) for value in values], dtype=np.float64)


def json_float(value: float) -> float | None:
    """JSON has no inf or NaN: a diverged value is written as null."""
    return float(value) if math.isfinite(value) else None


def _json_floats(values: np.ndarray) -> list[float | None]:
    return [json_float(value) for value in np.asarray(values, np.float64)]
