"""Files written whole: a reader, a kill at any moment, or a Ctrl-C sees the old file or the new.

Light on purpose (no JAX): the command line imports it before any numerics.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from l2lgd import interrupts


def write_atomically(path: Path, data: bytes) -> None:
    """Writes `data` to `path` so that a reader, or a kill at any moment, sees old or new whole."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with interrupts.critical():  # a Ctrl-C never leaves a temp file behind
        handle, temp_name = tempfile.mkstemp(
            dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"
        )
        try:
            with os.fdopen(handle, "wb") as file:
                file.write(data)
                file.flush()
                os.fsync(file.fileno())
            os.chmod(temp_name, 0o644)  # mkstemp makes 0600; results and weights are shared
            os.replace(temp_name, path)
        except BaseException:
            Path(temp_name).unlink(missing_ok=True)
            raise
