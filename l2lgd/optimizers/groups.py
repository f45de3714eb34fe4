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
from dataclasses import dataclass
from typing import Any

import jax
import optax

from l2lgd.errors import ConfigError
from l2lgd.optimizers.architecture import (
    DEFAULT_STORAGE,
    IndependentCoordinates,
    LearnedArchitecture,
    StateStorage,
)

GroupRules = tuple[tuple[str, str], ...]
"""(group name, regex on the leaf's "/"-joined path) pairs; the first full match wins."""

CIFAR_GROUPS: GroupRules = (("conv", r"(.*/)?[Cc]onv_\d+/kernel"), ("fc", r".*"))
"""The paper's split (as in the original code) of `l2lgd.tasks.cnn.CNN`'s parameters: the conv
kernels to "conv"; conv biases, batch-norm scales and offsets and the dense layers to "fc". The
kernels of a user's flax model match too, under flax's default names ("Conv_0/kernel")."""

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


@dataclass(frozen=True)
class GroupedArchitecture:
    """One learned optimizer per parameter group, as a single optax transformation.

    Each leaf goes, by `group_labels(params, rules)`, to exactly one group, whose member
    architecture's transformation sees only that group's leaves (through
    `optax.multi_transform`): its LSTM keeps state for exactly those coordinates. A group that
    matches no leaf of a model costs nothing. Like every learned architecture it is written for
    one problem; the rollout vectorizes it (as it is, when every member's coordinates evolve
    alone: `IndependentCoordinates`).

    Attributes:
      rules: (group name, regex) pairs; every group they name needs a member.
      members: (group name, architecture) pairs, one per group; the weights are a dict from
        group name to that member's weights.

    Raises:
      ConfigError: the groups of `members` and `rules` differ, or (at `transformation`) of the
        weights, or (at `init`/`update`) a leaf matches no rule.

    Example:
      >>> grouped = GroupedArchitecture(CIFAR_GROUPS, (("conv", LSTMArchitecture()),
      ...                                             ("fc", LSTMArchitecture())))
      >>> opt = grouped.transformation(grouped.init_weights(key))
      >>> state = opt.init(params)
      >>> updates, state = opt.update(grads, state)

    References:
      Andrychowicz et al., 2016, "Learning to learn by gradient descent by gradient descent",
      section 3.3: one LSTM for the convolutional and one for the fully connected layers.
    """

    rules: GroupRules
    members: tuple[tuple[str, LearnedArchitecture], ...]

    def __post_init__(self) -> None:
        _check_groups({"architectures": self.groups(), "rules": [group for group, _ in self.rules]})

    def groups(self) -> list[str]:
        """The group names, in the members' order."""
        return [group for group, _ in self.members]

    def init_weights(self, key: jax.Array) -> dict[str, Any]:
        """Each group's initial weights, from its own fold of `key`."""
        return {
            group: architecture.init_weights(jax.random.fold_in(key, index))
            for index, (group, architecture) in enumerate(self.members)
        }

    def transformation(
        self, weights: Mapping[str, Any], storage: StateStorage = DEFAULT_STORAGE
    ) -> optax.GradientTransformation:
        """The grouped optimizer with fixed weights; group g's state is
        `state.inner_states[g].inner_state`. (Newer optax names `multi_transform` `partition`
        and keeps the old name as an alias; this uses the old one, which every supported optax
        has.)"""
        _check_groups({"weights": list(weights), "architectures": self.groups()})
        transforms = {
            group: architecture.transformation(weights[group], storage)
            for group, architecture in self.members
        }
        grouped = optax.multi_transform(
            transforms, functools.partial(group_labels, rules=self.rules)
        )
        if all(isinstance(transform, IndependentCoordinates) for transform in transforms.values()):
            return IndependentCoordinates(*grouped)
        return grouped


def _check_groups(named: Mapping[str, list[str]]) -> None:
    """The same group names in each of `named`'s lists."""
    if len({frozenset(groups) for groups in named.values()}) != 1:
        listing = "; ".join(f"{what}: {sorted(set(groups))}" for what, groups in named.items())
        raise ConfigError(f"the groups of the {' and '.join(named)} differ ({listing})")
