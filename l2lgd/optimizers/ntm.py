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
vectors learned. NTM-BFGS keeps M as a dense n x n matrix per problem; NTM-L-BFGS keeps only the
write vectors of the last `ntm_window` steps, M = M0 + (1/n) A B^T, so a read costs O(n K) and
fits MNIST-sized problems. With a window as long as the run the two are the same optimizer.

The paper leaves these open; our defaults and why:
  - `ntm_memory_init` "identity": M starts at I, as BFGS starts its inverse Hessian at I. A read
    is then r plus learned low-rank corrections, and the untrained optimizer is an LSTM+GAC.
  - `ntm_update_from` "read": the update is the first head's read i = M r, as the paper's text
    says, so the memory acts on every step as BFGS's H does. "controller" takes the update
    straight from the controller, as the paper's figure draws it.
  - `ntm_write_activation` "tanh": a write moves M by a bounded amount, and the 1/n makes
    b^T r / n a mean over the problem's coordinates (what a global averaging cell computes), so
    a read's size does not grow with the problem's size.
  - 1 read head and 3 write heads: BFGS's inverse-Hessian update is three outer products,
    s u^T + u s^T + c s s^T with u = -H y / (y^T s).
The update and read outputs start at zero (no update before training, as the LSTM); the write
outputs start random, since a zero a and a zero b would give each other zero gradient.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from l2lgd.config import OptimizerConfig
from l2lgd.errors import ConfigError
from l2lgd.optimizers.lstm import (
    ColumnDense,
    LSTMState,
    coordinate_features,
    coordinatewise_transformation,
    lstm_layers,
    zero_lstm_state,
)
from l2lgd.optimizers.preprocess import num_features

MAX_DENSE_MEMORY_ENTRIES = 2**26
"""NTM-BFGS refuses memories of more entries than this (256 MiB in float32, kept at every step
of an unroll for the backward pass); NTM-L-BFGS is the form for bigger problems."""


class DenseMemory(NamedTuple):
    """NTM-BFGS's memory: M - M0 as a dense matrix per problem, (problems, n, n)."""

    correction: jax.Array


class WindowMemory(NamedTuple):
    """NTM-L-BFGS's memory: the last window's write vectors, oldest first, (window * heads,
    coordinates) each, so that M = M0 + (1/n) left^T right per problem."""

    left: jax.Array
    right: jax.Array


Memory = DenseMemory | WindowMemory


class NTMState(NamedTuple):
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
    problems: int
    num_outputs: int
    num_writes: int

    @nn.compact
    def __call__(
        self, inputs: jax.Array, state: LSTMState
    ) -> tuple[jax.Array, jax.Array, LSTMState]:
        top, new_state = lstm_layers(inputs, state, self.hidden_size, self.gac_cells, self.problems)
        outputs = ColumnDense(self.num_outputs, nn.initializers.zeros, name="output")(top)
        writes = ColumnDense(self.num_writes, name="write")(top)
        return outputs, writes, new_state


def ntm_controller(config: OptimizerConfig, problems: int = 1) -> NTMController:
    """The controller module `config` describes."""
    from_controller = config.ntm_update_from == "controller"
    return NTMController(
        hidden_size=config.hidden_size,
        num_layers=config.num_layers,
        gac_cells=config.gac_cells,
        problems=problems,
        num_outputs=config.ntm_read_heads + int(from_controller),
        num_writes=2 * config.ntm_write_heads,
    )


def init_ntm_weights(key: jax.Array, config: OptimizerConfig) -> dict[str, Any]:
    """Random initial controller weights (a flax params dict)."""
    inputs = jnp.zeros((_controller_features(config), 1), jnp.float32)
    return ntm_controller(config).init(key, inputs, zero_lstm_state(config, 1))["params"]


def _controller_features(config: OptimizerConfig) -> int:
    """Input features per coordinate: the gradient's and each read's, preprocessed alike."""
    return num_features(config.preprocessing) * (1 + config.ntm_read_heads)


def zero_memory(
    config: OptimizerConfig, coordinates: int, problems: int, dtype: jnp.dtype
) -> Memory:
    """The memory before any write (M = M0), for `problems` blocks of coordinates."""
    if config.kind == "ntm_lbfgs":
        zeros = jnp.zeros((config.ntm_window * config.ntm_write_heads, coordinates), dtype)
        return WindowMemory(zeros, zeros)
    size = coordinates // problems
    if problems * size * size > MAX_DENSE_MEMORY_ENTRIES:
        raise ConfigError(
            f"optimizer.kind ntm_bfgs keeps a dense {size} x {size} memory for each of "
            f"{problems} problem(s), more than {MAX_DENSE_MEMORY_ENTRIES:,} entries; "
            "use optimizer.kind=ntm_lbfgs"
        )
    return DenseMemory(jnp.zeros((problems, size, size), dtype))


def write_memory(memory: Memory, left: jax.Array, right: jax.Array, problems: int) -> Memory:
    """M <- M + (1/n) sum_h left_h right_h^T for each problem; `left`, `right`: (heads,
    coordinates). A window drops its oldest step's vectors."""
    if isinstance(memory, WindowMemory):
        heads = left.shape[0]
        return WindowMemory(
            jnp.concatenate([memory.left[heads:], left]),
            jnp.concatenate([memory.right[heads:], right]),
        )
    outer = jnp.einsum("hpi,hpj->pij", per_problem(left, problems), per_problem(right, problems))
    return DenseMemory(memory.correction + outer / _block_size(left, problems))


def read_memory(
    memory: Memory, vectors: jax.Array, problems: int, initial_scale: float
) -> jax.Array:
    """M r for each row r of `vectors` (heads, coordinates), problem by problem, where
    M0 = `initial_scale` * I."""
    blocks = per_problem(vectors, problems)
    if isinstance(memory, WindowMemory):
        coefficients = jnp.einsum(
            "kpn,hpn->hkp", per_problem(memory.right, problems), blocks
        ) / _block_size(vectors, problems)
        correction = jnp.einsum("hkp,kpn->hpn", coefficients, per_problem(memory.left, problems))
    else:
        correction = jnp.einsum("pij,hpj->hpi", memory.correction, blocks)
    return (initial_scale * blocks + correction).reshape(vectors.shape)


def per_problem(rows: jax.Array, problems: int) -> jax.Array:
    """(rows, coordinates) -> (rows, problems, n): the coordinates are `problems` contiguous
    blocks (see `ravel_coordinates`)."""
    return rows.reshape(rows.shape[0], problems, _block_size(rows, problems))


def _block_size(rows: jax.Array, problems: int) -> int:
    return rows.shape[-1] // problems


def ntm_update(
    weights: dict[str, Any],
    config: OptimizerConfig,
    grads: jax.Array,
    state: NTMState,
    problems: int = 1,
) -> tuple[jax.Array, NTMState]:
    """One NTM optimizer step on a flat gradient vector of `problems` equal contiguous blocks:
    controller, write, read; returns (updates, new state)."""
    features = jnp.concatenate([coordinate_features(row, config) for row in (grads, *state.reads)])
    outputs, writes, lstm_state = ntm_controller(config, problems).apply(
        {"params": weights}, features, state.lstm_state
    )
    outputs = config.output_scale * outputs
    if config.ntm_write_activation == "tanh":
        writes = jnp.tanh(writes)
    left, right = jnp.split(writes, 2)
    memory = write_memory(state.memory, left, right, problems)
    read_vectors = outputs[-config.ntm_read_heads :]
    initial_scale = 1.0 if config.ntm_memory_init == "identity" else 0.0
    reads = read_memory(memory, read_vectors, problems, initial_scale)
    updates = reads[0] if config.ntm_update_from == "read" else outputs[0]
    return updates, NTMState(lstm_state, reads, memory)


def ntm_optimizer(
    weights: dict[str, Any], config: OptimizerConfig, batched: bool = False
) -> optax.GradientTransformation:
    """An NTM-BFGS or NTM-L-BFGS optimizer (`config.kind`) with fixed weights, as an optax
    transformation; updates are added to the parameters.

    Args:
      weights: the controller's flax params (from `init_ntm_weights` or a checkpoint).
      config: the architecture, heads, memory form and preprocessing the weights were trained
        with.
      batched: the parameters are a batch of problems (every leaf's leading axis), each with its
        own memory; otherwise all parameters are one problem with one memory.

    Returns:
      An `optax.GradientTransformation` whose state is an `NTMState`.

    Raises:
      ConfigError: (at `init`) an NTM-BFGS memory would be too large; use NTM-L-BFGS.

    Example:
      >>> opt = ntm_optimizer(weights, config)
      >>> state = opt.init(params)
      >>> updates, state = opt.update(grads, state)
      >>> params = optax.apply_updates(params, updates)

    References:
      Andrychowicz et al., 2016, "Learning to learn by gradient descent by gradient descent",
      Appendix D.
    """

    def initial_state(coordinates: int, problems: int, dtype: jnp.dtype) -> NTMState:
        reads = jnp.zeros((config.ntm_read_heads, coordinates), dtype)
        return NTMState(
            zero_lstm_state(config, coordinates, dtype),
            reads,
            zero_memory(config, coordinates, problems, dtype),
        )

    def step(grads: jax.Array, state: NTMState, problems: int) -> tuple[jax.Array, NTMState]:
        return ntm_update(weights, config, grads, state, problems)

    return coordinatewise_transformation(weights, initial_state, step, batched)
