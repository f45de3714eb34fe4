"""Which LSTM inputs generalize: meta-train one optimizer per preprocessing variant, then compare
each with the five tuned baselines on validation problems inside and outside the training family.

Every variant is meta-trained with the same task config and seed (`l2l meta-train`); every
setting is one `l2l compare` of all variants on the same validation problems (a seed kept for
choosing designs, never a test seed), its baselines tuned on training problems of that setting.
The table gives each variant's mean final loss over the best tuned baseline's, with a paired
95% bootstrap CI (`scripts/paired_ratios.py`): below 1 the learned optimizer wins.

    python scripts/ablation.py --task quadratic --iterations 1000 --out runs/ablation-quadratic

Finished runs and comparisons in --out are reused, so an interrupted ablation resumes.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from paired_ratios import bootstrap_ratio_ci

from l2lgd.results import Comparison, load_comparison

VARIANTS = {
    "quadratic": {
        "none": ["optimizer.preprocessing=none", "optimizer.output_scale=1.0"],
        "log_sign": ["optimizer.preprocessing=log_sign", "optimizer.output_scale=0.1"],
        "normalized": ["optimizer.preprocessing=normalized", "optimizer.output_scale=0.1"],
        "normalized_momenta": [
            "optimizer.preprocessing=normalized",
            "optimizer.momentum_decays=[0.5,0.9,0.99]",
            "optimizer.output_scale=0.1",
        ],
    },
    "mnist": {
        "log_sign": ["optimizer.preprocessing=log_sign"],
        "normalized": ["optimizer.preprocessing=normalized"],
        "normalized_momenta": [
            "optimizer.preprocessing=normalized",
            "optimizer.momentum_decays=[0.5,0.9,0.99]",
        ],
    },
}
"""Per task, each variant's config overrides on top of the task's shipped config."""

SETTINGS = {
    "quadratic": {
        "training family": [],
        "loss x 0.01": ["task.loss_scale=0.01"],
        "loss x 100": ["task.loss_scale=100"],
        "50-d": ["task.dim=50"],
        "condition 100": ["task.variant=conditioned", "task.condition_number=100"],
    },
    "mnist": {
        "training family": [],
        "tanh": ["task.activation=tanh"],
        "relu": ["task.activation=relu"],
        "flax init": ["task.init=flax"],
        "2 layers": ["task.hidden_sizes=[20,20]"],
    },
}
"""Per task, the validation settings: overrides of the task's config, the first the training family."""


def l2l(*args: str) -> None:
    """Runs one `l2l` command, its output passed through; a failure stops the ablation."""
    print("$ l2l " + " ".join(args), flush=True)
    subprocess.run([sys.executable, "-m", "l2lgd", *args], check=True)


def sets(overrides: list[str]) -> list[str]:
    """`--set` arguments for config overrides."""
    return [arg for override in overrides for arg in ("--set", override)]


def train(task: str, name: str, overrides: list[str], args: argparse.Namespace) -> Path:
    """Meta-trains one variant (unless its run has finished) and returns its run folder."""
    run = args.out / "train" / name
    if not (run / "eval" / "summary.md").exists():
        budget = [f"meta.iterations={args.iterations}", *args.set]
        l2l(
            "meta-train", "--task", task, "--seed", str(args.seed), "--out", str(run),
            *(["--resume"] if run.exists() else []), *sets([*overrides, *budget]),
        )  # fmt: skip
    return run


def compare(task: str, setting: str, overrides: list[str], runs: list[Path], args) -> Comparison:
    """All variants and the tuned baselines on one setting's validation problems."""
    out = args.out / "compare" / setting.replace(" ", "_")
    if not (out / "curves.json").exists():
        learned = [arg for run in runs for arg in ("--learned", str(run))]
        l2l(
            "compare", "--task", task, "--test-seed", str(args.validation_seed),
            "--out", str(out), "--force", *learned, *sets([*overrides, *args.set]),
        )  # fmt: skip
    return load_comparison(out)


def best_validation(run: Path) -> float:
    """The lowest validation loss the run's meta-training logged."""
    lines = (run / "metrics.jsonl").read_text().splitlines()
    values = [json.loads(line).get("validation_loss") for line in lines]
    return min(value for value in values if value is not None)


def paired_ratio(
    comparison: Comparison, label: str, reference: str
) -> tuple[float, float, float] | None:
    """(ratio, CI low, CI high) of the label's mean final loss over the reference's, paired on
    the same problems; None if the label diverged on any problem."""
    losses = comparison.optimizer(label).final_losses
    if not np.all(np.isfinite(losses)):
        return None
    base = comparison.optimizer(reference).final_losses
    low, high = bootstrap_ratio_ci(losses, base, 10_000, 0)
    return float(losses.mean() / base.mean()), low, high


def ratio_cell(comparison: Comparison, label: str, reference: str) -> str:
    """`ratio [low, high]` (`paired_ratio`), or how often the label diverged."""
    ratio = paired_ratio(comparison, label, reference)
    if ratio is None:
        losses = comparison.optimizer(label).final_losses
        return f"diverged on {int(np.sum(~np.isfinite(losses)))}"
    return "{:.2f} [{:.2f}, {:.2f}]".format(*ratio)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", choices=sorted(VARIANTS), default="quadratic")
    parser.add_argument("--iterations", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0, help="meta-training seed")
    parser.add_argument("--validation-seed", type=int, default=900001)
    parser.add_argument("--variants", default="", help="comma-separated subset (default: all)")
    parser.add_argument("--settings", default="", help="comma-separated subset (default: all)")
    parser.add_argument("--set", action="append", default=[], help="override for every run")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    args.out = args.out or Path(f"runs/ablation-{args.task}")
    chosen = [name for name in args.variants.split(",") if name] or list(VARIANTS[args.task])
    settings = {
        name: overrides
        for name, overrides in SETTINGS[args.task].items()
        if not args.settings or name in args.settings.split(",")
    }
    runs = {name: train(args.task, name, VARIANTS[args.task][name], args) for name in chosen}
    labels = {name: f"LSTM ({name})" for name in chosen}
    header = ["variant", "best validation loss (training family)", *settings]
    rows = {name: [name, f"{best_validation(run):.4g}"] for name, run in runs.items()}
    references = []
    for setting, overrides in settings.items():
        comparison = compare(args.task, setting, overrides, list(runs.values()), args)
        reference = comparison.best_baseline().label
        references.append(f"{setting}: {reference}")
        for name, label in labels.items():
            rows[name].append(ratio_cell(comparison, label, reference))
    lines = [
        f"Final loss / best tuned baseline, paired 95% CI; {args.task}, validation seed "
        f"{args.validation_seed}, {args.iterations} meta-iterations, meta-training seed {args.seed}.",
        f"Best baseline per setting: {'; '.join(references)}.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(row) + " |" for row in rows.values()),
    ]
    table = "\n".join(lines)
    (args.out / "ablation.md").write_text(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
