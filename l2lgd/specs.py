"""What a user types to name an optimizer, parsed in one place: a baseline as NAME:LR, or a learned
optimizer as a run folder, a weights file or a shipped name; and the config to test it with."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import optax

from l2lgd import runs
from l2lgd.config import (
    Config,
    TaskConfig,
    check_task_name,
    config_from_dict,
    load_config,
    with_overrides,
)
from l2lgd.errors import L2LError
from l2lgd.optimizers.baselines import BASELINE_NAMES, baseline, parse_baseline_spec
from l2lgd.optimizers.learned import learned_optimizer
from l2lgd.pretrained import pretrained_name, read_provenance
from l2lgd.sources import LearnedOptimizer, load_learned


@dataclass(frozen=True)
class BaselineChoice:
    """A baseline at a fixed learning rate, as `NAME:LR` names it."""

    name: str
    learning_rate: float

    @property
    def label(self) -> str:
        return f"{self.name} (lr {self.learning_rate:g})"


OptimizerChoice = BaselineChoice | LearnedOptimizer

DEFAULT_TASK = "quadratic"
"""The task of a command given neither --task nor --config nor a learned optimizer."""
DATA_DIR_KEY = "task.data_dir="
"""The override that --data-dir stands for."""


def is_baseline_spec(spec: str) -> bool:
    """A baseline given as NAME:LR (else a learned optimizer's run folder, file or name)."""
    return spec.partition(":")[0] in BASELINE_NAMES


def parse_optimizer_spec(spec: str) -> OptimizerChoice:
    """The optimizer `spec` names; a bad spec is one clear L2LError."""
    if is_baseline_spec(spec):
        return BaselineChoice(*parse_baseline_spec(spec))
    return load_learned(spec)


def transformation(choice: OptimizerChoice) -> optax.GradientTransformation:
    """The optax transformation (for one problem) of a parsed optimizer."""
    if isinstance(choice, BaselineChoice):
        return baseline(choice.name, choice.learning_rate)
    return learned_optimizer(choice.weights, choice.config)


def labelled_transformations(specs: list[str]) -> dict[str, optax.GradientTransformation]:
    """Each spec's transformation under its label in results."""
    choices = [parse_optimizer_spec(spec) for spec in specs]
    return {choice.label: transformation(choice) for choice in choices}


def first_learned_spec(specs: list[str]) -> str | None:
    """The first learned optimizer among `specs`: its training config is the default one."""
    return next((spec for spec in specs if not is_baseline_spec(spec)), None)


def default_evaluation_folder(spec: str) -> Path:
    """Where `l2l evaluate` writes by default: RUN/eval, or runs/eval/NAME."""
    path = Path(spec)
    if path.is_dir():
        return path / "eval"
    return Path("runs") / "eval" / path.name.removesuffix(".msgpack").replace(":", "_")


def flag_overrides(
    seed: int | None = None, test_seed: int | None = None, data_dir: Path | None = None
) -> list[str]:
    """The config overrides that dedicated flags stand for (--seed, --test-seed, --data-dir)."""
    overrides = []
    if seed is not None:
        overrides.append(f"seed={seed}")
    if test_seed is not None:
        overrides.append(f"eval.seed={test_seed}")
    if data_dir is not None:
        overrides.append(f"{DATA_DIR_KEY}{json.dumps(str(data_dir))}")  # JSON strings are YAML
    return overrides


def applicable_flags(flags: list[str], task: TaskConfig) -> list[str]:
    """The flag overrides that apply to `task`: --data-dir means nothing to a task without a
    data set (quadratics), so it is dropped there rather than an error in a loop over tasks."""
    return [
        flag for flag in flags if hasattr(task, "data_dir") or not flag.startswith(DATA_DIR_KEY)
    ]


def resolve_config(
    task: str | None, config_path: Path | str | None, overrides: list[str], flags: list[str]
) -> Config:
    """The config file (default: the task's shipped config), then the flags, then --set;
    validated. A named task must be the config's: the two never silently disagree."""
    if task is not None:
        check_task_name(task)
    reference = config_path if config_path is not None else (task or DEFAULT_TASK)
    config = load_config(reference, overrides)
    if flags := applicable_flags(flags, config.task):  # flags never change the task family
        config = with_overrides(config, [*flags, *overrides])  # --set still wins over a flag
    if task is not None and config.task.name != task:
        raise L2LError(
            f"--task {task} does not match the config's task.name {config.task.name} "
            f"({reference}); drop --task or pick a {task} config"
        )
    return config


def evaluation_config(
    optimizer_spec: str | None,
    task: str | None,
    config_path: Path | str | None,
    overrides: list[str],
    flags: list[str],
) -> Config:
    """The config to test optimizers with: `config_path` if given; else the config the learned
    optimizer was trained with, if it was trained on `task` (or no task is named); else the
    task's shipped config. Then the flags and the overrides."""
    trained_with = None
    if config_path is None and optimizer_spec is not None:
        trained_with = training_config(optimizer_spec)
    if trained_with is not None and task in (None, trained_with.task.name):
        return with_overrides(
            trained_with, [*applicable_flags(flags, trained_with.task), *overrides]
        )
    return resolve_config(task, config_path, overrides, flags)


def training_config(optimizer_spec: str) -> Config | None:
    """The config a learned optimizer was trained with (run folder or shipped name), else None."""
    path = Path(optimizer_spec)
    if path.is_dir():
        return runs.load_run_config(path)
    if not path.exists() and (name := pretrained_name(optimizer_spec)):
        return config_from_dict(read_provenance(name)["config"])
    return None
