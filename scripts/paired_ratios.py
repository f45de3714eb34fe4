"""Each optimizer of a comparison against a reference one, paired on the same test problems.

Reads a `curves.json` written by `l2l compare` and prints, per optimizer, the mean final loss,
its 95% CI, and the ratio of its mean final loss to the reference's with a 95% bootstrap CI
(problems resampled with replacement, the same resample for both, so problem-to-problem spread
shared by the two cancels). A ratio CI that excludes 1 is a difference the test set resolves.

    python scripts/paired_ratios.py runs/variants-quadratic/curves.json --reference "LSTM (quadratic)"

Several comparisons run on the same test problems (same task config, test seed, number of
problems and steps) are read as one, so that an optimizer trained later is paired with baselines
tuned in an earlier `l2l compare` (run the later one with `--baselines ""`):

    python scripts/paired_ratios.py runs/compare-baselines runs/compare-new --reference nag \
        --save runs/compare-both   # one l2l compare folder: curves.json, tuning.json, summary.md
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import numpy as np

from l2lgd.results import Comparison, load_comparison, save_comparison


def bootstrap_ratio_ci(
    losses: np.ndarray, reference: np.ndarray, resamples: int, seed: int
) -> tuple[float, float]:
    """The 2.5% and 97.5% quantiles of mean(losses) / mean(reference) over paired resamples."""
    rng = np.random.default_rng(seed)
    index = rng.integers(0, len(losses), size=(resamples, len(losses)))
    ratios = losses[index].mean(axis=1) / reference[index].mean(axis=1)
    low, high = np.quantile(ratios, [0.025, 0.975])
    return float(low), float(high)


def ratio_table(
    comparison: Comparison, reference: str, resamples: int = 10_000, seed: int = 0
) -> str:
    """A Markdown table: optimizer, mean final loss, 95% CI, ratio to `reference` and its CI."""
    if reference not in comparison.labels:
        raise SystemExit(f"no optimizer {reference!r}; have: {', '.join(comparison.labels)}")
    base = comparison.optimizer(reference).final_losses
    lines = [
        f"| optimizer | mean final loss | 95% CI | ratio to {reference} | 95% CI (paired) |",
        "|---|---|---|---|---|",
    ]
    for result in comparison.optimizers:
        losses, mean, half = result.final_losses, result.final_mean, result.final_ci95
        if result.diverged or not np.all(np.isfinite(losses)):
            diverged = int(np.sum(~np.isfinite(losses)))
            lines.append(f"| {result.label} | diverged on {diverged} of {len(losses)} | | | |")
            continue
        low, high = bootstrap_ratio_ci(losses, base, resamples, seed)
        lines.append(
            f"| {result.label} | {mean:.4g} | [{mean - half:.4g}, {mean + half:.4g}] | "
            f"{losses.mean() / base.mean():.3f} | [{low:.3f}, {high:.3f}] |"
        )
    return "\n".join(lines)


SAME_PROBLEMS = ("task", "test_seed", "num_problems", "num_steps")
"""What two comparisons must share to have evaluated the same test problems (with the task's
config, which defines the problem family)."""


def merged(comparisons: list[Comparison]) -> Comparison:
    """One comparison holding every optimizer of `comparisons`, which must have run on the same
    test problems; an error names the first field that differs, or a label seen twice."""
    first, labels = comparisons[0], []
    for other in comparisons:
        for field in SAME_PROBLEMS:
            if getattr(other, field) != getattr(first, field):
                raise SystemExit(
                    f"not the same test problems: {field} {getattr(first, field)!r} against "
                    f"{getattr(other, field)!r}"
                )
        if (other.config or {}).get("task") != (first.config or {}).get("task"):
            raise SystemExit("not the same test problems: the task configs differ")
        labels += other.labels
    twice = sorted({label for label in labels if labels.count(label) > 1})
    if twice:
        raise SystemExit(f"an optimizer in two comparisons: {', '.join(twice)}")
    optimizers = tuple(result for other in comparisons for result in other.optimizers)
    return dataclasses.replace(first, optimizers=optimizers)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "curves",
        type=Path,
        nargs="+",
        help="curves.json files (or folders) of l2l compare runs on the same test problems",
    )
    parser.add_argument("--reference", required=True, help="the optimizer label to divide by")
    parser.add_argument("--resamples", type=int, default=10_000)
    parser.add_argument("--save", type=Path, help="write the merged comparison to this folder")
    args = parser.parse_args()
    comparison = merged([load_comparison(path) for path in args.curves])
    if args.save:
        save_comparison(args.save, comparison)
    print(f"{comparison.heading()}\n")
    print(ratio_table(comparison, args.reference, args.resamples))


if __name__ == "__main__":
    main()
