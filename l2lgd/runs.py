"""Run folders: their layout, creation without silent overwrites, metrics as JSON lines.

RUN/config.yaml                  the resolved config
RUN/metrics.jsonl                one JSON object per meta-iteration (validation rows too)
RUN/checkpoints/best.msgpack     learned-optimizer weights with the best validation loss
RUN/checkpoints/latest.msgpack   the latest weights
RUN/checkpoints/training_state.msgpack   what --resume needs
RUN/checkpoints/training_state.previous.msgpack   the one before: --resume falls back to it
RUN/eval/                        evaluation results (curves.json, summary.md, figures)
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

from l2lgd.atomic import write_atomically
from l2lgd.config import Config, config_to_dict, load_config, save_config
from l2lgd.errors import RunDirError
from l2lgd.jsonsafe import json_safe
from l2lgd.locks import clear_folder, is_empty

CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.jsonl"


def best_weights_path(run_dir: Path) -> Path:
    return run_dir / "checkpoints" / "best.msgpack"


def latest_weights_path(run_dir: Path) -> Path:
    return run_dir / "checkpoints" / "latest.msgpack"


def training_state_path(run_dir: Path) -> Path:
    return run_dir / "checkpoints" / "training_state.msgpack"


def previous_training_state_path(run_dir: Path) -> Path:
    return run_dir / "checkpoints" / "training_state.previous.msgpack"


def has_training_state(run_dir: Path) -> bool:
    """Whether `--resume` has a training state to try (the latest or the one before it)."""
    return training_state_path(run_dir).is_file() or previous_training_state_path(run_dir).is_file()


def create_run_dir(run_dir: Path, config: Config, force: bool = False) -> None:
    """Makes a fresh run folder holding the resolved config.

    An existing non-empty folder is an error unless `force` (which deletes it first): results are
    never overwritten without being asked.
    """
    if not is_empty(run_dir):
        if not force:
            raise RunDirError(
                f"run folder {run_dir} exists already; use --resume to continue it, "
                "--force to replace it, or --out for another folder"
            )
        clear_folder(run_dir)  # its lock file stays: the caller may hold it
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(config, run_dir / CONFIG_FILE)


def load_run_config(run_dir: Path) -> Config:
    """The config a run folder was made with."""
    path = run_dir / CONFIG_FILE
    if not path.is_file():
        raise RunDirError(f"{run_dir} is not a run folder (no {CONFIG_FILE})")
    return load_config(path)


def append_metrics(run_dir: Path, record: dict[str, Any], sync: bool = False) -> None:
    """Appends one JSON line to the run's metrics; `sync` makes it (and every line before) durable.

    Meta-training syncs before each training-state write, so that the metrics on disk are never
    behind the state a resumed run starts from.
    """
    finite = json_safe(record)
    with open(run_dir / METRICS_FILE, "a") as file:
        file.write(json.dumps(finite, allow_nan=False) + "\n")
        if sync:
            file.flush()
            os.fsync(file.fileno())


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """All metric records of a run, in order.

    A last line that is not valid JSON is one torn by a kill in mid-append and is dropped (a
    resumed run redoes its iteration); a bad line before it is a RunDirError.
    """
    path = run_dir / METRICS_FILE
    if not path.is_file():
        return []
    numbered = [
        (n, line) for n, line in enumerate(path.read_text().splitlines(), 1) if line.strip()
    ]
    records = []
    for index, (number, line) in enumerate(numbered):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as error:
            if index == len(numbered) - 1:
                break
            raise RunDirError(f"{path} line {number} is not valid JSON ({error})") from None
    return records


def truncate_metrics(run_dir: Path, iteration: int) -> None:
    """Drops records after `iteration`: a resumed run redoes them, so they would appear twice.

    The file is replaced atomically, so a kill in the middle leaves the old metrics whole.
    """
    kept = [record for record in read_metrics(run_dir) if record["iteration"] <= iteration]
    text = "".join(json.dumps(record) + "\n" for record in kept)
    write_atomically(run_dir / METRICS_FILE, text.encode())


def provenance(config: Config, iteration: int, validation_loss: float) -> dict[str, Any]:
    """Where a weight file came from: config, seed, iteration, code version, validation figure."""
    return {
        "config": config_to_dict(config),
        "iteration": iteration,
        "validation_loss": validation_loss,
        "code_version": code_version(),
    }


@functools.cache
def code_version() -> str:
    """The package version, plus the git commit when run from a checkout."""
    version = metadata.version("l2lgd")
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).parent,
            timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return version
    return f"{version}+g{commit}"
