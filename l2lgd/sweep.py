"""The paper's Figure 6: final loss against the MLP optimizee's architecture, for a learned
optimizer meta-trained on one architecture and for baselines tuned on each.

Every architecture (hidden layers x units per layer) is one `l2l compare` into its own folder;
a folder whose `curves.json` was made with the same config is reused, so a cut sweep resumes.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from l2lgd.compare import compare
from l2lgd.config import Config, config_from_dict
from l2lgd.results import CURVES_FILE, Comparison, json_float, load_comparison
from l2lgd.sources import LearnedOptimizer

SWEEP_FILE = "sweep.json"


def architecture_config(config: Config, depth: int, width: int) -> Config:
    """`config` with an MLP of `depth` hidden layers of `width` units."""
    task = dataclasses.replace(config.task, hidden_sizes=(width,) * depth)
    return dataclasses.replace(config, task=task)


def architecture_sweep(
    config: Config,
    learned: list[LearnedOptimizer],
    baselines: list[str],
    depths: list[int],
    widths: list[int],
    out_dir: Path,
) -> dict[str, Any]:
    """Compares every optimizer on every architecture; returns and writes `sweep.json`.

    The result maps each optimizer's label to rows {depth, width, final_mean, final_ci95}.
    """
    results: dict[str, list[dict[str, Any]]] = {}
    for depth in depths:
        for width in widths:
            arch_config = architecture_config(config, depth, width)
            arch_dir = out_dir / f"{depth}x{width}"
            for result in _comparison(arch_config, learned, baselines, arch_dir).optimizers:
                results.setdefault(result.label, []).append(
                    {
                        "depth": depth,
                        "width": width,
                        "final_mean": json_float(result.final_mean),
                        "final_ci95": json_float(result.final_ci95),
                        "learning_rate": result.learning_rate,
                    }
                )
    sweep = {
        "task": config.task.name,
        "activation": config.task.activation,
        "test_seed": config.eval.seed,
        "num_problems": config.eval.num_problems,
        "num_steps": config.eval.num_steps,
        "optimizers": results,
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / SWEEP_FILE).write_text(json.dumps(sweep, indent=1))
    return sweep


def _comparison(
    config: Config, learned: list[LearnedOptimizer], baselines: list[str], out_dir: Path
) -> Comparison:
    """The comparison in out_dir, computed unless it exists for `config` and the same
    optimizers."""
    if (out_dir / CURVES_FILE).is_file():
        comparison = load_comparison(out_dir)
        labels = {item.label for item in learned}
        same_config = (
            comparison.config is not None and config_from_dict(comparison.config) == config
        )
        if same_config and labels <= set(comparison.labels):
            return comparison
    compare(config, baselines, learned, out_dir)
    return load_comparison(out_dir)


def plot_sweep(sweep: dict[str, Any], path: Path) -> Path:
    """Final mean loss (95% CI) against units per layer, one panel per depth, one line per
    optimizer; diverged runs are left out."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    depths = sorted({row["depth"] for rows in sweep["optimizers"].values() for row in rows})
    figure, axes = plt.subplots(1, len(depths), figsize=(4 * len(depths), 3.2), squeeze=False)
    for axis, depth in zip(axes[0], depths, strict=True):
        for label, rows in sweep["optimizers"].items():
            points = [r for r in rows if r["depth"] == depth and r["final_mean"] is not None]
            axis.errorbar(
                [r["width"] for r in points],
                [r["final_mean"] for r in points],
                yerr=[r["final_ci95"] or 0.0 for r in points],
                label=label,
                marker="o",
                markersize=3,
                capsize=2,
                linewidth=1,
            )
        axis.set_xscale("log", base=2)
        axis.set_xlabel("hidden units per layer")
        axis.set_title(f"{depth} hidden layer{'s' if depth > 1 else ''}", fontsize=9)
    axes[0][0].set_ylabel(f"final loss (step {sweep['num_steps']})")
    axes[0][0].legend(fontsize=7)
    figure.suptitle(
        f"{sweep['task']} ({sweep['activation']}): {sweep['num_problems']} test problems, "
        f"test seed {sweep['test_seed']}",
        fontsize=10,
    )
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path
