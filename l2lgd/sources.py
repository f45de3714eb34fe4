"""Where learned-optimizer weights come from: a run folder, a weights file, or a shipped name."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optax

from l2lgd import pretrained, runs
from l2lgd.checkpoint import load_weights
from l2lgd.config import OptimizerConfig
from l2lgd.errors import L2LError
from l2lgd.optimizers.architecture import StateStorage
from l2lgd.optimizers.learned import learned_optimizer


@dataclass(frozen=True)
class LearnedOptimizer:
    """Weights and architecture of a learned optimizer, and its label in tables and plots."""

    label: str
    weights: Any
    config: OptimizerConfig
    provenance: dict[str, Any]


ARCHITECTURE_LABELS = {
    "lstm": "LSTM",
    "lstm_gac": "LSTM+GAC",
    "ntm_bfgs": "NTM-BFGS",
    "ntm_lbfgs": "NTM-L-BFGS",
}
"""How results name each `optimizer.kind`."""


def load_learned(spec: str | Path) -> LearnedOptimizer:
    """Loads the weights `spec` names.

    `spec` is a run folder (its best checkpoint), a weights file, or the name of a shipped
    optimizer (`l2l pretrained` lists them), optionally written `pretrained:NAME`. A path that
    exists wins over a shipped name.
    """
    path = Path(spec)
    if path.is_dir():
        weights_path, source = runs.best_weights_path(path), path.name
    elif path.is_file():
        weights_path, source = path, path.stem
    elif (name := pretrained.pretrained_name(str(spec))) is not None:
        weights_path, source = pretrained.pretrained_path(name), f"pretrained {name}"
    else:
        raise L2LError(
            f"{str(spec)!r} is neither a run folder, a weights file, nor a pretrained optimizer "
            f"(shipped: {', '.join(pretrained.pretrained_names()) or 'none'})"
        )
    weights, config, provenance = load_weights(weights_path)
    label = f"{ARCHITECTURE_LABELS[config.kind]} ({source})"
    return LearnedOptimizer(label, weights, config, provenance)


COORDINATE_BLOCK = 2**14
"""Coordinates per block of a user's large model (`load_optimizer`): the LSTM's per-block state
and temporaries, about 1 kB per coordinate, then fit in a core's cache."""


def load_optimizer(
    spec: str | Path, state_dtype: Any = None, block: int | None = COORDINATE_BLOCK
) -> optax.GradientTransformation:
    """The learned optimizer `spec` names, as an optax transformation: one line to use it.

    Args:
      spec: a run folder, a weights file, or a shipped name such as "mnist" (see `load_learned`).
      state_dtype: e.g. `jnp.bfloat16`: keep the LSTM state in it between steps (half the
        memory of float32); None: the parameters' dtype.
      block: update a model of at least two blocks of coordinates one block at a time (plain
        LSTM kinds; the same numbers, faster once the state outgrows the cache); None: all at
        once.

    Returns:
      An `optax.GradientTransformation` over any pytree of float parameters; add its updates to
      the parameters with `optax.apply_updates`.

    Example:
      >>> optimizer = l2lgd.load_optimizer("mnist")
      >>> opt_state = optimizer.init(params)
      >>> updates, opt_state = optimizer.update(grads, opt_state)
      >>> params = optax.apply_updates(params, updates)
    """
    learned = load_learned(spec)
    return learned_optimizer(learned.weights, learned.config, StateStorage(state_dtype, block))
