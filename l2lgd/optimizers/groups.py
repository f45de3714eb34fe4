"""Several learned optimizers in one model: each parameter tensor goes to the LSTM of its group.

The paper's CIFAR-10 experiment trains two LSTMs, weights shared only within a parameter type:
one for the conv kernels and one for everything else. A rule names the groups: an ordered
tuple of (group name, regular expression) pairs, matched against each leaf's "/"-joined path in
the parameter tree (e.g. "conv_0/kernel"); the first pattern that matches the whole path wins.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from typing import Any

import jax
import optax

from l2lgd.config import OptimizerConfig
from l2lgd.errors import ConfigError
from l2lgd.optimizers.kinds import single_learned_optimizer

GroupRules = tuple[tuple[str, str], ...]
"""(group name, regex on the leaf's "/"-joined path) pairs; the first full match wins."""

CIFAR_GROUPS: GroupRules = (("conv", r"(.*/)?conv_\d+/kernel"), ("fc", r".*"))
"""The paper's split (as in the original code) of `l2lgd.tasks.cnn.CNN`'s parameters: the conv
kernels to "conv"; conv biases, batch-norm scales and offsets and the dense layers to "fc"."""

KERNEL_BIAS_GROUPS: GroupRules = (("kernel", r"(.*/)?kernel"), ("other", r".*"))
"""Weight matrices and conv kernels to one LSTM, biases and everything else to another."""

GROUP_RULES: dict[str, GroupRules] = {"conv_fc": CIFAR_GROUPS, "kernel_bias": KERNEL_BIAS_GROUPS}
"""The rule sets a config can name (`optimizer.groups`); "none" means one LSTM for everything."""


def path_name(path: tuple[Any, ...]) -> str:
    """A pytree key path as "/"-joined names, e.g. "conv_0/kernel" or "layers/0/bias"."""
    return "/".join(_key_name(key) for key in path)


def _key_name(key: Any) -> str:
    """One entry of a key path: a dict key, attribute name or sequence index, as text."""
    if isinstance(key, jax.tree_util.DictKey | jax.tree_util.FlattenedIndexKey):
        return str(key.key)
    if isinstance(key, jax.tree_util.GetAttrKey):
        return key.name
    if isinstance(key, jax.tree_util.SequenceKey):
        return str(key.idx)
    return str(key)


def group_labels(params: Any, rules: GroupRules) -> Any:
    """The group name of every leaf of `params`: a pytree of strings with the same structure.

    Only paths matter, so a batch of parameters (a leading problems axis on every leaf) gets
    the same labels as one set.

    Args:
      params: any pytree of parameters.
      rules: (group name, regex) pairs, tried in order; a regex must match the whole path.

    Returns:
      `params`' tree structure with each leaf replaced by its group name.

    Raises:
      ConfigError: no rules, an invalid regex, or a leaf that no rule matches.

    Example:
      >>> group_labels({"conv_0": {"kernel": k, "bias": b}}, CIFAR_GROUPS)
      {'conv_0': {'bias': 'fc', 'kernel': 'conv'}}
    """
    compiled = _compile_rules(rules)

    def label(path: tuple[Any, ...], leaf: Any) -> str:
        del leaf
        name = path_name(path)
        for group, pattern in compiled:
            if pattern.fullmatch(name):
                return group
        listing = ", ".join(f"{group}: {pattern}" for group, pattern in rules)
        raise ConfigError(
            f"parameter {name!r} matches no group rule ({listing}); add a rule for it or a "
            "final catch-all such as ('other', '.*')"
        )

    return jax.tree_util.tree_map_with_path(label, params)


def _compile_rules(rules: GroupRules) -> list[tuple[str, re.Pattern[str]]]:
    if not rules:
        raise ConfigError("group rules are empty: give at least one (group name, regex) pair")
    compiled = []
    for group, pattern in rules:
        try:
            compiled.append((group, re.compile(pattern)))
        except re.error as err:
            raise ConfigError(f"group {group!r}: invalid regex {pattern!r} ({err})") from err
    return compiled


def grouped_learned_optimizer(
    weights_by_group: Mapping[str, Any],
    configs_by_group: Mapping[str, OptimizerConfig],
    rules: GroupRules,
    batched: bool = False,
) -> optax.GradientTransformation:
    """One learned LSTM optimizer per parameter group, as a single optax transformation.

    Each leaf goes, by `group_labels(params, rules)`, to exactly one group, whose
    `single_learned_optimizer(weights_by_group[g], configs_by_group[g])` (an LSTM or an NTM,
    by the config's kind) sees only that group's leaves
    (through `optax.multi_transform`): its LSTM keeps state for exactly those coordinates. A
    group that matches no leaf of a model costs nothing. Works on batched parameters (leading
    problems axis) and under `jit`, like `lstm_optimizer`.

    Args:
      weights_by_group: each group's LSTM weights (a pytree: meta-gradients flow into it).
      configs_by_group: each group's LSTM architecture, preprocessing and output scale.
      rules: (group name, regex) pairs; every group they name needs weights and a config.
      batched: the parameters are a batch of problems (see `lstm_optimizer`).

    Returns:
      An `optax.GradientTransformation`; group g's `LearnedOptimizerState` is
      `state.inner_states[g].inner_state`. (Newer optax names `multi_transform` `partition` and
      keeps the old name as an alias; this uses the old one, which every supported optax has.)

    Raises:
      ConfigError: the groups of `weights_by_group`, `configs_by_group` and `rules` differ, or
        (at `init`/`update`) a leaf matches no rule.

    Example:
      >>> weights = {g: init_lstm_weights(k, config) for g, k in zip(("conv", "fc"), keys)}
      >>> opt = grouped_learned_optimizer(weights, {"conv": config, "fc": config}, CIFAR_GROUPS)
      >>> state = opt.init(params)
      >>> updates, state = opt.update(grads, state)

    References:
      Andrychowicz et al., 2016, "Learning to learn by gradient descent by gradient descent",
      section 3.3: one LSTM for the convolutional and one for the fully connected layers.
    """
    _check_groups(weights_by_group, configs_by_group, rules)
    transforms = {
        group: single_learned_optimizer(weights_by_group[group], configs_by_group[group], batched)
        for group in weights_by_group
    }
    return optax.multi_transform(transforms, functools.partial(group_labels, rules=rules))


def _check_groups(
    weights_by_group: Mapping[str, Any],
    configs_by_group: Mapping[str, OptimizerConfig],
    rules: GroupRules,
) -> None:
    """The same group names in the weights, the configs and the rules."""
    named = {
        "weights": set(weights_by_group),
        "configs": set(configs_by_group),
        "rules": {group for group, _ in rules},
    }
    if len({frozenset(groups) for groups in named.values()}) != 1:
        listing = "; ".join(f"{what}: {sorted(groups)}" for what, groups in named.items())
        raise ConfigError(f"the groups of the weights, configs and rules differ ({listing})")
