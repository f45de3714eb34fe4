"""Each optimizer of a comparison against a reference one, paired on the same test problems.

Reads a `curves.json` written by `l2l compare` and prints, per optimizer, the mean final loss,
its 95% CI, and the ratio of its mean final loss to the reference's with a 95% bootstrap CI
(problems resampled with replacement, the same resample for both, so problem-to-problem spread
shared by the two cancels). A ratio CI that excludes 1 is a difference the test set resolves.

    python scripts/paired_ratios.py runs/variants-quadratic/curves.json --reference "LSTM (quadratic)"
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def bootstrap_ratio_ci(
    losses: np.ndarray, reference: np.ndarray, resamples: int, seed: int
) -> tuple[float, float]:
    """The 2.5% and 97.5% quantiles of mean(losses) / mean(reference) over paired resamples."""
    rng = np.random.default_rng(seed)
    index = rng.integers(0, len(losses), size=(resamples, len(losses)))
    ratios = losses[index].mean(axis=1) / reference[index].mean(axis=1)
    low, high = np.quantile(ratios, [0.025, 0.975])
    return float(low), float(high)


def ratio_table(curves: dict, reference: str, resamples: int = 10_000, seed: int = 0) -> str:
    """A Markdown table: optimizer, mean final loss, 95% CI, ratio to `reference` and its CI."""
    optimizers = curves["optimizers"]
    if reference not in optimizers:
        raise SystemExit(f"no optimizer {reference!r}; have: {', '.join(optimizers)}")
    base = np.asarray(optimizers[reference]["final_losses"], np.float64)
    lines = [
        f"| optimizer | mean final loss | 95% CI | ratio to {reference} | 95% CI (paired) |",
        "|---|---|---|---|---|",
    ]
    for name, summary in optimizers.items():
        losses = np.asarray(summary["final_losses"], np.float64)
        mean, half = summary["final_mean"], summary["final_ci95"]
        if mean is None or not np.all(np.isfinite(losses)):
            diverged = int(np.sum(~np.isfinite(losses)))
            lines.append(f"| {name} | diverged on {diverged} of {len(losses)} | | | |")
            continue
        low, high = bootstrap_ratio_ci(losses, base, resamples, seed)
        lines.append(
            f"| {name} | {mean:.4g} | [{mean - half:.4g}, {mean + half:.4g}] | "
            f"{losses.mean() / base.mean():.3f} | [{low:.3f}, {high:.3f}] |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("curves", type=Path, help="a curves.json from l2l compare")
    parser.add_argument("--reference", required=True, help="the optimizer label to divide by")
    parser.add_argument("--resamples", type=int, default=10_000)
    args = parser.parse_args()
    curves = json.loads(args.curves.read_text())
    print(
        f"{curves['task']}: {curves['num_problems']} problems, test seed {curves['test_seed']}, "
        f"final step {curves['num_steps']}\n"
    )
    print(ratio_table(curves, args.reference, args.resamples))


if __name__ == "__main__":
    main()
