"""Figures in the paper's style: loss against step on a log axis, mean curve and shaded 95% CI per optimizer."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from l2lgd import runs  # noqa: E402
from l2lgd.errors import L2LError  # noqa: E402
from l2lgd.results import CURVES_FILE, load_comparison  # noqa: E402

FIGURE_NAME = "loss"


def find_curves(path: Path) -> Path:
    """The curves.json of a comparison folder, or of a run folder's evaluation."""
    for candidate in (
        path / CURVES_FILE,
        path / "eval" / CURVES_FILE,
        path / "compare" / CURVES_FILE,
    ):
        if candidate.is_file():
            return candidate
    raise L2LError(
        f"no {CURVES_FILE} in {path}: run `l2l evaluate` or `l2l compare` with --out {path} first"
    )


def plot_curves(
    curves_path: Path, out_dir: Path | None = None, title: str | None = None
) -> list[Path]:
    """Draws every optimizer of a curves.json; writes loss.png and loss.pdf next to it (or in out_dir)."""
    comparison = load_comparison(curves_path)
    out_dir = out_dir or curves_path.parent
    out_dir.mkdir(parents=True, exist_ok=True)
    figure, axis = plt.subplots(figsize=(5.5, 4.0))
    means = []
    for result in comparison.optimizers:
        mean, ci = result.mean, result.ci95  # NaN where diverged: matplotlib leaves it out
        steps = np.arange(mean.size)
        means.append(mean)
        name = result.label if result.learned else f"{result.label} (lr {result.learning_rate:.2g})"
        (line,) = axis.plot(steps, mean, label=name, linewidth=1.6)
        axis.fill_between(
            steps,
            np.maximum(mean - ci, mean / 100),
            mean + ci,
            color=line.get_color(),
            alpha=0.2,
            linewidth=0,
        )
    axis.set_yscale("log")
    axis.set_ylim(*_loss_limits(means))
    axis.set_xlabel("step")
    axis.set_ylabel("loss")
    axis.set_title(
        title
        or f"{comparison.task}: mean over {comparison.num_problems} test problems (shaded: 95% CI)",
        fontsize=9,
    )
    axis.legend(fontsize=8)
    axis.grid(True, which="both", alpha=0.3)
    figure.tight_layout()
    written = [out_dir / f"{FIGURE_NAME}.{suffix}" for suffix in ("png", "pdf")]
    for path in written:
        figure.savefig(path, dpi=150)
    plt.close(figure)
    return written


def plot_meta_training(run_dir: Path, out_dir: Path | None = None) -> list[Path]:
    """Meta-loss and validation loss against meta-iteration, from a run's metrics.jsonl; the
    figures go into the run folder (or out_dir)."""
    records = runs.read_metrics(run_dir)
    if not records:
        raise L2LError(f"{run_dir} has no metrics to plot")
    figure, axis = plt.subplots(figsize=(5.5, 4.0))
    for key, label in (
        ("meta_loss", "meta-loss (summed loss per unroll)"),
        ("validation_loss", "validation loss (mean at the last step)"),
    ):
        points = [(r["iteration"], r[key]) for r in records if r.get(key) is not None]
        if points:
            axis.plot(
                *zip(*points, strict=True), label=label, marker="." if key != "meta_loss" else None
            )
    axis.set_yscale("log")
    axis.set_xlabel("meta-iteration")
    axis.set_ylabel("loss")
    axis.legend(fontsize=8)
    axis.grid(True, which="both", alpha=0.3)
    figure.tight_layout()
    out_dir = out_dir or run_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    written = [out_dir / f"meta_training.{suffix}" for suffix in ("png", "pdf")]
    for path in written:
        figure.savefig(path, dpi=150)
    plt.close(figure)
    return written


def _loss_limits(means: list[np.ndarray]) -> tuple[float, float]:
    """Y-limits that show every converging curve; a diverging one leaves the top of the plot."""
    finite = np.concatenate([m[np.isfinite(m) & (m > 0)] for m in means])
    start = max(float(m[0]) for m in means if np.isfinite(m[0]))
    return float(finite.min()) / 2, 3 * max(start, float(np.median(finite)))
