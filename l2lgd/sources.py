"""Where learned-optimizer weights come from: a run folder (its best checkpoint) or a weights file."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from l2lgd import runs
from l2lgd.checkpoint import load_weights
from l2lgd.config import OptimizerConfig
from l2lgd.errors import L2LError


@dataclass(frozen=True)
class LearnedOptimizer:
    """Weights and architecture of a learned optimizer, and its label in tables and plots."""

    label: str
    weights: Any
    config: OptimizerConfig
    provenance: dict[str, Any]


def load_learned(spec: str) -> LearnedOptimizer:
    """Loads the weights `spec` names: a run folder (its best checkpoint) or a weights file."""
    path = Path(spec)
    if path.is_dir():
        weights_path = runs.best_weights_path(path)
        label = f"LSTM ({path.name})"
    elif path.is_file():
        weights_path = path
        label = f"LSTM ({path.stem})"
    else:
        raise L2LError(f"{spec!r} is neither a run folder nor a weights file")
    weights, config, provenance = load_weights(weights_path)
    return LearnedOptimizer(label, weights, config, provenance)
