"""The `l2l` command line: thin wrappers that parse options and call the library; no numerics here."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from l2lgd import interrupts, outputs, runs, specs
from l2lgd.config import TASK_NAMES, Config, with_overrides
from l2lgd.errors import DivergenceError, L2LError
from l2lgd.locks import folder_lock, is_empty

app = typer.Typer(
    help="Learning to learn by gradient descent by gradient descent: meta-train, evaluate, compare, plot.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# Every baseline, as optimizers.baselines.BASELINE_NAMES lists them (not imported here: it would
# load JAX for --help).
DEFAULT_BASELINES = "sgd,momentum,nag,rmsprop,adam"

# Without --config, a task's config is the shipped config of the same name (configs/TASK.yaml).

TaskOption = Annotated[
    str | None,
    typer.Option(
        help=f"Problem family: {', '.join(TASK_NAMES)} (default: the config's, else "
        f"{specs.DEFAULT_TASK}); alone, it selects that task's shipped config."
    ),
]
ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="YAML config file, or a shipped config's name, e.g. mnist_40units (default: the "
        "task's shipped config).",
    ),
]
SetOption = Annotated[
    list[str] | None,
    typer.Option(
        "--set", help="Override a config field, e.g. --set meta.iterations=100 (repeatable)."
    ),
]
SeedOption = Annotated[int | None, typer.Option(help="Training seed (config field `seed`).")]
DataDirOption = Annotated[
    Path | None,
    typer.Option(help="Folder with the dataset's files (e.g. MNIST IDX); default $L2LGD_DATA_DIR."),
]
TestSeedOption = Annotated[
    int | None, typer.Option(help="Seed of the held-out test problems (config field `eval.seed`).")
]


ForceOption = Annotated[
    bool, typer.Option(help="Replace the results already in the output folder.")
]


def _user_errors(command: Callable[..., None]) -> Callable[..., None]:
    """Turns user errors into one line on stderr and exit code 2 (1 for a diverged run); runs the
    command so that Ctrl-C or SIGTERM stops it at once, cleanly (exit 130 or 143)."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        try:
            interrupts.run_interruptibly(lambda: command(*args, **kwargs))
        except L2LError as error:
            typer.echo(f"error: {error}", err=True)
            raise typer.Exit(2) from None
        except DivergenceError as error:
            typer.echo(f"stopped: {error}", err=True)
            raise typer.Exit(1) from None

    return wrapper


@app.command("meta-train")
@_user_errors
def meta_train_command(
    task: TaskOption = None,
    config: ConfigOption = None,
    out: Annotated[
        Path | None, typer.Option(help="Run folder (default: runs/TASK, the config's task).")
    ] = None,
    seed: SeedOption = None,
    data_dir: DataDirOption = None,
    set_: SetOption = None,
    resume: Annotated[
        bool, typer.Option(help="Continue the run in --out from its latest checkpoint.")
    ] = False,
    force: Annotated[
        bool, typer.Option(help="Delete an existing run folder and start afresh.")
    ] = False,
    evaluate: Annotated[
        bool, typer.Option(help="Evaluate the best weights on test problems at the end.")
    ] = True,
    devices: Annotated[
        int | None,
        typer.Option(help="Devices to split the problems over (meta.devices; 0: all of them)."),
    ] = None,
    coordinator: Annotated[
        str | None,
        typer.Option(
            envvar="JAX_COORDINATOR_ADDRESS",
            help="HOST:PORT of process 0, for a multi-process run (jax.distributed).",
        ),
    ] = None,
    num_processes: Annotated[
        int | None,
        typer.Option(
            envvar="JAX_NUM_PROCESSES",
            help="Processes in a multi-process run (default: from the cluster scheduler).",
        ),
    ] = None,
    process_id: Annotated[
        int | None,
        typer.Option(
            envvar="JAX_PROCESS_ID",
            help="This process's index, 0 to N-1; process 0 writes the run folder.",
        ),
    ] = None,
) -> None:
    """Meta-train the LSTM optimizer; keep the best checkpoint by validation loss.

    For several hosts, start the same command on each with --coordinator, --num-processes and
    --process-id (or their environment variables); they must see the same --out folder to resume.
    """
    from l2lgd import distributed
    from l2lgd.meta.train import meta_train
    from l2lgd.tasks import make_task

    distributed.initialize(coordinator, num_processes, process_id)
    primary = distributed.is_primary()
    device_overrides = [] if devices is None else [f"meta.devices={devices}"]
    if resume:
        if config is not None or set_ or seed is not None:
            raise L2LError(
                "--resume continues with the run's own config.yaml; drop --config/--set/--seed"
            )
        run_dir = out or Path("runs") / (task or specs.DEFAULT_TASK)
        if primary:
            outputs.check_writable(run_dir)
        resolved = with_overrides(runs.load_run_config(run_dir), device_overrides)
        if task is not None and resolved.task.name != task:
            raise L2LError(f"{run_dir} was trained on task {resolved.task.name}, not {task}")
        if not runs.has_training_state(run_dir):
            raise L2LError(f"{run_dir} has no checkpoint to resume from; start it without --resume")
    else:
        flags = specs.flag_overrides(seed, None, data_dir) + device_overrides
        resolved = specs.resolve_config(task, config, set_ or [], flags)
        run_dir = out or Path("runs") / resolved.task.name
        if primary:
            outputs.check_writable(run_dir)
        make_task(resolved.task)  # missing data fails here, before a run folder exists
    if not primary:
        meta_train(resolved, run_dir, resume=resume)
        return
    with folder_lock(run_dir):
        if not resume:
            runs.create_run_dir(run_dir, resolved, force=force)
        _meta_train_and_report(resolved, run_dir, resume, evaluate)


def _meta_train_and_report(config: Config, run_dir: Path, resume: bool, evaluate: bool) -> None:
    """Meta-trains in a locked run folder with a progress display; then plots and evaluates."""
    from l2lgd import distributed
    from l2lgd.compare import run_evaluation
    from l2lgd.meta.train import meta_train
    from l2lgd.plot import plot_meta_training
    from l2lgd.progress import MetaTrainingDisplay

    typer.echo(f"run folder: {run_dir}", err=True)
    resume_command = f"l2l meta-train --task {config.task.name} --out {run_dir} --resume"
    with (
        interrupts.stop_hint(f"{run_dir} keeps its last checkpoint; continue: {resume_command}"),
        MetaTrainingDisplay(config.meta.iterations) as display,
    ):
        progress = meta_train(config, run_dir, resume=resume, on_iteration=display.update)
    typer.echo(
        f"best validation loss {progress.best_validation_loss:.4g} at iteration "
        f"{progress.best_iteration}; weights: {runs.best_weights_path(run_dir)}",
        err=True,
    )
    with interrupts.critical():
        plot_meta_training(run_dir)
    eval_dir = run_dir / "eval"
    if evaluate and distributed.is_multi_process():
        typer.echo(
            f"skipped the test evaluation of a multi-process run; run `l2l evaluate --optimizer "
            f"{run_dir}` on one host",
            err=True,
        )
    elif evaluate and not is_empty(eval_dir):
        typer.echo(
            f"kept the earlier evaluation in {eval_dir}; `l2l evaluate --optimizer {run_dir} "
            "--force` redoes it",
            err=True,
        )
    elif evaluate:
        _print_results(eval_dir, run_evaluation(config, str(run_dir), eval_dir))


@app.command("evaluate")
@_user_errors
def evaluate_command(
    optimizer: Annotated[
        str,
        typer.Option(
            help="A run folder, a weights file, a pretrained name (see `l2l pretrained`), "
            "or a baseline as NAME:LR (e.g. adam:0.1)."
        ),
    ],
    task: Annotated[
        str | None,
        typer.Option(
            help="Problem family (default: the one the optimizer was trained on, else quadratic)."
        ),
    ] = None,
    config: ConfigOption = None,
    out: Annotated[
        Path | None, typer.Option(help="Output folder (default: RUN/eval or runs/eval/NAME).")
    ] = None,
    test_seed: TestSeedOption = None,
    data_dir: DataDirOption = None,
    set_: SetOption = None,
    force: ForceOption = False,
) -> None:
    """Run one optimizer on held-out test problems; write its loss curves, table and figure."""
    from l2lgd.compare import run_evaluation

    resolved = _test_config(optimizer, task, config, set_, test_seed, data_dir)
    out_dir = out or specs.default_evaluation_folder(optimizer)
    _print_results(out_dir, run_evaluation(resolved, optimizer, out_dir, force))


def _test_config(
    first_learned: str | None,
    task: str | None,
    config: Path | None,
    set_: list[str] | None,
    test_seed: int | None,
    data_dir: Path | None,
) -> Config:
    """The config a testing command runs with (see `specs.evaluation_config`)."""
    flags = specs.flag_overrides(None, test_seed, data_dir)
    return specs.evaluation_config(first_learned, task, config, set_ or [], flags)


@app.command("compare")
@_user_errors
def compare_command(
    task: TaskOption = None,
    baselines: Annotated[
        str, typer.Option(help="Comma-separated baselines to tune and compare.")
    ] = DEFAULT_BASELINES,
    learned: Annotated[
        list[str] | None,
        typer.Option(
            help="Learned optimizer: a run folder, a weights file or a pretrained name (repeatable)."
        ),
    ] = None,
    config: ConfigOption = None,
    out: Annotated[
        Path | None, typer.Option(help="Output folder (default: runs/compare-TASK).")
    ] = None,
    test_seed: TestSeedOption = None,
    data_dir: DataDirOption = None,
    set_: SetOption = None,
    force: ForceOption = False,
) -> None:
    """Tune each baseline's learning rate on training problems; compare all on the same test problems.

    Without --config: the config the first --learned optimizer was trained with (if on --task),
    else the task's shipped config.
    """
    from l2lgd.compare import run_comparison

    names = _baseline_names(baselines)
    first_learned = learned[0] if learned else None
    resolved = _test_config(first_learned, task, config, set_, test_seed, data_dir)
    out_dir = out or Path("runs") / f"compare-{resolved.task.name}"
    log = functools.partial(typer.echo, err=True)
    _print_results(out_dir, run_comparison(resolved, names, learned or [], out_dir, force, log))


def _baseline_names(text: str) -> list[str]:
    """The baselines of a comma-separated --baselines list, each checked to exist."""
    from l2lgd.optimizers.baselines import check_baseline_name

    names = [name.strip() for name in text.split(",") if name.strip()]
    for name in names:
        check_baseline_name(name)
    return names


def _integers(text: str, option: str) -> list[int]:
    """Parses a comma-separated list of positive integers given to `option`."""
    try:
        values = [int(item) for item in text.split(",") if item.strip()]
    except ValueError:
        raise L2LError(f"{option} takes comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise L2LError(f"{option} takes positive integers, got {text!r}")
    return values


@app.command("sweep")
@_user_errors
def sweep_command(
    learned: Annotated[
        list[str],
        typer.Option(help="Learned optimizer (repeatable): a run folder, weights file or name."),
    ],
    task: Annotated[
        str, typer.Option(help="Problem family: mnist (the MLP whose architecture varies).")
    ] = "mnist",
    config: ConfigOption = None,
    layers: Annotated[str, typer.Option(help="Hidden-layer counts, comma-separated.")] = "1,2",
    units: Annotated[
        str, typer.Option(help="Units per hidden layer, comma-separated.")
    ] = "5,10,20,40,80",
    baselines: Annotated[
        str, typer.Option(help="Comma-separated baselines, tuned on each architecture.")
    ] = DEFAULT_BASELINES,
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("runs/sweep"),
    test_seed: TestSeedOption = None,
    data_dir: DataDirOption = None,
    set_: SetOption = None,
) -> None:
    """Final loss against the MLP's architecture (the paper's Figure 6): one comparison per
    architecture, the learned optimizer as it is and the baselines tuned on each."""
    from l2lgd.sources import load_learned
    from l2lgd.sweep import architecture_sweep, plot_sweep
    from l2lgd.tasks import make_task

    if task != "mnist":
        raise L2LError(f"sweep varies an MLP's architecture: --task mnist, not {task}")
    depths, widths = _integers(layers, "--layers"), _integers(units, "--units")
    names = _baseline_names(baselines)
    resolved = _test_config(learned[0], task, config, set_, test_seed, data_dir)
    learned_optimizers = [load_learned(spec) for spec in learned]
    outputs.check_writable(out)
    with folder_lock(out):  # finished architectures are kept: a rerun continues the sweep
        make_task(resolved.task)  # missing data fails before any work
        sweep = architecture_sweep(resolved, learned_optimizers, names, depths, widths, out)
        figure = plot_sweep(sweep, out / "sweep.png")
    for label, rows in sweep["optimizers"].items():
        cells = ", ".join(
            f"{row['depth']}x{row['width']}: {row['final_mean']:.4g}"
            if row["final_mean"] is not None
            else f"{row['depth']}x{row['width']}: diverged"
            for row in rows
        )
        typer.echo(f"{label}: {cells}")
    typer.echo(
        f"results: {out}/ (sweep.json, {figure.name}, one comparison folder per architecture)"
    )


@app.command("trace")
@_user_errors
def trace_command(
    optimizer: Annotated[
        list[str],
        typer.Option(
            help="An optimizer to trace (repeatable): a run folder, a weights file, a "
            "pretrained name, or a baseline as NAME:LR."
        ),
    ],
    task: Annotated[
        str | None,
        typer.Option(
            help="Problem family (default: the first learned optimizer's, else quadratic)."
        ),
    ] = None,
    config: ConfigOption = None,
    coordinates: Annotated[int, typer.Option(help="How many coordinates to trace.")] = 4,
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("runs/traces"),
    test_seed: TestSeedOption = None,
    data_dir: DataDirOption = None,
    set_: SetOption = None,
    force: ForceOption = False,
) -> None:
    """Record and plot the update each optimizer proposes for a few coordinates of one test
    problem at every step (the paper's Figures 10-13); eval.num_steps steps."""
    from l2lgd.traces import trace_into

    first_learned = specs.first_learned_spec(optimizer)
    resolved = _test_config(first_learned, task, config, set_, test_seed, data_dir)
    figure = trace_into(resolved, optimizer, coordinates, out, force)
    typer.echo(f"results: {out}/ (traces.json, {figure.name})")


@app.command("stylize")
@_user_errors
def stylize_command(
    optimizer: Annotated[
        list[str],
        typer.Option(
            help="An optimizer whose styled images to show (repeatable): a run folder, a weights "
            "file, a pretrained name, or a baseline as NAME:LR."
        ),
    ],
    config: ConfigOption = None,
    count: Annotated[int, typer.Option(help="How many test content images (rows).")] = 3,
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("runs/stylize"),
    test_seed: TestSeedOption = None,
    data_dir: DataDirOption = None,
    set_: SetOption = None,
    force: ForceOption = False,
) -> None:
    """Neural Art: content | style | each optimizer's styled image after eval.num_steps steps, on
    test content images (the paper's Figure 9)."""
    from l2lgd.stylize import stylize_into

    first_learned = specs.first_learned_spec(optimizer)
    named_task = None if config is not None else "style"  # stylize_into checks a --config's task
    resolved = _test_config(first_learned, named_task, config, set_, test_seed, data_dir)
    figure, losses = stylize_into(resolved, optimizer, count, out, force)
    for label, values in losses.items():
        typer.echo(f"{label}: final loss {values.mean():.4g} (mean of {count})")
    typer.echo(f"results: {out}/ ({figure.name}, stylized.json)")


@app.command("plot")
@_user_errors
def plot_command(
    path: Annotated[Path, typer.Argument(help="A run folder or a comparison/evaluation folder.")],
    out: Annotated[
        Path | None, typer.Option(help="Folder for the figures (default: next to the data).")
    ] = None,
) -> None:
    """Draw the paper-style figure (loss vs step, log scale, mean and 95% CI) as PNG and PDF."""
    from l2lgd.plot import find_curves, plot_curves, plot_meta_training

    if not path.exists():
        raise L2LError(f"{path} does not exist")
    target = out or path
    outputs.check_writable(target, "--out" if out else "the figures' folder")
    figures = []
    with folder_lock(target), interrupts.critical():
        if (path / runs.METRICS_FILE).is_file():
            figures += plot_meta_training(path, out)
        try:
            figures += plot_curves(find_curves(path), out)
        except L2LError:
            if not figures:
                raise
    for figure in figures:
        typer.echo(str(figure))


@app.command("reproduce")
@_user_errors
def reproduce_command(
    profile: Annotated[
        str,
        typer.Option(
            help="Budget: default (a 2-core CPU, about 1.5 hours), paper (a GPU) or smoke "
            "(minutes; checks that every step runs, its numbers mean nothing)."
        ),
    ] = "default",
    results: Annotated[
        Path | None,
        typer.Option(
            help="Folder for REPORT.md and figures (default: results, or results/PROFILE)."
        ),
    ] = None,
    runs_dir: Annotated[
        Path | None,
        typer.Option(
            "--runs", help="Folder for the meta-training runs (default: runs/reproduce-PROFILE)."
        ),
    ] = None,
    only: Annotated[
        str | None, typer.Option(help="Comma-separated experiments to run (default: all).")
    ] = None,
    test_seed: TestSeedOption = None,
    force: Annotated[
        bool, typer.Option(help="Redo every step, even those whose outputs are current.")
    ] = False,
) -> None:
    """Every implemented paper experiment, meta-training to figures; writes REPORT.md.

    Steps whose outputs are there and current are skipped, so a rerun after a crash continues.
    """
    from l2lgd.reproduce import PROFILES, reproduce

    if profile not in PROFILES:
        raise L2LError(f"unknown profile {profile!r}; valid: {', '.join(PROFILES)}")
    names = None
    if only is not None:
        names = tuple(name.strip() for name in only.split(",") if name.strip())
    default_results = Path("results") if profile == "default" else Path("results") / profile
    hint = "finished steps are kept; rerun it without --force to continue where it stopped"
    with interrupts.stop_hint(hint):
        report = reproduce(
            PROFILES[profile],
            runs_dir or Path("runs") / f"reproduce-{profile}",
            results or default_results,
            test_seed=test_seed,
            only=names,
            force=force,
            log=lambda line: typer.echo(line, err=True),
        )
    typer.echo(report.read_text())
    typer.echo(f"report: {report}")


@app.command("pretrained")
@_user_errors
def pretrained_command() -> None:
    """List the learned optimizers shipped with l2lgd, what they were trained on, and their figures."""
    from l2lgd.pretrained import pretrained_names, pretrained_path, read_provenance

    names = pretrained_names()
    if not names:
        raise L2LError("this installation ships no pretrained optimizers")
    for name in names:
        provenance = read_provenance(name)
        typer.echo(f"{name}: {provenance.get('description', '')}")
        typer.echo(f"  file: {pretrained_path(name)}")
        typer.echo(
            f"  trained: task {provenance['config']['task']['name']}, seed "
            f"{provenance['config']['seed']}, iteration {provenance['iteration']}, "
            f"code {provenance['code_version']}"
        )
        evaluation = provenance.get("evaluation")
        if evaluation:
            typer.echo(f"  {_evaluation_line(evaluation)}")
        if "suite" in provenance:
            typer.echo(f"  {_suite_line(provenance['suite'])}")
        typer.echo(
            f"  use: l2l compare --task {provenance['config']['task']['name']} --learned {name}"
        )


def _evaluation_line(evaluation: dict[str, Any]) -> str:
    """One line of a shipped optimizer's test figures: its loss against the best tuned baseline."""
    from l2lgd.results import comparison_from_figures

    comparison = comparison_from_figures(evaluation)
    (learned,) = comparison.learned()
    best = comparison.best_baseline()
    return (
        f"test ({comparison.num_problems} problems, {comparison.num_steps} steps, seed "
        f"{comparison.test_seed}): final loss {learned.final_mean:.4g} "
        f"± {learned.final_ci95:.2g} vs {best.label} {best.final_mean:.4g} "
        f"(ratio {comparison.ratio_to_best_baseline(learned):.3f})"
    )


def _suite_line(suite: dict[str, Any]) -> str:
    """One line of a shipped optimizer's held-out suite: on how many tasks it beat the best
    tuned baseline, and each task's ratio to it."""
    tasks = suite["tasks"]
    ratios = ", ".join(
        f"{task} {'diverged' if entry['ratio'] is None else format(entry['ratio'], '.2f')}"
        for task, entry in tasks.items()
    )
    return (
        f"held-out suite (seed {suite['test_seed']}): beats the best tuned baseline on "
        f"{suite['wins']} of {len(tasks)} tasks; ratio per task: {ratios}"
    )


def _print_results(out_dir: Path, figures: list[Path]) -> None:
    """Prints a results folder's table and names its files."""
    from l2lgd.results import CURVES_FILE, SUMMARY_FILE, load_comparison, summary_markdown

    typer.echo(summary_markdown(load_comparison(out_dir)))
    names = ", ".join([CURVES_FILE, SUMMARY_FILE, *(f.name for f in figures)])
    typer.echo(f"results: {out_dir}/ ({names})")


def main() -> None:
    """Entry point for `python -m l2lgd`."""
    app(prog_name="l2l")


if __name__ == "__main__":
    sys.exit(main())
