"""`make reproduce`: every paper experiment l2lgd implements, from meta-training to figures and a report.

Each step writes into its own folder and is skipped when its outputs are there and current:
- a meta-training run is current when its config equals the profile's and it ran every
  iteration; a run that stopped part-way (a crash, a kill) is resumed from its latest checkpoint;
- a comparison is current when its stamp file records the same config, the same learned
  weights (sha256 of the weights file) and the same baselines.
The report, `REPORT.md`, is rewritten at the end from whatever results exist: one section per
paper figure, our figure beside the paper's claim, and a table per experiment.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from l2lgd import runs
from l2lgd.atomic import write_atomically
from l2lgd.compare import compare
from l2lgd.config import (
    SMOKE_OVERRIDES,
    Config,
    config_from_dict,
    config_to_dict,
    load_config,
    with_overrides,
)
from l2lgd.errors import CheckpointError, ConfigError, DataError, RunDirError
from l2lgd.locks import folder_lock
from l2lgd.meta.train import meta_train, read_training_state
from l2lgd.optimizers.baselines import BASELINE_NAMES
from l2lgd.plot import FIGURE_NAME, plot_curves
from l2lgd.pretrained import PRETRAINED_PREFIX, pretrained_names, pretrained_path
from l2lgd.results import CURVES_FILE, Comparison, OptimizerResult, load_comparison, summary_table
from l2lgd.sources import load_learned
from l2lgd.tasks import make_task

REPORT_FILE = "REPORT.md"
STAMP_FILE = "inputs.json"
BASELINES = BASELINE_NAMES  # every baseline l2lgd implements


@dataclass(frozen=True)
class Training:
    """One meta-training run: its name (the run folder, and the name of the optimizer l2lgd
    ships from this config, if it ships one) and its shipped config's name."""

    name: str
    config: str


@dataclass(frozen=True)
class Experiment:
    """One comparison of trained optimizers with the tuned baselines, as in one paper panel.

    `trainings` names the meta-training runs whose optimizers take part; the claim is about the
    first. `config` names a shipped config. `learned_wins` is the paper's claim: True if that optimizer ends below every tuned
    baseline, False where the paper reports it failing (MNIST with ReLU).
    """

    name: str
    figure: str
    claim: str
    config: str
    trainings: tuple[str, ...]
    learned_wins: bool = True


@dataclass(frozen=True)
class Profile:
    """A budget: config overrides by task name ("*": every task), for training and for comparing."""

    name: str
    description: str
    train: dict[str, tuple[str, ...]] = field(default_factory=dict)
    compare: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def overrides(self, stage: str, task: str) -> list[str]:
        table = self.train if stage == "train" else self.compare
        return [*table.get("*", ()), *table.get(task, ())]


TRAININGS = (
    Training("quadratic", "quadratic"),
    Training("quadratic_deepmind", "quadratic_deepmind"),
    Training("mnist", "mnist"),
    Training("cifar10", "cifar10"),
    Training("cifar10_sub", "cifar10_sub"),
)

EXPERIMENTS = (
    Experiment(
        "quadratic",
        "Figure 4, left",
        "On random 10-d quadratics the LSTM optimizer ends below SGD, RMSprop, Adam and NAG.",
        "quadratic",
        ("quadratic",),
    ),
    Experiment(
        "quadratic_deepmind",
        "Figure 4, left",
        "The same, on the original code's quadratics (W, y uniform in [0, 1)).",
        "quadratic_deepmind",
        ("quadratic_deepmind",),
    ),
    Experiment(
        "mnist",
        "Figure 4, center",
        "Training an MNIST MLP (20 sigmoid units) for 100 steps, the LSTM beats every baseline.",
        "mnist",
        ("mnist",),
    ),
    Experiment(
        "mnist_200steps",
        "Figure 4, right",
        "Run for 200 steps, twice its training horizon, the LSTM stays below the baselines.",
        "mnist_200steps",
        ("mnist",),
    ),
    Experiment(
        "mnist_40units",
        "Figure 5, left",
        "It generalizes to an MLP of 40 hidden units (trained on 20).",
        "mnist_40units",
        ("mnist",),
    ),
    Experiment(
        "mnist_2layers",
        "Figure 5, center",
        "It generalizes to an MLP of 2 hidden layers (trained on 1).",
        "mnist_2layers",
        ("mnist",),
    ),
    Experiment(
        "mnist_relu",
        "Figure 5, right",
        "It does *not* generalize to ReLU units (trained on sigmoid): it ends above the baselines.",
        "mnist_relu",
        ("mnist",),
        learned_wins=False,
    ),
    Experiment(
        "cifar10",
        "Figure 7, left",
        "On CIFAR-10 the LSTM (one LSTM for conv, one for fc parameters) is about level with NAG.",
        "cifar10",
        ("cifar10", "cifar10_sub"),
    ),
    Experiment(
        "cifar5",
        "Figure 7, center",
        "On CIFAR-5 the LSTM ends below every baseline; LSTM-sub, trained on other labels, too.",
        "cifar5",
        ("cifar10", "cifar10_sub"),
    ),
    Experiment(
        "cifar2",
        "Figure 7, right",
        "On CIFAR-2 the LSTM ends below every baseline; LSTM-sub, trained on other labels, too.",
        "cifar2",
        ("cifar10", "cifar10_sub"),
    ),
)

PROFILES = {
    "default": Profile(
        "default",
        "for a 2-core CPU (about 1.5 hours): the quadratics at full budget; MNIST meta-trained for "
        "500 iterations instead of 1,000, and its baselines tuned on a grid of 2 learning rates "
        "per decade instead of 4; the CIFAR optimizers meta-trained for 20 iterations instead "
        "of 1,000 and evaluated on 10 problems instead of 50, with baselines tuned on 2 (the "
        "tables also show the shipped CIFAR optimizers, meta-trained longer)",
        train={"mnist": ("meta.iterations=500",), "cifar10": ("meta.iterations=20",)},
        compare={
            "mnist": ("eval.lr_per_decade=2",),
            "cifar10": ("eval.num_problems=10", "eval.num_tuning_problems=2"),
        },
    ),
    "paper": Profile(
        "paper",
        "the original code's budget, for a GPU: 10,000 meta-iterations per optimizer; MNIST "
        "evaluated on 1,000 test problems with baselines tuned on 100; CIFAR with minibatches of "
        "128, evaluated for 1,000 steps on 100 problems with baselines tuned on 20",
        train={
            "*": ("meta.iterations=10000", "meta.validate_every=100"),
            "cifar10": ("task.batch_size=128",),
        },
        compare={
            "mnist": ("eval.num_problems=1000", "eval.num_tuning_problems=100"),
            "cifar10": (
                "task.batch_size=128",
                "eval.num_steps=1000",
                "eval.num_problems=100",
                "eval.num_tuning_problems=20",
                "eval.lr_per_decade=4",
            ),
        },
    ),
    "smoke": Profile(
        "smoke",
        "a check that every step runs (seconds to minutes per experiment on a CPU); its numbers "
        "mean nothing: 6 meta-iterations of 8 problems of 20 steps, baselines tuned on 16 "
        "problems over 2 learning rates per decade, 16 test problems of 20 steps",
        train={"*": SMOKE_OVERRIDES},
        compare={"*": SMOKE_OVERRIDES},
    ),
}

Log = Callable[[str], None]


@dataclass
class Outcome:
    """What happened to one experiment: its results folder, or why it was skipped; and the
    shipped optimizers compared beside the freshly trained ones (`shipped_beside_cut_runs`)."""

    experiment: Experiment
    out_dir: Path
    skipped: str | None = None
    shipped: list[str] = field(default_factory=list)


def reproduce(
    profile: Profile,
    runs_dir: Path,
    results_dir: Path,
    test_seed: int | None = None,
    only: tuple[str, ...] | None = None,
    force: bool = False,
    log: Log = print,
) -> Path:
    """Runs every experiment (or those named in `only`) and writes the report; returns its path.

    An experiment whose data set is missing is reported as skipped, with the reason; the others
    still run.
    """
    experiments = [e for e in EXPERIMENTS if only is None or e.name in only]
    if only is not None and (unknown := set(only) - {e.name for e in EXPERIMENTS}):
        raise ConfigError(
            f"unknown experiment(s) {', '.join(sorted(unknown))}; valid: "
            + ", ".join(e.name for e in EXPERIMENTS)
        )
    timings: dict[str, float] = {}
    trained: dict[str, Path | str] = {}
    outcomes = []
    for experiment in experiments:
        out_dir = results_dir / experiment.name
        for name in experiment.trainings:
            if name not in trained:
                trained[name] = _train_or_reason(name, profile, runs_dir, force, timings, log)
        run_dirs = [trained[name] for name in experiment.trainings]
        reasons = [run for run in run_dirs if isinstance(run, str)]
        if reasons:
            outcomes.append(Outcome(experiment, out_dir, skipped=reasons[0]))
            continue
        config = experiment_config(experiment, profile, test_seed)
        shipped = shipped_beside_cut_runs(experiment, profile)
        started = time.perf_counter()
        ran = ensure_compared(config, [*run_dirs, *shipped], out_dir, force, log)
        if ran:
            timings[f"compare {experiment.name}"] = time.perf_counter() - started
        outcomes.append(Outcome(experiment, out_dir, shipped=shipped))
    return write_report(results_dir, profile, outcomes, timings)


def shipped_beside_cut_runs(experiment: Experiment, profile: Profile) -> list[str]:
    """The shipped optimizers (as `pretrained:NAME` specs) of the experiment's trainings whose
    meta-training `profile` cuts short of their config's iterations: what a longer run gave."""
    specs = []
    for training in (t for t in TRAININGS if t.name in experiment.trainings):
        full = load_config(training.config).meta.iterations
        cut = training_config(training, profile).meta.iterations < full
        if cut and training.name in pretrained_names():
            specs.append(f"{PRETRAINED_PREFIX}{training.name}")
    return specs


def training_config(training: Training, profile: Profile) -> Config:
    config = load_config(training.config)
    return with_overrides(config, profile.overrides("train", config.task.name))


def experiment_config(experiment: Experiment, profile: Profile, test_seed: int | None) -> Config:
    config = load_config(experiment.config)
    overrides = profile.overrides("compare", config.task.name)
    if test_seed is not None:
        overrides.append(f"eval.seed={test_seed}")
    return with_overrides(config, overrides)


def _train_or_reason(
    name: str,
    profile: Profile,
    runs_dir: Path,
    force: bool,
    timings: dict[str, float],
    log: Log,
) -> Path | str:
    """The run folder of training `name`, trained if needed; or why it could not be."""
    (training,) = [t for t in TRAININGS if t.name == name]
    config = training_config(training, profile)
    try:
        make_task(config.task)
    except DataError as error:
        log(f"skipping {name}: {error}")
        return f"data not available ({error})"
    started = time.perf_counter()
    run_dir = runs_dir / name
    if ensure_trained(config, run_dir, force, log):
        timings[f"meta-train {name}"] = time.perf_counter() - started
    return run_dir


def ensure_trained(config: Config, run_dir: Path, force: bool = False, log: Log = print) -> bool:
    """Meta-trains `config` in `run_dir` unless it is done already; resumes a run cut short.

    Returns:
      Whether any training ran.
    """
    with folder_lock(run_dir):  # another reproduce on the same runs folder fails at once
        return _train_unless_done(config, run_dir, force, log)


def _train_unless_done(config: Config, run_dir: Path, force: bool, log: Log) -> bool:
    """`ensure_trained` in a locked run folder."""
    state = None if force else _run_state(config, run_dir)
    if state == "done":
        log(f"meta-train {run_dir}: up to date, skipped")
        return False
    if state == "partial":
        log(f"meta-train {run_dir}: resuming from its latest checkpoint")
        meta_train(config, run_dir, resume=True, on_iteration=_iteration_logger(config, log))
        return True
    log(f"meta-train {run_dir}: {config.meta.iterations} iterations")
    runs.create_run_dir(run_dir, config, force=True)
    meta_train(config, run_dir, on_iteration=_iteration_logger(config, log))
    return True


def _run_state(config: Config, run_dir: Path) -> str | None:
    """ "done", "partial" (same config, resumable) or None (absent, different, or unreadable)."""
    try:
        if runs.load_run_config(run_dir) != config:
            return None
        iteration = int(read_training_state(run_dir)[0]["iteration"])
    except (CheckpointError, ConfigError, RunDirError, KeyError, OSError, ValueError):
        return None
    if iteration >= config.meta.iterations and runs.best_weights_path(run_dir).is_file():
        return "done"
    return "partial"


def _iteration_logger(config: Config, log: Log) -> Callable[[dict[str, Any]], None]:
    """Logs a line at each validation: a long unattended run shows it is alive."""

    def on_iteration(record: dict[str, Any]) -> None:
        if "validation_loss" in record:
            log(
                f"  iteration {record['iteration']}/{config.meta.iterations}  validation "
                f"{record['validation_loss']:.4g}  best {record['best_validation_loss']:.4g}  "
                f"ETA {record['eta_s']:.0f}s"
            )

    return on_iteration


def ensure_compared(
    config: Config,
    learned: list[Path | str],
    out_dir: Path,
    force: bool = False,
    log: Log = print,
) -> bool:
    """Tunes the baselines and compares them with learned optimizers, unless current.

    Args:
      learned: run folders (their best weights) and `pretrained:NAME` specs.

    Returns:
      Whether the comparison ran.
    """
    weights = [_sha256(_weights_file(spec)) for spec in learned]
    stamp_path = out_dir / STAMP_FILE
    current = _is_current(stamp_path, config, weights, list(BASELINES))
    if not force and current and (out_dir / CURVES_FILE).is_file():
        log(f"compare {out_dir}: up to date, skipped")
        return False
    log(f"compare {out_dir}: tuning {', '.join(BASELINES)}, then {config.eval.num_problems} tests")
    with folder_lock(out_dir):
        stamp_path.unlink(missing_ok=True)  # a comparison cut short must not look current
        compare(config, list(BASELINES), [load_learned(spec) for spec in learned], out_dir)
        plot_curves(out_dir / CURVES_FILE)
        stamp = {
            "config": config_to_dict(config),
            "weights_sha256": weights,
            "baselines": BASELINES,
        }
        write_atomically(stamp_path, json.dumps(stamp, indent=1).encode())
    return True


def _is_current(stamp_path: Path, config: Config, weights: list[str], baselines: list[str]) -> bool:
    """Whether the stamp on disk records these inputs. Configs are compared as configs, so a
    stamp written before a new config field existed still matches when the field is at its
    default; a stamp without baselines predates momentum among them (and grids that grow until
    the best rate is inside), so it does not match."""
    try:
        stamp = json.loads(stamp_path.read_text())
        same_inputs = stamp["weights_sha256"] == weights and stamp["baselines"] == baselines
        return same_inputs and config_from_dict(stamp["config"]) == config
    except (OSError, ValueError, KeyError, TypeError, ConfigError):
        return False


def _weights_file(spec: Path | str) -> Path:
    """The weights file of a run folder or of a `pretrained:NAME` spec."""
    if isinstance(spec, str):
        return pretrained_path(spec.removeprefix(PRETRAINED_PREFIX))
    return runs.best_weights_path(spec)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_report(
    results_dir: Path, profile: Profile, outcomes: list[Outcome], timings: dict[str, float]
) -> Path:
    """REPORT.md: a summary table, then one section per paper figure."""
    results_dir.mkdir(parents=True, exist_ok=True)
    lines = [
        "# l2lgd: the paper's experiments, reproduced",
        "",
        f"Profile `{profile.name}`: {profile.description}. Code version {runs.code_version()}.",
        "Each table: final mean loss over held-out test problems with its 95% CI; baselines "
        "with the learning rate tuned on training problems; ratio = learned / best baseline.",
        "",
        "## Summary",
        "",
        "| experiment | paper | learned | best baseline | ratio | paper's claim held |",
        "|---|---|---|---|---|---|",
    ]
    lines += [_summary_row(outcome) for outcome in outcomes]
    for figure in dict.fromkeys(o.experiment.figure.split(",")[0] for o in outcomes):
        lines += ["", f"## {figure}"]
        for outcome in outcomes:
            if outcome.experiment.figure.split(",")[0] == figure:
                lines += _experiment_section(outcome, results_dir)
    if timings:
        lines += ["", "## Wall time of the steps run this time", "", "| step | seconds |"]
        lines += ["|---|---|", *(f"| {step} | {sec:.0f} |" for step, sec in timings.items())]
    path = results_dir / REPORT_FILE
    path.write_text("\n".join(lines) + "\n")
    return path


@dataclass(frozen=True)
class _Headline:
    """A finished comparison: its (freshly trained) learned optimizer against the best tuned
    baseline (None if every baseline diverged), and whether the paper's claim held."""

    comparison: Comparison
    learned: OptimizerResult
    best: OptimizerResult | None
    ratio: float
    held: bool


def _headline(outcome: Outcome) -> _Headline | None:
    """The headline of a finished comparison, or None."""
    if outcome.skipped or not (outcome.out_dir / CURVES_FILE).is_file():
        return None
    comparison = load_comparison(outcome.out_dir)
    learned = comparison.learned()[0]
    ratio = comparison.ratio_to_best_baseline(learned)
    wins = ratio < 1
    held = wins == outcome.experiment.learned_wins
    return _Headline(comparison, learned, comparison.best_baseline(), ratio, held)


def _summary_row(outcome: Outcome) -> str:
    experiment, headline = outcome.experiment, _headline(outcome)
    if headline is None:
        reason = outcome.skipped or "not run"
        return f"| {experiment.name} | {experiment.figure} | skipped: {reason} | | | |"
    best = headline.best
    best_cell = "all diverged" if best is None else f"{best.label} {_mean_ci(best)}"
    return (
        f"| {experiment.name} | {experiment.figure} | {_mean_ci(headline.learned)} | "
        f"{best_cell} | {headline.ratio:.3f} | {'yes' if headline.held else '**no**'} |"
    )


def _mean_ci(result: OptimizerResult) -> str:
    if result.diverged:
        return "diverged"
    return f"{result.final_mean:.4g} ± {result.final_ci95:.2g}"


def _experiment_section(outcome: Outcome, results_dir: Path) -> list[str]:
    experiment, headline = outcome.experiment, _headline(outcome)
    lines = ["", f"### {experiment.figure}: {experiment.name}", "", f"Paper: {experiment.claim}"]
    if headline is None:
        return [*lines, "", f"Skipped: {outcome.skipped or 'not run'}."]
    relative = outcome.out_dir.relative_to(results_dir)
    verdict = "held" if headline.held else "did **not** hold"
    best = "none: every baseline diverged" if headline.best is None else headline.best.label
    comparison = headline.comparison
    lines += [
        "",
        f"Here ({comparison.heading()}): ratio {headline.ratio:.3f} to the best tuned "
        f"baseline ({best}); the claim {verdict}.",
        "",
        f"![{experiment.name}]({relative}/{FIGURE_NAME}.png)",
        "",
    ]
    if comparison.description:
        lines += [comparison.description, ""]
    lines.append(summary_table(comparison).strip())
    if outcome.shipped:
        names = ", ".join(f"`{spec.removeprefix(PRETRAINED_PREFIX)}`" for spec in outcome.shipped)
        lines += [
            "",
            f"This profile meta-trains for fewer iterations than the config's full budget, so "
            f"the table also shows the shipped optimizer ({names}), meta-trained longer "
            "(`l2l pretrained` shows for how long); the ratio above is the fresh run's.",
        ]
    return lines
