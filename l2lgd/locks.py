"""One writer per folder: an exclusive `fcntl` lock on FOLDER/.l2lgd.lock, which names its holder.

The operating system drops the lock when its holder exits, however it exits, so a killed run
never leaves a stale lock behind; the file itself stays and is ignored everywhere.
"""

from __future__ import annotations

import fcntl
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from l2lgd.errors import RunDirError

LOCK_FILE = ".l2lgd.lock"


@contextmanager
def folder_lock(folder: Path) -> Iterator[None]:
    """Holds the folder's lock for the block (making the folder if needed); a folder another
    process holds is a RunDirError naming that process, raised at once."""
    folder.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _holder(descriptor)
        os.close(descriptor)
        raise RunDirError(
            f"{folder} is being written by another l2l process (pid {holder}); "
            "wait for it to finish, or use another --out"
        ) from None
    try:
        os.ftruncate(descriptor, 0)
        os.write(descriptor, f"{os.getpid()}\n".encode())
        yield
    finally:
        os.close(descriptor)


def _holder(descriptor: int) -> int | None:
    """The pid written in a lock file, if readable."""
    text = os.pread(descriptor, 32, 0).decode(errors="replace").strip()
    return int(text) if text.isdigit() else None


def is_empty(folder: Path) -> bool:
    """Whether `folder` is absent or holds nothing but its lock file."""
    return not folder.is_dir() or all(entry.name == LOCK_FILE for entry in folder.iterdir())


def clear_folder(folder: Path) -> None:
    """Deletes everything in `folder` but its lock file (which its writer holds)."""
    for entry in folder.iterdir():
        if entry.name == LOCK_FILE:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
