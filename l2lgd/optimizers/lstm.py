"""The coordinatewise LSTM optimizer of Andrychowicz et al. (2016), as a flax module and an optax factory.

One small LSTM (by default 2 layers of 20 units) is shared by every parameter coordinate; each
coordinate keeps its own hidden state. All coordinates are rows of one matrix, so a step is a few
large matmuls however many tensors the optimizee has.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.flatten_util import ravel_pytree

from l2lgd.config import OptimizerConfig
from l2lgd.optimizers.preprocess import num_features, preprocess

LSTMState = tuple[tuple[jax.Array, jax.Array], ...]
"""Per layer, the (hidden, cell) arrays of shape (hidden_size, coordinates)."""


class CoordinatewiseLSTM(nn.Module):
    """A stack of LSTM layers and a linear output, applied independently to every coordinate.

    Coordinates lie along the *last* axis (inputs: features x coordinates), so that each layer's
    gates are one matmul kernel^T @ [input; hidden] and the weight gradient contracts the long
    contiguous axis: about 1.45x faster meta-training on CPU than coordinates-as-rows
    (scripts/benchmark.py). Parameters are laid out as in flax's Dense (`kernel` of shape
    (in, out) and `bias`), gates in the order input, forget, candidate, output. The forget gate
    gets a +1 bias, as in TensorFlow's and Sonnet's LSTMs. The output layer starts at zero, so
    the untrained optimizer proposes no update.
    """

    hidden_size: int = 20
    num_layers: int = 2
    gac_cells: int = 0
    problems: int = 1

    @nn.compact
    def __call__(self, inputs: jax.Array, state: LSTMState) -> tuple[jax.Array, LSTMState]:
        top, new_state = lstm_layers(inputs, state, self.hidden_size, self.gac_cells, self.problems)
        output = ColumnDense(1, nn.initializers.zeros, name="output")(top)
        return output[0], new_state


def lstm_layers(
    inputs: jax.Array, state: LSTMState, hidden_size: int, gac_cells: int, problems: int
) -> tuple[jax.Array, LSTMState]:
    """The LSTM layers of the calling flax module (params `lstm_0`, `lstm_1`, ...): returns the
    top layer's hidden output and the new state. Call it only inside an `nn.compact` method.

    The first `gac_cells` cells of each layer are global averaging cells: their outputs are
    replaced by their mean over each problem's coordinates (`average_per_problem`).
    """
    layer_input = inputs
    new_state = []
    for layer, (hidden, cell) in enumerate(state):
        stacked = jnp.concatenate([layer_input, hidden], axis=0)
        gates = ColumnDense(4 * hidden_size, name=f"lstm_{layer}")(stacked)
        in_gate, forget_gate, candidate, out_gate = jnp.split(gates, 4, axis=0)
        cell = jax.nn.sigmoid(forget_gate + 1.0) * cell + jax.nn.sigmoid(in_gate) * jnp.tanh(
            candidate
        )
        hidden = jax.nn.sigmoid(out_gate) * jnp.tanh(cell)
        if gac_cells:
            averaged = average_per_problem(hidden[:gac_cells], problems)
            hidden = jnp.concatenate([averaged, hidden[gac_cells:]], axis=0)
        new_state.append((hidden, cell))
        layer_input = hidden
    return layer_input, tuple(new_state)


def average_per_problem(values: jax.Array, problems: int) -> jax.Array:
    """(rows, coordinates) -> each row's mean over each problem's coordinates, broadcast back.

    The coordinates are `problems` contiguous blocks of equal size (see `ravel_coordinates`), so
    a problem is never averaged with another, and a block never spans two devices.
    """
    rows, coordinates = values.shape
    if coordinates == 0:
        return values
    blocks = values.reshape(rows, problems, coordinates // problems)
    return jnp.broadcast_to(blocks.mean(axis=-1, keepdims=True), blocks.shape).reshape(values.shape)


class ColumnDense(nn.Module):
    """nn.Dense for inputs with features on the first axis: kernel^T @ inputs + bias."""

    features: int
    kernel_init: nn.initializers.Initializer = nn.initializers.lecun_normal()

    @nn.compact
    def __call__(self, inputs: jax.Array) -> jax.Array:
        kernel = self.param("kernel", self.kernel_init, (inputs.shape[0], self.features))
        bias = self.param("bias", nn.initializers.zeros, (self.features,))
        return kernel.T @ inputs + bias[:, None]


def zero_lstm_state(
    config: OptimizerConfig, num_coordinates: int, dtype: jnp.dtype = jnp.float32
) -> LSTMState:
    """The initial (all-zero) per-coordinate state."""
    zeros = jnp.zeros((config.hidden_size, num_coordinates), dtype)
    return tuple((zeros, zeros) for _ in range(config.num_layers))


def init_lstm_weights(key: jax.Array, config: OptimizerConfig) -> dict[str, Any]:
    """Random initial LSTM weights (a flax params dict)."""
    module = CoordinatewiseLSTM(config.hidden_size, config.num_layers)
    inputs = jnp.zeros((num_features(config.preprocessing), 1), jnp.float32)
    return module.init(key, inputs, zero_lstm_state(config, 1))["params"]


def lstm_update(
    weights: dict[str, Any],
    config: OptimizerConfig,
    grads: jax.Array,
    state: LSTMState,
    problems: int = 1,
) -> tuple[jax.Array, LSTMState]:
    """One optimizer step on a flat gradient vector: returns (updates, new state).

    `problems`: how many problems' coordinates the vector holds, as equal contiguous blocks;
    only global averaging cells (`config.kind == "lstm_gac"`) depend on it.
    """
    gac_cells = config.gac_cells if config.kind == "lstm_gac" else 0
    module = CoordinatewiseLSTM(config.hidden_size, config.num_layers, gac_cells, problems)
    output, new_state = module.apply({"params": weights}, coordinate_features(grads, config), state)
    return config.output_scale * output, new_state


def coordinate_features(values: jax.Array, config: OptimizerConfig) -> jax.Array:
    """A flat vector preprocessed as `config` says, features first: (features, coordinates)."""
    return jnp.moveaxis(preprocess(values, config.preprocessing, config.preprocessing_p), -1, 0)


def ravel_coordinates(tree: Any) -> tuple[jax.Array, Callable[[jax.Array], Any]]:
    """Flattens a pytree into one coordinate vector, and returns the inverse.

    When every leaf shares its leading axis (a batch of problems, as in every rollout), the
    order is leading-axis-major: each problem's coordinates form one contiguous block, so when
    the problem axis is split across devices the LSTM's rows split the same way and no step
    moves coordinates between devices. Otherwise it is `ravel_pytree`'s order. The order
    changes no result, since the LSTM acts on each coordinate alone.
    """
    leaves, treedef = jax.tree.flatten(tree)
    batch = shared_leading_axis(leaves)
    if batch is None:
        return ravel_pytree(tree)
    widths = [leaf.size // batch for leaf in leaves]
    flat = jnp.concatenate([leaf.reshape(batch, -1) for leaf in leaves], axis=1).reshape(-1)

    def unravel(vector: jax.Array) -> Any:
        columns = jnp.split(vector.reshape(batch, -1), np.cumsum(widths)[:-1], axis=1)
        return treedef.unflatten(
            [
                column.reshape(leaf.shape).astype(leaf.dtype)
                for column, leaf in zip(columns, leaves, strict=True)
            ]
        )

    return flat, unravel


def shared_leading_axis(leaves: list[jax.Array]) -> int | None:
    """The size of the leading axis every leaf has, or None (no leaves, a scalar, or sizes
    that differ)."""
    leading = {leaf.shape[0] if leaf.ndim else None for leaf in leaves}
    return leading.pop() if len(leading) == 1 else None


def batch_size(tree: Any) -> int:
    """The leading axis that every leaf of a batch of problems shares (1 for no leaves)."""
    leaves = jax.tree.leaves(tree)
    batch = shared_leading_axis(leaves)
    if batch is None and leaves:
        shapes = [leaf.shape for leaf in leaves]
        raise ValueError(f"a batch of problems needs one shared leading axis, got shapes {shapes}")
    return 1 if batch is None else batch


class LearnedOptimizerState(NamedTuple):
    """The optax state of the learned optimizer: the LSTM state of every coordinate."""

    lstm_state: LSTMState


def lstm_optimizer(
    weights: dict[str, Any], config: OptimizerConfig, batched: bool = False
) -> optax.GradientTransformation:
    """One coordinatewise LSTM with fixed `weights`, for every parameter, as an optax transformation.

    It works on any pytree of float parameters: the updates are flattened into one vector whose
    coordinates are the LSTM's rows, so it drops into an ordinary optax loop or `optax.chain`.
    The returned updates are meant to be *added* to the parameters (`optax.apply_updates`).

    Args:
      weights: the LSTM's flax params (from `init_lstm_weights` or a checkpoint).
      config: the architecture, preprocessing and output scale the weights were trained with.
      batched: the parameters are a batch of problems (every leaf's leading axis), as in
        rollouts; global averaging cells then average over each problem's coordinates alone.
        Without it, all the parameters are one problem.

    Returns:
      An `optax.GradientTransformation` whose state is a `LearnedOptimizerState`.

    Example:
      >>> opt = lstm_optimizer(weights, config)
      >>> state = opt.init(params)
      >>> updates, state = opt.update(grads, state)
      >>> params = optax.apply_updates(params, updates)

    References:
      Andrychowicz et al., 2016, "Learning to learn by gradient descent by gradient descent".
    """

    def initial_state(coordinates: int, problems: int, dtype: jnp.dtype) -> LearnedOptimizerState:
        del problems
        return LearnedOptimizerState(zero_lstm_state(config, coordinates, dtype))

    def step(
        grads: jax.Array, state: LearnedOptimizerState, problems: int
    ) -> tuple[jax.Array, LearnedOptimizerState]:
        updates, lstm_state = lstm_update(weights, config, grads, state.lstm_state, problems)
        return updates, LearnedOptimizerState(lstm_state)

    return coordinatewise_transformation(weights, initial_state, step, batched)


def coordinatewise_transformation(
    weights: Any,
    initial_state: Callable[[int, int, jnp.dtype], Any],
    step: Callable[[jax.Array, Any, int], tuple[jax.Array, Any]],
    batched: bool,
) -> optax.GradientTransformation:
    """An optax transformation that flattens the gradient pytree into one coordinate vector
    (`ravel_coordinates`) and applies a learned optimizer's `step` to it.

    Args:
      weights: the learned optimizer's weights; their dtype joins the parameters' in the state.
      initial_state: (coordinates, problems, dtype) -> the optimizer's state.
      step: (flat gradients, state, problems) -> (flat updates, new state).
      batched: the parameters are a batch of problems (every leaf's leading axis); otherwise
        they are one problem.
    """

    def problems_in(tree: Any) -> int:
        return batch_size(tree) if batched else 1

    def init_fn(params: Any) -> Any:
        flat_params, _ = ravel_coordinates(params)
        dtype = jnp.result_type(flat_params.dtype, *jax.tree.leaves(weights))
        return initial_state(flat_params.size, problems_in(params), dtype)

    def update_fn(updates: Any, state: Any, params: Any = None) -> tuple[Any, Any]:
        del params
        flat_grads, unravel = ravel_coordinates(updates)
        flat_updates, state = step(flat_grads, state, problems_in(updates))
        return unravel(flat_updates), state

    return optax.GradientTransformation(init_fn, update_fn)
