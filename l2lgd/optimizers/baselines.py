"""Hand-designed baselines from optax, by name, with the paper's other hyper-parameters (Torch7 defaults)."""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import optax

from l2lgd.errors import L2LError

_BASELINES: dict[str, Callable[[jax.Array | float], optax.GradientTransformation]] = {
    "sgd": lambda lr: optax.sgd(lr),
    "momentum": lambda lr: optax.sgd(lr, momentum=0.9),
    "nag": lambda lr: optax.sgd(lr, momentum=0.9, nesterov=True),
    # Torch7's rmsprop averages squared gradients with alpha = 0.99 (optax's default decay is 0.9).
    "rmsprop": lambda lr: optax.rmsprop(lr, decay=0.99, eps=1e-8),
    "adam": lambda lr: optax.adam(lr, b1=0.9, b2=0.999, eps=1e-8),
}
BASELINE_NAMES = tuple(_BASELINES)


def baseline(name: str, learning_rate: jax.Array | float) -> optax.GradientTransformation:
    """The optax optimizer called `name` with the given learning rate (a float or a traced array).

    Raises:
      L2LError: for an unknown name, listing the valid ones.
    """
    check_baseline_name(name)
    return _BASELINES[name](learning_rate)


def check_baseline_name(name: str) -> None:
    """Raises an L2LError naming the valid baselines when `name` is not one of them."""
    if name not in _BASELINES:
        raise L2LError(f"unknown baseline {name!r}; valid: {', '.join(BASELINE_NAMES)}")


def parse_baseline_spec(spec: str) -> tuple[str, float]:
    """Parses `name:learning_rate` (e.g. `adam:0.1`)."""
    name, sep, lr_text = spec.partition(":")
    check_baseline_name(name)
    if not sep:
        raise L2LError(f"baseline {spec!r} needs a learning rate, e.g. {name}:0.01")
    try:
        learning_rate = float(lr_text)
    except ValueError:
        raise L2LError(f"learning rate in {spec!r} is not a number") from None
    if not (math.isfinite(learning_rate) and learning_rate > 0):
        raise L2LError(f"learning rate in {spec!r} must be > 0")
    return name, learning_rate
