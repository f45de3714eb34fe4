"""One coordinatewise learned optimizer of any `optimizer.kind`: LSTM, LSTM+GAC, NTM-(L-)BFGS."""

from __future__ import annotations

from typing import Any

import jax
import optax

from l2lgd.config import NTM_KINDS, OptimizerConfig
from l2lgd.optimizers.lstm import init_lstm_weights, lstm_optimizer
from l2lgd.optimizers.ntm import init_ntm_weights, ntm_optimizer


def single_learned_optimizer(
    weights: Any, config: OptimizerConfig, batched: bool = False
) -> optax.GradientTransformation:
    """`lstm_optimizer` or `ntm_optimizer`, as `config.kind` says, for every parameter given."""
    if config.kind in NTM_KINDS:
        return ntm_optimizer(weights, config, batched)
    return lstm_optimizer(weights, config, batched)


def init_single_weights(key: jax.Array, config: OptimizerConfig) -> dict[str, Any]:
    """Random initial weights of one learned optimizer of `config.kind`."""
    if config.kind in NTM_KINDS:
        return init_ntm_weights(key, config)
    return init_lstm_weights(key, config)
