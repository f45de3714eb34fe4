"""What every learned optimizer shares, and what the rollout knows of it: a way to draw initial
weights and the optax transformation they make for one problem (`LearnedArchitecture`), a state
of per-coordinate arrays (`CoordinatewiseState`), and functions that act on each coordinate alone
(`coordinatewise`), which `jax.vmap` over problems turns into one matmul over all of them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import jax
import jax.numpy as jnp
import optax
from flax import struct


@dataclass(frozen=True)
class StateStorage:
    """How a learned optimizer keeps its per-coordinate state between steps (LSTM kinds; the
    others need the defaults).

    Attributes:
      dtype: e.g. jnp.bfloat16, half the memory of float32; each step still computes in the
        parameters' and weights' dtype. None: that dtype throughout.
      block: without global averaging cells, a problem of at least two blocks of coordinates
        keeps its state as (blocks, ..., block) and is updated one block at a time, so that a
        block's temporaries stay in cache (scripts/optimizer_throughput.py). None: all at once.
    """

    dtype: Any = None
    block: int | None = None


DEFAULT_STORAGE = StateStorage()


class LearnedArchitecture(Protocol):
    """A learned optimizer minus its weights (`LSTMArchitecture`, `NTMArchitecture`,
    `GroupedArchitecture`): frozen and hashable, so that compiled programs can key on it.

    Its transformation treats all the parameters it is given as one problem; the rollout
    vectorizes it over a batch of problems with `jax.vmap`.
    """

    def init_weights(self, key: jax.Array) -> Any:
        """Random initial weights (a pytree: meta-gradients flow into it)."""

    def transformation(
        self, weights: Any, storage: StateStorage = DEFAULT_STORAGE
    ) -> optax.GradientTransformation:
        """The optimizer with fixed `weights`; its updates are added to the parameters, and its
        state is kept as `storage` says."""


class CoordinatewiseState(struct.PyTreeNode):
    """Base of a learned optimizer's optax state: every array in it ends in the problem's
    coordinates (features first, coordinates last).

    So `l2lgd.rollout.vectorized` keeps a batch of such states with the problems axis just before
    the coordinates, where `coordinatewise` functions take and give it at no cost.
    """


class IndependentCoordinates(optax.GradientTransformation):
    """An optax transformation in which every coordinate evolves alone: no term of one
    coordinate's update or state reads another's (the plain LSTM, unlike LSTM+GAC or the NTMs).

    Vectorizing it over problems is then the identity: a batch of problems is one problem of all
    their coordinates. So `l2lgd.rollout.vectorized` passes it through without `jax.vmap`, and
    it runs in plain JAX, differentiable in every mode with or without a vmap.
    """

    __slots__ = ()


def coordinatewise(fn: Callable[..., Any]) -> Callable[..., Any]:
    """`fn(weights, *arrays)`, declared to act on each coordinate (the last axis of every array
    of `arrays` and of its results) alone, with `weights` shared by all coordinates.

    Under `jax.vmap` over problems it is then `fn` itself on all the problems' coordinates side by
    side (`jnp.moveaxis` and a reshape, which cost nothing when the problems axis already stands
    before the coordinates, as in `CoordinatewiseState`): each matmul is one two-dimensional
    product over every coordinate of every problem. JAX's own batching would give the products a
    problems axis, and their gradients transposes that XLA on CPU runs at every step (more than
    twice slower meta-training; scripts/interleaved_benchmark.py).

    Warning: like every `jax.custom_batching.custom_vmap` function, its result can be
    differentiated in reverse mode only under `jax.vmap` (as every rollout runs it); forward mode
    and plain evaluation work everywhere.
    """
    custom = jax.custom_batching.custom_vmap(fn)

    @custom.def_vmap
    def side_by_side(
        axis_size: int, in_mapped: list[Any], weights: Any, *arrays: Any
    ) -> tuple[Any, Any]:
        weights_mapped, *arrays_mapped = in_mapped
        if any(jax.tree.leaves(weights_mapped)):  # a vmap over several optimizers' weights
            axes = jax.tree.map(lambda mapped: 0 if mapped else None, tuple(in_mapped))
            outputs = jax.vmap(fn, in_axes=axes)(weights, *arrays)
        else:
            joined = [
                jax.tree.map(
                    lambda leaf, mapped: join_problems(leaf, mapped, axis_size), tree, flags
                )
                for tree, flags in zip(arrays, arrays_mapped, strict=True)
            ]
            outputs = jax.tree.map(
                lambda leaf: split_problems(leaf, axis_size), fn(weights, *joined)
            )
        return outputs, jax.tree.map(lambda _: True, outputs)

    return custom


def join_problems(leaf: jax.Array, mapped: bool, problems: int) -> jax.Array:
    """(problems, ..., n) -> (..., problems * n); a leaf the vmap does not map is repeated for each problem."""
    if not mapped:
        leaf = jnp.broadcast_to(leaf, (problems, *leaf.shape))
    if problems == 1:  # a reshape, not a transpose, which XLA would copy
        return leaf.reshape(leaf.shape[1:])
    return jnp.moveaxis(leaf, 0, -2).reshape(*leaf.shape[1:-1], -1)


def split_problems(leaf: jax.Array, problems: int) -> jax.Array:
    """(..., problems * n) -> (problems, ..., n): the inverse of `join_problems`."""
    if problems == 1:
        return leaf.reshape(1, *leaf.shape)
    return jnp.moveaxis(leaf.reshape(*leaf.shape[:-1], problems, -1), -2, 0)
