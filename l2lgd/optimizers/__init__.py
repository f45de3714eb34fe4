"""Optimizers: the learned coordinatewise LSTM and its variants and the optax baselines, all as
optax transformations; a learned one is written for one problem."""

from l2lgd.optimizers.architecture import LearnedArchitecture
from l2lgd.optimizers.baselines import BASELINE_NAMES, baseline, parse_baseline_spec
from l2lgd.optimizers.groups import CIFAR_GROUPS, GROUP_RULES, GroupedArchitecture, group_labels
from l2lgd.optimizers.learned import init_learned_weights, learned_architecture, learned_optimizer
from l2lgd.optimizers.lstm import (
    CoordinatewiseLSTM,
    LearnedOptimizerState,
    LSTMArchitecture,
    lstm_optimizer,
    lstm_update,
)
from l2lgd.optimizers.ntm import NTMArchitecture, ntm_optimizer
from l2lgd.optimizers.preprocess import log_sign_preprocess

__all__ = [
    "BASELINE_NAMES",
    "CIFAR_GROUPS",
    "GROUP_RULES",
    "CoordinatewiseLSTM",
    "GroupedArchitecture",
    "LSTMArchitecture",
    "LearnedArchitecture",
    "LearnedOptimizerState",
    "NTMArchitecture",
    "baseline",
    "group_labels",
    "init_learned_weights",
    "learned_architecture",
    "learned_optimizer",
    "log_sign_preprocess",
    "lstm_optimizer",
    "lstm_update",
    "ntm_optimizer",
    "parse_baseline_spec",
]
