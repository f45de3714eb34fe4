"""Optimizers: the learned coordinatewise LSTM and the optax baselines, all as optax transformations."""

from l2lgd.optimizers.baselines import BASELINE_NAMES, baseline, parse_baseline_spec
from l2lgd.optimizers.lstm import (
    CoordinatewiseLSTM,
    LearnedOptimizerState,
    init_lstm_weights,
    learned_optimizer,
    lstm_update,
)
from l2lgd.optimizers.preprocess import log_sign_preprocess

__all__ = [
    "BASELINE_NAMES",
    "CoordinatewiseLSTM",
    "LearnedOptimizerState",
    "baseline",
    "init_lstm_weights",
    "learned_optimizer",
    "log_sign_preprocess",
    "lstm_update",
    "parse_baseline_spec",
]
