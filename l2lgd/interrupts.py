"""Ctrl-C and SIGTERM stop a command within a second: exit code 130 or 143, one line, nothing torn.

Python runs signal handlers only between bytecodes of the main thread, so a long compiled XLA
computation used to delay a Ctrl-C by minutes, and a KeyboardInterrupt raised during interpreter
teardown with XLA threads still running could segfault. So a command's body runs in a worker
thread while the main thread waits and handles the signals. A stop waits for the writes that must
be whole (`critical()` sections: a checkpoint, the metrics and state of one iteration, a result
folder), runs the registered cleanups, prints one line and ends the process with `os._exit`,
which skips the teardown.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

T = TypeVar("T")

EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}
CRITICAL_WAIT_S = 60.0
"""How long a stop waits for a write in progress; writes take well under a second."""

_critical = threading.RLock()
_stop_hints: list[str] = []
_cleanups: list[Callable[[], None]] = []


@contextmanager
def critical() -> Iterator[None]:
    """A section a stop never cuts: the process ends before it or after it."""
    with _critical:
        yield


@contextmanager
def stop_hint(text: str) -> Iterator[None]:
    """Adds `text` to the line a stop prints while the block runs (e.g. how to resume)."""
    _stop_hints.append(text)
    try:
        yield
    finally:
        _stop_hints.remove(text)


@contextmanager
def cleanup_on_stop(cleanup: Callable[[], None]) -> Iterator[None]:
    """Runs `cleanup` if the process is stopped while the block runs (e.g. removes an empty
    output folder, so that a stopped command leaves its outputs complete or absent)."""
    _cleanups.append(cleanup)
    try:
        yield
    finally:
        _cleanups.remove(cleanup)


def stop_on_signals() -> None:
    """Makes SIGINT and SIGTERM stop the process at once from now on (a signal the parent process
    ignores stays ignored). The `l2l` command calls it first, before importing JAX: a Ctrl-C
    during that import could otherwise be swallowed ("Exception ignored") and the command run on."""
    for number in EXIT_CODES:
        if signal.getsignal(number) is not signal.SIG_IGN:
            signal.signal(number, _stop)


def run_interruptibly(body: Callable[[], T]) -> T:
    """Runs `body` in a worker thread and stops the process cleanly on SIGINT or SIGTERM.

    Off the main thread (where signal handlers cannot be set) it simply calls `body`. A signal
    the parent process ignores (e.g. SIGINT of a background job) stays ignored.
    """
    if threading.current_thread() is not threading.main_thread():
        return body()
    outcome: dict[str, object] = {}

    def work() -> None:
        try:
            outcome["value"] = body()
        except BaseException as error:  # re-raised in the main thread, whatever it is
            outcome["error"] = error

    previous = {number: signal.getsignal(number) for number in EXIT_CODES}
    for number, handler in previous.items():
        if handler is not signal.SIG_IGN:
            signal.signal(number, _stop)
    worker = threading.Thread(target=work, name="l2l-command", daemon=True)
    try:
        worker.start()
        while worker.is_alive():
            worker.join(0.1)
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    return outcome["value"]  # type: ignore[return-value]


def _stop(number: int, frame: object) -> None:
    """The signal handler: wait for a write in progress, clean up, say so, exit."""
    _critical.acquire(timeout=CRITICAL_WAIT_S)  # never released: the worker writes no more
    for cleanup in list(_cleanups):
        with contextlib.suppress(OSError):  # a failed cleanup leaves an empty folder at worst
            cleanup()
    line = f"interrupted ({signal.Signals(number).name})"
    if _stop_hints:
        line += "; " + "; ".join(_stop_hints)
    if sys.stderr.isatty():
        sys.stderr.write("\x1b[?25h\n")  # the live progress bar hid the cursor and holds the line
    sys.stderr.write(f"{line}\n")
    sys.stderr.flush()
    sys.stdout.flush()
    os._exit(EXIT_CODES[signal.Signals(number)])
