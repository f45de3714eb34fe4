"""NTM-BFGS and NTM-L-BFGS (Andrychowicz et al. 2016, Appendix D): a coordinatewise LSTM+GAC
controller that reads from and writes to a memory shared by the coordinates of one problem.

At every step each coordinate's controller sees its gradient and its last read (both
preprocessed alike) and emits one scalar per read head and two per write head. Over the n
coordinates of a problem these are read vectors r and write vectors a, b in R^n. The memory is
a linear map M of R^n:

    write:  M <- M + (1/n) * sum over write heads of a b^T
    read:   i = M r, one vector per read head; coordinate k of i goes to coordinate k's
            controller at the next step.

This is BFGS's shape (a low-rank update of a matrix, then a matrix-vector product), with the
vectors learned. NTM-BFGS keeps M as a dense n x n matrix; NTM-L-BFGS keeps only the
write vectors of the last `window` steps, M = M0 + (1/n) A B^T, so a read costs O(n K) and
fits MNIST-sized problems. With a window as long as the run the two are the same optimizer.
Like the LSTM, it is written for one problem; the rollout's `jax.vmap` gives each problem of a
batch its own memory.

The paper leaves these open; our defaults (`NTMArchitecture`'s, set by the config's
`optimizer.ntm_*` fields) and why:
  - `memory_init` "identity": M starts at I, as BFGS starts its inverse Hessian at I. A read
    is then r plus learned low-rank corrections, and the untrained optimizer is an LSTM+GAC.
  - `update_from` "read": the update is the first head's read i = M r, as the paper's text
    says, so the memory acts on every step as BFGS's H does. "controller" takes the update
    straight from the controller, as the paper's figure draws it.
  - `write_activation` "tanh": a write moves M by a bounded amount, and the 1/n makes
    b^T r / n a mean over the problem's coordinates (what a global averaging cell computes), so
    a read's size does not grow with the problem's size.
  - 1 read head and 3 write heads: BFGS's inverse-Hessian update is three outer products,
    s u^T + u s^T + c s s^T with u = -H y / (y^T s).
The update and read outputs start at zero (no update before training, as the LSTM); the write
outputs start random, since a zero a and a zero b would give each other zero gradient.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from l2lgd.errors import ConfigError
from l2lgd.optimizers.architecture import DEFAULT_STORAGE, CoordinatewiseState, StateStorage
from l2lgd.optimizers.lstm import (
    ColumnDense,
    LSTMArchitecture,
    LSTMState,
    coordinatewise_transformation,
    lstm_layers,
)
from l2lgd.optimizers.preprocess import num_features

MAX_DENSE_MEMORY_ENTRIES = 2**26
"""NTM-BFGS refuses a problem's memory of more entries than this (256 MiB in float32, kept at
every step of an unroll for the backward pass); NTM-L-BFGS is the form for bigger problems."""


class DenseMemory(NamedTuple):
    """NTM-BFGS's memory: M - M0 as a dense (n, n) matrix."""

    correction: jax.Array


class WindowMemory(NamedTuple):
    """NTM-L-BFGS's memory: the last window's write vectors, oldest first, (window * heads, n)
    each, so that M = M0 + (1/n) left^T right."""

    left: jax.Array
    right: jax.Array


Memory = DenseMemory | WindowMemory


class NTMState(CoordinatewiseState):
    """The optax state of an NTM optimizer: controller state, last reads, memory."""

    lstm_state: LSTMState
    reads: jax.Array
    memory: Memory


class NTMController(nn.Module):
    """LSTM(+GAC) layers with two linear outputs per coordinate: `outputs` (the reads' vectors,
    and the update if it comes from the controller; zero at start) and `writes` (a then b of
    every write head; random at start)."""

    hidden_size: int
    num_layers: int
    gac_cells: int
    num_outputs: int
    num_writes: int

    @nn.compact
    def __call__(
        self, inputs: jax.Array, state: LSTMState
    ) -> tuple[jax.Array, jax.Array, LSTMState]:
        top, new_state = lstm_layers(inputs, state, self.hidden_size, self.gac_cells)
        outputs = ColumnDense(self.num_outputs, nn.initializers.zeros, name="output")(top)
        writes = ColumnDense(self.num_writes, name="write")(top)
        return outputs, writes, new_state


@dataclass(frozen=True)
class NTMArchitecture:
    """NTM-BFGS or NTM-L-BFGS minus its weights: everything the weights were trained with.

    Attributes:
      controller: the coordinatewise LSTM(+GAC) that drives the heads; its preprocessing applies
        to the gradient and to every read, and its output scale to the reads' vectors.
      read_heads: read vectors per step; the first one's read is the update (`update_from`).
      write_heads: (left, right) pairs of write vectors per step.
      window: None for NTM-BFGS's dense memory; else NTM-L-BFGS's window of the last `window`
        steps' writes.
      memory_init: "identity" (M0 = I, as BFGS starts) or "zero" (M0 = 0).
      update_from: "read" (the first head's read M r) or "controller" (an extra output).
      write_activation: "tanh" (bounded writes) or "linear".
    """

    controller: LSTMArchitecture = field(default_factory=lambda: LSTMArchitecture(gac_cells=5))
    read_heads: int = 1
    write_heads: int = 3
    window: int | None = None
    memory_init: str = "identity"
    update_from: str = "read"
    write_activation: str = "tanh"

    def init_weights(self, key: jax.Array) -> dict[str, Any]:
        """Random initial controller weights (a flax params dict)."""
        features = num_features(self.controller.preprocessing) * (1 + self.read_heads)
        inputs = jnp.zeros((features, 1), jnp.float32)
        return self.module().init(key, inputs, self.controller.zero_state(1))["params"]

    def transformation(
        self, weights: dict[str, Any], storage: StateStorage = DEFAULT_STORAGE
    ) -> optax.GradientTransformation:
        """The optimizer with fixed `weights`, as an optax transformation (see `ntm_optimizer`);
        its memory stays in the parameters' dtype, all at once (`storage.dtype` must be None;
        `storage.block` is ignored: the memory reads every coordinate)."""
        if storage.dtype is not None:
            raise ConfigError("a state dtype is supported for the LSTM kinds, not for NTMs")
        return ntm_optimizer(weights, self)

    def module(self) -> NTMController:
        """The controller's flax module."""
        return NTMController(
            hidden_size=self.controller.hidden_size,
            num_layers=self.controller.num_layers,
            gac_cells=self.controller.gac_cells,
            num_outputs=self.read_heads + int(self.update_from == "controller"),
            num_writes=2 * self.write_heads,
        )

    def initial_state(self, coordinates: int, dtype: jnp.dtype = jnp.float32) -> NTMState:
        """Zero controller state and reads, and the memory before any write."""
        return NTMState(
            self.controller.zero_state(coordinates, dtype),
            jnp.zeros((self.read_heads, coordinates), dtype),
            zero_memory(self.window, self.write_heads, coordinates, dtype),
        )


def zero_memory(window: int | None, write_heads: int, coordinates: int, dtype: jnp.dtype) -> Memory:
    """The memory before any write (M = M0): dense if `window` is None, else a window.

    Raises:
      ConfigError: a dense memory of more than `MAX_DENSE_MEMORY_ENTRIES` entries.
    """
    if window is not None:
        zeros = jnp.zeros((window * write_heads, coordinates), dtype)
        return WindowMemory(zeros, zeros)
    if coordinates * coordinates > MAX_DENSE_MEMORY_ENTRIES:
        raise ConfigError(
            f"optimizer.kind ntm_bfgs keeps a dense {coordinates} x {coordinates} memory per "
            f"problem, more than {MAX_DENSE_MEMORY_ENTRIES:,} entries; use optimizer.kind=ntm_lbfgs"
        )
    return DenseMemory(jnp.zeros((coordinates, coordinates), dtype))


def write_memory(memory: Memory, left: jax.Array, right: jax.Array) -> Memory:
    """M <- M + (1/n) sum_h left_h right_h^T; `left`, `right`: (heads, n). A window drops its
    oldest step's vectors."""
    if isinstance(memory, WindowMemory):
        heads = left.shape[0]
        return WindowMemory(
            jnp.concatenate([memory.left[heads:], left]),
            jnp.concatenate([memory.right[heads:], right]),
        )
    return DenseMemory(memory.correction + jnp.einsum("hi,hj->ij", left, right) / left.shape[-1])


def read_memory(memory: Memory, vectors: jax.Array, initial_scale: float) -> jax.Array:
    """M r for each row r of `vectors` (heads, n), where M0 = `initial_scale` * I."""
    if isinstance(memory, WindowMemory):
        coefficients = jnp.einsum("kn,hn->hk", memory.right, vectors) / vectors.shape[-1]
        correction = jnp.einsum("hk,kn->hn", coefficients, memory.left)
    else:
        correction = jnp.einsum("ij,hj->hi", memory.correction, vectors)
    return initial_scale * vectors + correction


def ntm_update(
    weights: dict[str, Any], architecture: NTMArchitecture, grads: jax.Array, state: NTMState
) -> tuple[jax.Array, NTMState]:
    """One NTM optimizer step on one problem's flat gradient vector: controller, write, read;
    returns (updates, new state)."""
    controller = architecture.controller
    features = jnp.concatenate([controller.features(row) for row in (grads, *state.reads)])
    outputs, writes, lstm_state = architecture.module().apply(
        {"params": weights}, features, state.lstm_state
    )
    outputs = controller.output_scale * outputs
    if architecture.write_activation == "tanh":
        writes = jnp.tanh(writes)
    left, right = jnp.split(writes, 2)
    memory = write_memory(state.memory, left, right)
    read_vectors = outputs[-architecture.read_heads :]
    initial_scale = 1.0 if architecture.memory_init == "identity" else 0.0
    reads = read_memory(memory, read_vectors, initial_scale)
    updates = reads[0] if architecture.update_from == "read" else outputs[0]
    return updates, NTMState(lstm_state, reads, memory)


def ntm_optimizer(
    weights: dict[str, Any], architecture: NTMArchitecture
) -> optax.GradientTransformation:
    """An NTM-BFGS or NTM-L-BFGS optimizer with fixed weights, for one problem, as an optax
    transformation; updates are added to the parameters.

    All the parameters it is given are one problem with one memory; `jax.vmap` it to give each
    problem of a batch its own memory, as the rollout does.

    Args:
      weights: the controller's flax params (from `NTMArchitecture.init_weights` or a checkpoint).
      architecture: the controller, heads, memory form and preprocessing the weights were
        trained with.

    Returns:
      An `optax.GradientTransformation` whose state is an `NTMState`.

    Raises:
      ConfigError: (at `init`) an NTM-BFGS memory would be too large; use NTM-L-BFGS.

    Example:
      >>> opt = ntm_optimizer(weights, NTMArchitecture(window=10))
      >>> state = opt.init(params)
      >>> updates, state = opt.update(grads, state)
      >>> params = optax.apply_updates(params, updates)

    References:
      Andrychowicz et al., 2016, "Learning to learn by gradient descent by gradient descent",
      Appendix D.
    """

    def step(grads: jax.Array, state: NTMState) -> tuple[jax.Array, NTMState]:
        return ntm_update(weights, architecture, grads, state)

    return coordinatewise_transformation(weights, architecture.initial_state, step)
