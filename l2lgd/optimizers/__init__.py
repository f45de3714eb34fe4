"""Optimizers: the learned coordinatewise LSTM and the optax baselines, all as optax transformations."""

from l2lgd.optimizers.baselines import BASELINE_NAMES, baseline, parse_baseline_spec
from l2lgd.optimizers.groups import (
    CIFAR_GROUPS,
    GROUP_RULES,
    group_labels,
    grouped_learned_optimizer,
)
from l2lgd.optimizers.learned import init_learned_weights, learned_optimizer
from l2lgd.optimizers.lstm import (
    CoordinatewiseLSTM,
    LearnedOptimizerState,
    init_lstm_weights,
    lstm_optimizer,
    lstm_update,
)
from l2lgd.optimizers.preprocess import log_sign_preprocess

__all__ = [
    "BASELINE_NAMES",
    "CIFAR_GROUPS",
    "GROUP_RULES",
    "CoordinatewiseLSTM",
    "LearnedOptimizerState",
    "baseline",
    "group_labels",
    "grouped_learned_optimizer",
    "init_learned_weights",
    "init_lstm_weights",
    "learned_optimizer",
    "log_sign_preprocess",
    "lstm_optimizer",
    "lstm_update",
    "parse_baseline_spec",
]
