"""The coordinatewise LSTM optimizer of Andrychowicz et al. (2016), as a flax module and an optax factory.

One small LSTM (by default 2 layers of 20 units) is shared by every parameter coordinate of one
problem; each coordinate keeps its own hidden state. All coordinates are columns of one matrix,
so a step is a few large matmuls however many tensors the optimizee has. The optimizer is written
for one problem; the rollout vectorizes it over a batch of problems with `jax.vmap`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.flatten_util import ravel_pytree

from l2lgd.optimizers.architecture import (
    DEFAULT_STORAGE,
    CoordinatewiseState,
    IndependentCoordinates,
    StateStorage,
    coordinatewise,
    join_problems,
    split_problems,
)
from l2lgd.optimizers.preprocess import (
    normalized_features,
    num_features,
    preprocess,
    update_moments,
)

LSTMState = tuple[tuple[jax.Array, jax.Array], ...]
"""Per layer, the (hidden, cell) arrays of shape (hidden_size, coordinates)."""
PerCoordinate = tuple[LSTMState, jax.Array | None]
"""The LSTM state and the running moments (or None) of some coordinates."""


class CoordinatewiseLSTM(nn.Module):
    """A stack of LSTM layers and a linear output, applied independently to every coordinate.

    Coordinates lie along the *last* axis (inputs: features x coordinates), so that each layer's
    gates are one matmul kernel^T @ [input; hidden] and the weight gradient contracts the long
    contiguous axis, which is faster on CPU than coordinates-as-rows (scripts/benchmark.py). The
    layers are `coordinatewise` functions, so a vmap over problems keeps them one matmul each.
    Parameters are laid out as in flax's Dense (`kernel` of shape (in, out) and `bias`), gates in
    the order input, forget, candidate, output. The forget gate gets a +1 bias, as in
    TensorFlow's and Sonnet's LSTMs. The output layer starts at zero, so the untrained optimizer
    proposes no update.
    """

    hidden_size: int = 20
    num_layers: int = 2
    gac_cells: int = 0

    @nn.compact
    def __call__(self, inputs: jax.Array, state: LSTMState) -> tuple[jax.Array, LSTMState]:
        top, new_state = lstm_layers(inputs, state, self.hidden_size, self.gac_cells)
        output = ColumnDense(1, nn.initializers.zeros, name="output")(top)
        return output[0], new_state


def lstm_layers(
    inputs: jax.Array, state: LSTMState, hidden_size: int, gac_cells: int
) -> tuple[jax.Array, LSTMState]:
    """The LSTM layers of the calling flax module (params `lstm_0`, `lstm_1`, ...): returns the
    top layer's hidden output and the new state. Call it only inside an `nn.compact` method.

    The first `gac_cells` cells of each layer are global averaging cells: their outputs are
    replaced by their mean over the problem's coordinates (`average_over_coordinates`).
    """
    layer_input = inputs
    new_state = []
    for layer, (hidden, cell) in enumerate(state):
        hidden, cell = ColumnLSTMLayer(hidden_size, name=f"lstm_{layer}")(layer_input, hidden, cell)
        if gac_cells:
            hidden = global_averaging(gac_cells)(hidden)
        new_state.append((hidden, cell))
        layer_input = hidden
    return layer_input, tuple(new_state)


def average_over_coordinates(values: jax.Array) -> jax.Array:
    """(rows, coordinates) -> each row's mean over the coordinates, broadcast back: what a global
    averaging cell passes on. Under the rollout's vmap a problem is never averaged with another."""
    return jnp.broadcast_to(values.mean(axis=-1, keepdims=True), values.shape)


@functools.cache
def global_averaging(cells: int) -> Callable[[jax.Array], jax.Array]:
    """hidden -> hidden with its first `cells` rows averaged over the coordinates.

    Under `jax.vmap` over problems it runs on all problems' coordinates side by side (as the
    `coordinatewise` layers around it do), averaging each problem's block alone, so that no
    layer's output is transposed to average it.
    """

    def replace(hidden: jax.Array) -> jax.Array:
        return jnp.concatenate([average_over_coordinates(hidden[:cells]), hidden[cells:]])

    custom = jax.custom_batching.custom_vmap(replace)

    @custom.def_vmap
    def side_by_side(axis_size: int, in_mapped: list[bool], hidden: jax.Array) -> tuple[Any, Any]:
        joined = join_problems(hidden, in_mapped[0], axis_size)
        blocks = joined[:cells].reshape(cells, axis_size, -1)
        means = jnp.broadcast_to(blocks.mean(axis=-1, keepdims=True), blocks.shape)
        averaged = jnp.concatenate([means.reshape(cells, -1), joined[cells:]])
        return split_problems(averaged, axis_size), True

    return custom


class ColumnLSTMLayer(nn.Module):
    """One LSTM layer for inputs with features on the first axis; params as `ColumnDense`'s, of
    the gates from [inputs; hidden]."""

    hidden_size: int

    @nn.compact
    def __call__(
        self, inputs: jax.Array, hidden: jax.Array, cell: jax.Array
    ) -> tuple[jax.Array, jax.Array]:
        shape = (inputs.shape[0] + self.hidden_size, 4 * self.hidden_size)
        kernel = self.param("kernel", nn.initializers.lecun_normal(), shape)
        bias = self.param("bias", nn.initializers.zeros, (4 * self.hidden_size,))
        return lstm_cell({"kernel": kernel, "bias": bias}, inputs, hidden, cell)


@coordinatewise
def lstm_cell(
    weights: dict[str, jax.Array], inputs: jax.Array, hidden: jax.Array, cell: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """One LSTM step of every coordinate: the new (hidden, cell).

    The four gates go through one sigmoid, with tanh(x) = 2 sigmoid(2x) - 1 for the candidate
    and the forget gate's +1 bias as a shift: one elementwise pass over the gate matrix, which
    XLA on CPU fuses better than four passes over its slices (1.15-1.25x faster meta-iterations
    on MNIST and quadratics; scripts/interleaved_benchmark.py).
    """
    gates = column_dense(weights, jnp.concatenate([inputs, hidden], axis=0))
    scale, shift = gate_scale_and_shift(gates.shape[0] // 4, gates.dtype)
    in_gate, forget_gate, candidate, out_gate = jnp.split(
        jax.nn.sigmoid(gates * scale + shift), 4, axis=0
    )
    cell = forget_gate * cell + in_gate * (2.0 * candidate - 1.0)
    return out_gate * jnp.tanh(cell), cell


def gate_scale_and_shift(cells: int, dtype: jnp.dtype) -> tuple[np.ndarray, np.ndarray]:
    """Per gate row (input, forget, candidate, output; `cells` rows each), the sigmoid's input
    is gate * scale + shift: the candidate doubled (for its tanh), the forget gate shifted by +1."""
    scale = np.repeat(np.array([1.0, 1.0, 2.0, 1.0]), cells)[:, None].astype(dtype)
    shift = np.repeat(np.array([0.0, 1.0, 0.0, 0.0]), cells)[:, None].astype(dtype)
    return scale, shift


def column_dense(weights: dict[str, jax.Array], inputs: jax.Array) -> jax.Array:
    """kernel^T @ inputs + bias, for inputs with features on the first axis."""
    return weights["kernel"].T @ inputs + weights["bias"][:, None]


coordinatewise_dense = coordinatewise(column_dense)


class ColumnDense(nn.Module):
    """nn.Dense for inputs with features on the first axis: kernel^T @ inputs + bias."""

    features: int
    kernel_init: nn.initializers.Initializer = nn.initializers.lecun_normal()

    @nn.compact
    def __call__(self, inputs: jax.Array) -> jax.Array:
        kernel = self.param("kernel", self.kernel_init, (inputs.shape[0], self.features))
        bias = self.param("bias", nn.initializers.zeros, (self.features,))
        return coordinatewise_dense({"kernel": kernel, "bias": bias}, inputs)


class LearnedOptimizerState(CoordinatewiseState):
    """The optax state of the learned optimizer: the LSTM state of every coordinate and, for
    the "normalized" preprocessing, its running moments (`update_moments`; None otherwise)."""

    lstm_state: LSTMState
    moments: jax.Array | None = None


@dataclass(frozen=True)
class LSTMArchitecture:
    """The coordinatewise LSTM optimizer (or LSTM+GAC) minus its weights: everything the weights
    were trained with. Hashable, so that compiled programs can key on it.

    Attributes:
      hidden_size: cells per layer.
      num_layers: LSTM layers.
      gac_cells: the first `gac_cells` cells of each layer are global averaging cells
        (the paper's LSTM+GAC); 0 for the plain LSTM.
      preprocessing: "none" (the raw gradient), "log_sign" (the paper's Appendix A) or
        "normalized" (the gradient and its momenta over a running root mean square, which
        does not change when the loss is rescaled; `l2lgd.optimizers.preprocess`).
      preprocessing_p: the p of "log_sign".
      output_scale: the LSTM's output times this is the update.
      second_moment_decay: the decay of "normalized"'s running mean square.
      momentum_decays: "normalized" also feeds one running mean of the gradient per decay.
      log_rms_feature: "normalized" also feeds the log of the running RMS over
        `preprocessing_p` (`l2lgd.optimizers.preprocess.log_rms_feature`): the gradient's scale.
    """

    hidden_size: int = 20
    num_layers: int = 2
    gac_cells: int = 0
    preprocessing: str = "none"
    preprocessing_p: float = 10.0
    output_scale: float = 1.0
    second_moment_decay: float = 0.95
    momentum_decays: tuple[float, ...] = ()
    log_rms_feature: bool = False

    @property
    def num_moments(self) -> int:
        """Running moments kept per coordinate: 0 unless the preprocessing is "normalized"."""
        return 1 + len(self.momentum_decays) if self.preprocessing == "normalized" else 0

    def init_weights(self, key: jax.Array) -> dict[str, Any]:
        """Random initial LSTM weights (a flax params dict); the output layer starts at zero."""
        features = num_features(self.preprocessing, self.momentum_decays, self.log_rms_feature)
        inputs = jnp.zeros((features, 1))
        return self.module().init(key, inputs, self.zero_state(1))["params"]

    def transformation(
        self, weights: dict[str, Any], storage: StateStorage = DEFAULT_STORAGE
    ) -> optax.GradientTransformation:
        """The optimizer with fixed `weights`, as an optax transformation (see `lstm_optimizer`)."""
        return lstm_optimizer(weights, self, storage)

    def module(self) -> CoordinatewiseLSTM:
        """The flax module of this architecture."""
        return CoordinatewiseLSTM(self.hidden_size, self.num_layers, self.gac_cells)

    def zero_state(self, num_coordinates: int, dtype: jnp.dtype = jnp.float32) -> LSTMState:
        """The initial (all-zero) per-coordinate state."""
        zeros = jnp.zeros((self.hidden_size, num_coordinates), dtype)
        return tuple((zeros, zeros) for _ in range(self.num_layers))

    def features(self, values: jax.Array) -> jax.Array:
        """A flat vector preprocessed as this architecture says, features first: (features,
        coordinates). Not for "normalized", whose features need the running moments."""
        if self.num_moments:
            raise ValueError(
                "the normalized preprocessing needs running moments: use transformation"
            )
        return jnp.moveaxis(preprocess(values, self.preprocessing, self.preprocessing_p), -1, 0)


def lstm_update(
    weights: dict[str, Any], architecture: LSTMArchitecture, grads: jax.Array, state: LSTMState
) -> tuple[jax.Array, LSTMState]:
    """One optimizer step on one problem's flat gradient vector: returns (updates, new state)."""
    return lstm_on_features(weights, architecture, architecture.features(grads), state)


def lstm_on_features(
    weights: dict[str, Any], architecture: LSTMArchitecture, features: jax.Array, state: LSTMState
) -> tuple[jax.Array, LSTMState]:
    """One optimizer step from preprocessed (features, coordinates) inputs: (updates, new state)."""
    if architecture.gac_cells:
        output, new_state = architecture.module().apply({"params": weights}, features, state)
    else:
        output, new_state = independent_lstm(weights, features, state)
    return architecture.output_scale * output, new_state


def independent_lstm(
    weights: dict[str, Any], features: jax.Array, state: LSTMState
) -> tuple[jax.Array, LSTMState]:
    """`CoordinatewiseLSTM` without global averaging cells, in plain JAX: the same flax params
    and the same arithmetic, with none of the `coordinatewise` batching rules, which a
    transformation of `IndependentCoordinates` never needs."""
    layer_input, new_state = features, []
    for layer, (hidden, cell) in enumerate(state):
        hidden, cell = lstm_cell.fun(weights[f"lstm_{layer}"], layer_input, hidden, cell)
        new_state.append((hidden, cell))
        layer_input = hidden
    return column_dense(weights["output"], layer_input)[0], tuple(new_state)


def lstm_optimizer(
    weights: dict[str, Any],
    architecture: LSTMArchitecture,
    storage: StateStorage = DEFAULT_STORAGE,
) -> optax.GradientTransformation:
    """One coordinatewise LSTM with fixed `weights`, for one problem, as an optax transformation.

    It works on any pytree of float parameters: the updates are flattened into one vector whose
    coordinates are the LSTM's columns, so it drops into an ordinary optax loop or `optax.chain`.
    All the parameters it is given are one problem (global averaging cells average over all of
    them). Without global averaging cells every coordinate evolves alone
    (`IndependentCoordinates`): a batch of problems is then simply more coordinates, and the
    rollout runs it as it is; with them, `jax.vmap` it to give each problem its own averages,
    as the rollout does. The returned updates are meant to be *added* to the parameters (`optax.apply_updates`).

    Args:
      weights: the LSTM's flax params (from `LSTMArchitecture.init_weights` or a checkpoint).
      architecture: the architecture, preprocessing and output scale the weights were trained with.
      storage: the dtype the LSTM state is kept in between steps, and, without global
        averaging cells, the block of coordinates updated at a time (`StateStorage`).

    Returns:
      An `optax.GradientTransformation` whose state is a `LearnedOptimizerState`.

    Example:
      >>> opt = lstm_optimizer(weights, LSTMArchitecture(preprocessing="log_sign"))
      >>> state = opt.init(params)
      >>> updates, state = opt.update(grads, state)
      >>> params = optax.apply_updates(params, updates)

    References:
      Andrychowicz et al., 2016, "Learning to learn by gradient descent by gradient descent".
    """

    block = None if architecture.gac_cells else storage.block  # GAC averages over all

    def initial_state(coordinates: int, dtype: jnp.dtype) -> LearnedOptimizerState:
        dtype = storage.dtype or dtype
        blocks = block_count(coordinates, block)
        leading, width = ((), coordinates) if blocks is None else ((blocks,), block)
        zeros = jnp.zeros((*leading, architecture.hidden_size, width), dtype)
        moments = None
        if architecture.num_moments:
            moments = jnp.zeros((*leading, architecture.num_moments, width), dtype)
        lstm_state = tuple((zeros, zeros) for _ in range(architecture.num_layers))
        return LearnedOptimizerState(lstm_state, moments)

    def update(grads: jax.Array, state: PerCoordinate) -> tuple[jax.Array, PerCoordinate]:
        stored = jax.tree.leaves(state)[0].dtype
        compute = jnp.result_type(grads.dtype, *jax.tree.leaves(weights))
        lstm_state, moments = jax.tree.map(lambda x: x.astype(compute), state)
        if moments is None:
            features = architecture.features(grads)
        else:
            moments = update_moments(
                grads, moments, architecture.second_moment_decay, architecture.momentum_decays
            )
            log_rms_p = architecture.preprocessing_p if architecture.log_rms_feature else None
            features = normalized_features(grads, moments, log_rms_p)
        updates, lstm_state = lstm_on_features(weights, architecture, features, lstm_state)
        return updates, jax.tree.map(lambda x: x.astype(stored), (lstm_state, moments))

    def step(
        grads: jax.Array, state: LearnedOptimizerState
    ) -> tuple[jax.Array, LearnedOptimizerState]:
        per_coordinate = (state.lstm_state, state.moments)
        if state.lstm_state[0][0].ndim == 2:
            updates, per_coordinate = update(grads, per_coordinate)
        else:
            updates, per_coordinate = by_blocks(update, grads, per_coordinate)
        return updates, LearnedOptimizerState(*per_coordinate)

    if architecture.gac_cells:  # averages over the problem's coordinates
        return coordinatewise_transformation(weights, initial_state, step)
    return IndependentCoordinates(
        *coordinatewise_transformation(weights, initial_state, step, ravel_by_rows)
    )


def block_count(coordinates: int, block: int | None) -> int | None:
    """How many blocks of `block` coordinates (the last one padded) hold `coordinates`; None
    (all at once) without a block or for fewer than two blocks' worth."""
    if block is None or coordinates < 2 * block:
        return None
    return -(-coordinates // block)


def by_blocks(
    update: Callable[[jax.Array, Any], tuple[jax.Array, Any]], grads: jax.Array, state: Any
) -> tuple[jax.Array, Any]:
    """`update(grads, state)` of independent coordinates, one block at a time: `state`'s leaves
    are (blocks, ..., block); `grads` is padded with zeros to blocks x block, and the padding's
    updates are dropped. Each block's temporaries stay in cache, where the whole vector's would
    stream through memory."""
    blocks, block = jax.tree.leaves(state)[0].shape[0], jax.tree.leaves(state)[0].shape[-1]
    padded = jnp.pad(grads, (0, blocks * block - grads.shape[0])).reshape(blocks, block)
    updates, state = jax.lax.map(lambda pair: update(*pair), (padded, state))
    return updates.reshape(-1)[: grads.shape[0]], state


def coordinatewise_transformation(
    weights: Any,
    initial_state: Callable[[int, jnp.dtype], Any],
    step: Callable[[jax.Array, Any], tuple[jax.Array, Any]],
    ravel: Callable[[Any], tuple[jax.Array, Callable[[jax.Array], Any]]] = ravel_pytree,
) -> optax.GradientTransformation:
    """An optax transformation that flattens one problem's gradient pytree into one coordinate
    vector (`ravel`) and applies a learned optimizer's `step` to it.

    Args:
      weights: the learned optimizer's weights; their dtype joins the parameters' in the state.
      initial_state: (coordinates, dtype) -> the optimizer's state.
      step: (flat gradients, state) -> (flat updates, new state).
      ravel: tree -> (flat vector, its inverse); any order of the coordinates will do for an
        optimizer whose coordinates evolve alone (`ravel_by_rows`).
    """

    def init_fn(params: Any) -> Any:
        flat_params, _ = ravel(params)
        dtype = jnp.result_type(flat_params.dtype, *jax.tree.leaves(weights))
        return initial_state(flat_params.size, dtype)

    def update_fn(updates: Any, state: Any, params: Any = None) -> tuple[Any, Any]:
        del params
        flat_grads, unravel = ravel(updates)
        flat_updates, state = step(flat_grads, state)
        return unravel(flat_updates.astype(flat_grads.dtype)), state

    return optax.GradientTransformation(init_fn, update_fn)


def ravel_by_rows(tree: Any) -> tuple[jax.Array, Callable[[jax.Array], Any]]:
    """`ravel_pytree`, but row after row when every leaf has the same leading axis: a batch of
    problems then lies problem after problem, so that the problems a device holds stay one
    contiguous block of coordinates (no traffic between devices; `l2lgd.sharding`)."""
    leaves, treedef = jax.tree.flatten(tree)
    rows = {leaf.shape[0] if leaf.ndim else None for leaf in leaves}
    if len(rows) != 1 or None in rows or 0 in rows:
        return ravel_pytree(tree)
    (count,) = rows
    widths = [leaf.size // count for leaf in leaves]
    flat = jnp.concatenate([leaf.reshape(count, -1) for leaf in leaves], axis=1).reshape(-1)

    def unravel(vector: jax.Array) -> Any:
        columns = jnp.split(vector.reshape(count, -1), np.cumsum(widths)[:-1], axis=1)
        return treedef.unflatten(
            [
                column.reshape(leaf.shape).astype(leaf.dtype)
                for column, leaf in zip(columns, leaves, strict=True)
            ]
        )

    return flat, unravel
