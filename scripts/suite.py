"""The held-out suite of issue 18: the `general` optimizer against the five tuned baselines on
tasks outside its training mixture and on the paper's own tasks, next to the paper-task optimizer.

Each task is one shipped config, run as `l2l compare --config TASK --learned GENERAL --learned
SPECIALIST` on test problems of `--test-seed`, every baseline tuned on that task's training
problems. The table gives each learned optimizer's mean final loss over the best tuned
baseline's with a paired 95% bootstrap CI, and counts the tasks `general` wins (CI below 1).

    python scripts/suite.py --general runs/general --test-seed 868686 --out runs/suite

Finished comparisons in --out are reused, so an interrupted suite resumes.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ablation import l2l, paired_ratio, ratio_cell

from l2lgd.results import GRID_EDGE, load_comparison

SUITE = {
    "quadratic": "quadratic",
    "suite_quadratic_50d": "quadratic",
    "suite_quadratic_condition100": "quadratic",
    "suite_quadratic_scale1e4": "quadratic",
    "mnist": "mnist",
    "suite_mnist_3layers": "mnist",
    "suite_mnist_80units_flax": "mnist",
    "suite_mnist_batch32_tanh": "mnist",
    "suite_mnist_relu_init_std": "mnist",
}
"""Each task's config, and the shipped optimizer meta-trained for its family (the specialist)."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--general", default="general", help="run folder, file or shipped name")
    parser.add_argument("--test-seed", type=int, required=True)
    parser.add_argument("--tasks", default="", help="comma-separated subset (default: all)")
    parser.add_argument("--out", type=Path, default=Path("runs/suite"))
    args = parser.parse_args()
    chosen = [task for task in args.tasks.split(",") if task] or list(SUITE)
    rows, wins, tasks = [], 0, {}
    for task in chosen:
        specialist = SUITE[task]
        out = args.out / task
        if not (out / "curves.json").exists():
            l2l(
                "compare", "--config", task, "--learned", args.general, "--learned", specialist,
                "--test-seed", str(args.test_seed), "--out", str(out), "--force",
            )  # fmt: skip
        comparison = load_comparison(out)
        general, special = (result.label for result in comparison.learned())
        best = comparison.best_baseline()
        reference = best.label
        ratio = paired_ratio(comparison, general, reference)
        wins += ratio is not None and ratio[2] < 1
        tasks[task] = {
            "best_baseline": reference,
            **dict(zip(("ratio", "low", "high"), ratio or (None, None, None), strict=True)),
        }
        rows.append(
            f"| {task} | {reference}{f' ({GRID_EDGE})' * best.tuned_on_grid_edge} | "
            f"{ratio_cell(comparison, general, reference)} | "
            f"{ratio_cell(comparison, special, reference)} ({specialist}) |"
        )
    lines = [
        f"Final loss / best tuned baseline, paired 95% CI; test seed {args.test_seed}; "
        f"general wins (CI below 1) on {wins} of {len(rows)} tasks.",
        "",
        "| task | best baseline | general | paper-task optimizer |",
        "|---|---|---|---|",
        *rows,
    ]
    table = "\n".join(lines)
    (args.out / "suite.md").write_text(table + "\n")
    summary = {"test_seed": args.test_seed, "wins": wins, "tasks": tasks}
    (args.out / "suite.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(table)


if __name__ == "__main__":
    main()
