"""The learned optimizer a config describes: one shared LSTM, or one LSTM per parameter group."""

from __future__ import annotations

from typing import Any

import jax
import optax

from l2lgd.config import OptimizerConfig
from l2lgd.optimizers.groups import GROUP_RULES, grouped_learned_optimizer
from l2lgd.optimizers.kinds import init_single_weights, single_learned_optimizer


def learned_optimizer(
    weights: Any, config: OptimizerConfig, batched: bool = False
) -> optax.GradientTransformation:
    """The learned optimizer with fixed `weights` as an optax transformation.

    With `config.groups == "none"` it is one optimizer of `config.kind` (`lstm_optimizer` or
    `ntm_optimizer`) for every coordinate, and `weights` are its flax params. Otherwise `weights` maps each group of the rule set
    `GROUP_RULES[config.groups]` to its LSTM's params, and each parameter goes to its group's LSTM.
    Either way it works on any pytree of float parameters and its updates are added to them.
    `batched`: the parameters are a batch of problems (leading axis), as in rollouts; see
    `lstm_optimizer`.

    Example:
      >>> opt = learned_optimizer(weights, config)
      >>> state = opt.init(params)
      >>> updates, state = opt.update(grads, state)
      >>> params = optax.apply_updates(params, updates)

    References:
      Andrychowicz et al., 2016, "Learning to learn by gradient descent by gradient descent".
    """
    if config.groups == "none":
        return single_learned_optimizer(weights, config, batched)
    rules = GROUP_RULES[config.groups]
    configs = {group: config for group, _ in rules}
    return grouped_learned_optimizer(weights, configs, rules, batched)


def init_learned_weights(key: jax.Array, config: OptimizerConfig) -> Any:
    """Initial weights of the learned optimizer `config` describes (one LSTM's, or one per group)."""
    if config.groups == "none":
        return init_single_weights(key, config)
    groups = [group for group, _ in GROUP_RULES[config.groups]]
    return {
        group: init_single_weights(jax.random.fold_in(key, index), config)
        for index, group in enumerate(groups)
    }
