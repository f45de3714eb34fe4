"""The `l2l` command line: thin wrappers that parse options and call the library; no numerics here."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from l2lgd import interrupts, outputs, runs
from l2lgd.atomic import write_atomically
from l2lgd.config import TASK_NAMES, Config, check_task_name, load_config, with_overrides
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
DEFAULT_TASK = "quadratic"

TaskOption = Annotated[
    str | None,
    typer.Option(
        help=f"Problem family: {', '.join(TASK_NAMES)} (default: the config's, else "
        f"{DEFAULT_TASK}); alone, it selects that task's shipped config."
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


def _flag_overrides(
    seed: int | None = None, test_seed: int | None = None, data_dir: Path | None = None
) -> list[str]:
    """The config overrides that dedicated flags stand for (--seed, --test-seed, --data-dir)."""
    overrides = []
    if seed is not None:
        overrides.append(f"seed={seed}")
    if test_seed is not None:
        overrides.append(f"eval.seed={test_seed}")
    if data_dir is not None:
        overrides.append(f"task.data_dir={json.dumps(str(data_dir))}")  # JSON strings are YAML
    return overrides


def _resolve_config(
    task: str | None, config_path: Path | None, overrides: list[str] | None, flags: list[str]
) -> Config:
    """The config file (default: the task's shipped config), then the flags, then --set;
    validated. A named task must be the config's: the two never silently disagree."""
    if task is not None:
        check_task_name(task)
    reference = config_path if config_path is not None else (task or DEFAULT_TASK)
    config = load_config(reference, [*flags, *(overrides or [])])
    if task is not None and config.task.name != task:
        raise L2LError(
            f"--task {task} does not match the config's task.name {config.task.name} "
            f"({reference}); drop --task or pick a {task} config"
        )
    return config


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
        run_dir = out or Path("runs") / (task or DEFAULT_TASK)
        if primary:
            outputs.check_writable(run_dir)
        resolved = with_overrides(runs.load_run_config(run_dir), device_overrides)
        if task is not None and resolved.task.name != task:
            raise L2LError(f"{run_dir} was trained on task {resolved.task.name}, not {task}")
        if not runs.has_training_state(run_dir):
            raise L2LError(f"{run_dir} has no checkpoint to resume from; start it without --resume")
    else:
        flags = _flag_overrides(seed, None, data_dir) + device_overrides
        resolved = _resolve_config(task, config, set_, flags)
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
        _evaluate_and_report(config, str(run_dir), eval_dir, force=False)


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
    from l2lgd.sources import load_learned

    run_dir = Path(optimizer)
    resolved = _evaluation_config(optimizer, task, config, set_, test_seed, data_dir)
    if not _is_baseline_spec(optimizer):
        load_learned(optimizer)  # a bad spec fails before an output folder is made
    default_out = (
        run_dir / "eval"
        if run_dir.is_dir()
        else Path("runs") / "eval" / run_dir.name.removesuffix(".msgpack").replace(":", "_")
    )
    _evaluate_and_report(resolved, optimizer, out or default_out, force)


def _evaluation_config(
    optimizer_spec: str | None,
    task: str | None,
    config: Path | None,
    overrides: list[str] | None,
    test_seed: int | None,
    data_dir: Path | None,
) -> Config:
    """The config to test optimizers with: --config if given; else the config the learned
    optimizer was trained with, if it was trained on `task` (or no task is named); else the
    task's shipped config. Then the flags and --set."""
    flags = _flag_overrides(None, test_seed, data_dir)
    training_config = None
    if config is None and optimizer_spec is not None:
        training_config = _training_config(optimizer_spec)
    if training_config is not None and task in (None, training_config.task.name):
        return with_overrides(training_config, [*flags, *(overrides or [])])
    return _resolve_config(task, config, overrides, flags)


def _training_config(optimizer_spec: str) -> Config | None:
    """The config a learned optimizer was trained with (run folder or shipped name), else None."""
    from l2lgd.config import config_from_dict
    from l2lgd.pretrained import pretrained_name, read_provenance

    if Path(optimizer_spec).is_dir():
        return runs.load_run_config(Path(optimizer_spec))
    if not Path(optimizer_spec).exists() and (name := pretrained_name(optimizer_spec)):
        return config_from_dict(read_provenance(name)["config"])
    return None


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
    from l2lgd.compare import compare_optimizers
    from l2lgd.sources import load_learned
    from l2lgd.tasks import make_task

    names = _baseline_names(baselines)
    if not names and not learned:
        raise L2LError("nothing to compare: name --baselines, or a --learned optimizer, or both")
    first_learned = learned[0] if learned else None
    resolved = _evaluation_config(first_learned, task, config, set_, test_seed, data_dir)
    learned_optimizers = [load_learned(spec) for spec in learned or []]
    out_dir = out or Path("runs") / f"compare-{resolved.task.name}"
    with outputs.claimed_output_folder(out_dir, force) as folder:
        make_task(resolved.task)  # missing data fails before anything is printed
        typer.echo(
            f"tuning {', '.join(names) or 'no baselines'} on "
            f"{resolved.eval.num_tuning_problems} training problems, then evaluating on "
            f"{resolved.eval.num_problems} test problems...",
            err=True,
        )
        summaries, tuning = compare_optimizers(
            resolved, names, learned_optimizers, log=lambda line: typer.echo(line, err=True)
        )
        figures = _write_results(folder, resolved, summaries, tuning)
    _print_results(out_dir, figures)


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
    resolved = _evaluation_config(learned[0], task, config, set_, test_seed, data_dir)
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


def _is_baseline_spec(spec: str) -> bool:
    """A baseline given as NAME:LR (else a learned optimizer's run folder, file or name)."""
    from l2lgd.optimizers.baselines import BASELINE_NAMES

    return spec.partition(":")[0] in BASELINE_NAMES


def _first_learned_spec(specs: list[str]) -> str | None:
    """The first learned optimizer among `specs`, whose training config is the default."""
    return next((spec for spec in specs if not _is_baseline_spec(spec)), None)


def _labelled_optimizers(specs: list[str]) -> dict[str, Any]:
    """Each spec's optax transformation (for one problem) under its result label: a baseline
    NAME:LR at that rate, or a learned optimizer."""
    from l2lgd.optimizers.baselines import baseline, parse_baseline_spec
    from l2lgd.optimizers.learned import learned_optimizer
    from l2lgd.sources import load_learned

    transformations = {}
    for spec in specs:
        if _is_baseline_spec(spec):
            name, learning_rate = parse_baseline_spec(spec)
            transformations[f"{name} (lr {learning_rate:g})"] = baseline(name, learning_rate)
        else:
            learned = load_learned(spec)
            transformations[learned.label] = learned_optimizer(learned.weights, learned.config)
    return transformations


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
    import jax

    from l2lgd.seeds import TEST_STREAM, stream_key
    from l2lgd.tasks import make_task
    from l2lgd.traces import chosen_coordinates, plot_update_traces, update_traces

    first_learned = _first_learned_spec(optimizer)
    resolved = _evaluation_config(first_learned, task, config, set_, test_seed, data_dir)
    with outputs.claimed_output_folder(out, force) as folder:
        problem_task = make_task(resolved.task)
        key = stream_key(resolved.eval.seed, TEST_STREAM)
        try:
            chosen = chosen_coordinates(problem_task, coordinates, jax.random.fold_in(key, 1))
        except ValueError as error:
            raise L2LError(str(error)) from None
        traces = {
            label: update_traces(problem_task, transformation, key, resolved.eval.num_steps, chosen)
            for label, transformation in _labelled_optimizers(optimizer).items()
        }
        record = {
            "task": resolved.task.name,
            "test_seed": resolved.eval.seed,
            "coordinates": chosen.tolist(),
            "updates": {label: trace.tolist() for label, trace in traces.items()},
        }
        title = f"updates on one {resolved.task.name} test problem (test seed {resolved.eval.seed})"
        with interrupts.critical():
            folder.replace_old()
            write_atomically(out / "traces.json", json.dumps(record).encode())
            figure = plot_update_traces(traces, chosen, out / "traces.png", title)
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
    from l2lgd.seeds import TEST_STREAM, stream_key
    from l2lgd.stylize import stylize, write_stylized
    from l2lgd.tasks import make_task

    if count < 1:
        raise L2LError(f"--count must be at least 1, got {count}")
    first_learned = _first_learned_spec(optimizer)
    named_task = None if config is not None else "style"  # a --config's task is checked below
    resolved = _evaluation_config(first_learned, named_task, config, set_, test_seed, data_dir)
    if resolved.task.name != "style":
        raise L2LError(f"stylize needs the style task, not {resolved.task.name}")
    with outputs.claimed_output_folder(out, force) as folder:
        task = make_task(resolved.task)
        transformations = _labelled_optimizers(optimizer)
        key = stream_key(resolved.eval.seed, TEST_STREAM)
        steps = resolved.eval.num_steps
        contents, images, losses = stylize(task, transformations, key, count, steps)
        size = resolved.task.image_size
        title = (
            f"{size}x{size}, style {resolved.task.style_image}, {steps} steps, "
            f"test seed {resolved.eval.seed}; {task.vgg.source}"
        )
        with interrupts.critical():
            folder.replace_old()
            figure = write_stylized(out, task, contents, images, losses, title)
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


def _evaluate_and_report(config: Config, optimizer_spec: str, out_dir: Path, force: bool) -> None:
    """Evaluates one optimizer on the test problems and writes curves, table and figure."""
    with outputs.claimed_output_folder(out_dir, force) as folder:
        summary = _evaluate_one(config, optimizer_spec)
        figures = _write_results(folder, config, [summary], {})
    _print_results(out_dir, figures)


def _evaluate_one(config: Config, optimizer_spec: str) -> Any:
    """One optimizer's curves on the config's test problems (a CurveSummary)."""
    from l2lgd.evaluate import evaluate_baseline, evaluate_learned
    from l2lgd.optimizers.baselines import parse_baseline_spec
    from l2lgd.seeds import TEST_STREAM, stream_key
    from l2lgd.sources import load_learned
    from l2lgd.tasks import make_task

    task = make_task(config.task)
    key = stream_key(config.eval.seed, TEST_STREAM)
    num_problems, num_steps = config.eval.num_problems, config.eval.num_steps
    if _is_baseline_spec(optimizer_spec):
        name, learning_rate = parse_baseline_spec(optimizer_spec)
        summary = evaluate_baseline(
            task, name, learning_rate, key, num_problems, num_steps, config.eval.test_metrics
        )
    else:
        learned = load_learned(optimizer_spec)
        summary = evaluate_learned(
            task,
            learned.label,
            learned.weights,
            learned.config,
            key,
            num_problems,
            num_steps,
            config.eval.test_metrics,
        )
    return summary


def _write_results(
    folder: outputs.OutputFolder, config: Config, summaries: list[Any], tuning: dict[str, Any]
) -> list[Path]:
    """Replaces a folder's old results (with --force) by a comparison and its figure, in one
    critical section: a stopped command leaves the old results or the new, whole."""
    from l2lgd.compare import write_comparison
    from l2lgd.plot import plot_curves

    with interrupts.critical():
        folder.replace_old()
        write_comparison(folder.path, config, summaries, tuning)
        return plot_curves(folder.path / "curves.json")


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
