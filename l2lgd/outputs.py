"""Result folders of commands: checked before any work, locked while written, never overwritten
unasked, never a run folder, and whole or absent after a stop."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from l2lgd import interrupts, runs
from l2lgd.errors import L2LError, RunDirError
from l2lgd.locks import LOCK_FILE, clear_folder, folder_lock, is_empty


def check_writable(folder: Path, option: str = "--out") -> None:
    """Fails with one line unless `folder` is, or can be made, a folder this process can write:
    checked before any work, so that a long computation never ends in an unwritable path."""
    if folder.exists() and not folder.is_dir():
        raise L2LError(f"{option} {folder} is a file, not a folder")
    existing = folder
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise L2LError(f"cannot make {option} {folder}: {existing} is a file")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as error:
        raise L2LError(
            f"cannot write to {folder} ({error.strerror or error}); choose another {option}"
        ) from None


def is_run_folder(folder: Path) -> bool:
    """Whether `folder` is a meta-training run (its config and metrics or checkpoints)."""
    return (folder / runs.CONFIG_FILE).is_file() and (
        (folder / runs.METRICS_FILE).is_file() or (folder / "checkpoints").is_dir()
    )


@dataclass
class OutputFolder:
    """A claimed result folder; write the results inside `with folder.replacing():`."""

    path: Path
    force: bool

    @contextmanager
    def replacing(self) -> Iterator[Path]:
        """One critical section that deletes an earlier command's results (with --force) and
        holds the writes of the new ones: a stopped command leaves the old results or the new,
        whole, never a mix."""
        with interrupts.critical():
            if self.force:
                clear_folder(self.path)
            yield self.path


@contextmanager
def claimed_output_folder(folder: Path, force: bool) -> Iterator[OutputFolder]:
    """Claims `folder` for one command's results, before any work.

    Fails with one line if it cannot be written, is a run folder, is being written by another
    process, or holds results and `force` is not set. The folder stays locked for the block; if
    the command fails or is stopped before writing anything, the folder is removed again.
    """
    check_writable(folder)
    if is_run_folder(folder):
        raise RunDirError(
            f"{folder} is a meta-training run folder; write results into a folder of their own "
            "(e.g. RUN/eval or RUN/compare)"
        )
    if not is_empty(folder) and not force:
        raise RunDirError(
            f"{folder} holds results already; use --force to replace them, or another --out"
        )
    with folder_lock(folder), interrupts.cleanup_on_stop(lambda: _remove_if_empty(folder)):
        try:
            yield OutputFolder(folder, force)
        except BaseException:
            _remove_if_empty(folder)  # a command that failed before writing leaves no folder
            raise


def _remove_if_empty(folder: Path) -> None:
    """Removes a folder that holds nothing but its lock file."""
    if folder.is_dir() and is_empty(folder):
        (folder / LOCK_FILE).unlink(missing_ok=True)
        folder.rmdir()
