"""The `l2l` command's entry point: Ctrl-C and SIGTERM stop it cleanly from its first instant.

Only the standard library is imported before the signal handlers are set; the command line
(and JAX with it) comes after.
"""

from __future__ import annotations

from l2lgd import interrupts


def main() -> None:
    """Sets the stop handlers, then runs the command line."""
    interrupts.stop_on_signals()
    from l2lgd.cli import main as cli_main  # imports JAX: only once a signal stops it cleanly

    cli_main()
