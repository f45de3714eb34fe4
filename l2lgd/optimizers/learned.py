"""The one place that reads an `OptimizerConfig`: it builds the learned architecture a config
describes (one per `optimizer.kind`, each from its kind's typed config, or one per parameter
group), and from it the weights and the optimizer."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import optax

from l2lgd.config import LSTMConfig, LSTMGACConfig, NTMConfig, OptimizerConfig
from l2lgd.optimizers.architecture import DEFAULT_STORAGE, LearnedArchitecture, StateStorage
from l2lgd.optimizers.groups import GROUP_RULES, GroupedArchitecture
from l2lgd.optimizers.lstm import LSTMArchitecture
from l2lgd.optimizers.ntm import NTMArchitecture


def lstm_architecture(config: LSTMConfig) -> LSTMArchitecture:
    """`optimizer.kind` "lstm": the paper's coordinatewise LSTM."""
    return LSTMArchitecture(
        hidden_size=config.hidden_size,
        num_layers=config.num_layers,
        preprocessing=config.preprocessing,
        preprocessing_p=config.preprocessing_p,
        output_scale=config.output_scale,
        second_moment_decay=config.second_moment_decay,
        momentum_decays=config.momentum_decays,
        log_rms_feature=config.log_rms_feature,
    )


def lstm_gac_architecture(config: LSTMGACConfig) -> LSTMArchitecture:
    """`optimizer.kind` "lstm_gac": the LSTM with `gac_cells` global averaging cells per layer."""
    return dataclasses.replace(lstm_architecture(config), gac_cells=config.gac_cells)


def ntm_architecture(config: NTMConfig) -> NTMArchitecture:
    """`optimizer.kind` "ntm_bfgs" (a dense memory) or "ntm_lbfgs" (a window of writes)."""
    return NTMArchitecture(
        controller=lstm_gac_architecture(config),
        read_heads=config.ntm_read_heads,
        write_heads=config.ntm_write_heads,
        window=config.ntm_window if config.kind == "ntm_lbfgs" else None,
        memory_init=config.ntm_memory_init,
        update_from=config.ntm_update_from,
        write_activation=config.ntm_write_activation,
    )


ARCHITECTURES: dict[str, Callable[[OptimizerConfig], LearnedArchitecture]] = {
    "lstm": lstm_architecture,
    "lstm_gac": lstm_gac_architecture,
    "ntm_bfgs": ntm_architecture,
    "ntm_lbfgs": ntm_architecture,
}
"""Each `optimizer.kind`'s builder; its family module (`lstm`, `ntm`) owns the architecture."""


def learned_architecture(config: OptimizerConfig) -> LearnedArchitecture:
    """The architecture `config` describes: one of `config.kind` for every parameter, or, unless
    `config.groups` is "none", one of that kind per group of the rule set
    `GROUP_RULES[config.groups]`."""
    single = ARCHITECTURES[config.kind](config)
    if config.groups == "none":
        return single
    rules = GROUP_RULES[config.groups]
    groups = dict.fromkeys(group for group, _ in rules)
    return GroupedArchitecture(rules, tuple((group, single) for group in groups))


def learned_optimizer(
    weights: Any, config: OptimizerConfig, storage: StateStorage = DEFAULT_STORAGE
) -> optax.GradientTransformation:
    """The learned optimizer with fixed `weights` as an optax transformation, for one problem.

    It works on any pytree of float parameters, all of them one problem, and its updates are
    added to them. With `config.groups == "none"` `weights` are one network's flax params;
    otherwise they map each group to its network's params. The rollout vectorizes it over a
    batch of problems (`l2lgd.rollout.vectorized`).

    `storage` says how the per-coordinate state is kept between steps: its dtype (bfloat16
    halves the memory; scripts/optimizer_throughput.py lists bytes per parameter) and whether
    large problems are updated a cache-sized block of coordinates at a time.

    Warning:
      With global averaging cells or a memory (kinds lstm_gac, ntm_bfgs, ntm_lbfgs), its result
      can be differentiated in reverse mode (meta-training) only under `jax.vmap` over problems,
      as every rollout runs it (see `l2lgd.optimizers.architecture.coordinatewise`). The plain
      LSTM is plain JAX and differentiates in every mode.

    Example:
      >>> opt = learned_optimizer(weights, config)
      >>> state = opt.init(params)
      >>> updates, state = opt.update(grads, state)
      >>> params = optax.apply_updates(params, updates)

    References:
      Andrychowicz et al., 2016, "Learning to learn by gradient descent by gradient descent".
    """
    return learned_architecture(config).transformation(weights, storage)


def init_learned_weights(key: jax.Array, config: OptimizerConfig) -> Any:
    """Initial weights of the learned optimizer `config` describes (one network's, or one per
    group)."""
    return learned_architecture(config).init_weights(key)
