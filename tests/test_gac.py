"""LSTM+GAC: global averaging cells average over one problem's coordinates, never across problems."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from l2lgd.config import Config, LSTMConfig, LSTMGACConfig, with_overrides
from l2lgd.errors import ConfigError
from l2lgd.optimizers import init_learned_weights, learned_optimizer
from l2lgd.optimizers.architecture import IndependentCoordinates
from l2lgd.optimizers.lstm import average_over_coordinates
from l2lgd.rollout import vectorized
from l2lgd.tasks import QuadraticTask, sample_batch

CONFIG = LSTMGACConfig(hidden_size=6, gac_cells=2)
TASK = QuadraticTask(variant="paper", dim=5, init_std=0.5)


def random_weights(config=CONFIG, seed=0):
    """Non-zero weights everywhere (the output layer starts at 0), so updates depend on them."""
    weights = init_learned_weights(jax.random.key(seed), config)
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda w: w + 0.5 * rng.normal(size=w.shape).astype(np.float32), weights)


def run_steps(optimizer, params, problems, num_steps=3, route="vectorized"):
    """`num_steps` optimizer steps on the quadratic; returns the final params and LSTM state.

    `route`: "vectorized" (a batch, each problem alone, as the rollout runs it), "alone" (one
    problem), or "all at once" (a batch whose coordinates the optimizer sees as one problem).
    """
    grad = jax.grad(TASK.loss)
    if route != "alone":
        grad = jax.vmap(grad, in_axes=(0, 0, None))
    if route == "vectorized":
        optimizer = vectorized(optimizer)
    state = optimizer.init(params)
    for _ in range(num_steps):
        updates, state = optimizer.update(grad(params, problems, None), state, params)
        params = params + updates
    return params, state.lstm_state


def test_a_batch_of_two_problems_equals_each_problem_alone():
    weights = random_weights()
    params, problems = sample_batch(TASK, jax.random.key(1), 2)
    batched_params, batched_state = run_steps(learned_optimizer(weights, CONFIG), params, problems)
    for index in range(2):
        alone = jax.tree.map(lambda leaf, i=index: leaf[i], (params, problems))
        expected_params, expected_state = run_steps(
            learned_optimizer(weights, CONFIG), *alone, route="alone"
        )
        np.testing.assert_allclose(batched_params[index], expected_params, rtol=1e-5, atol=1e-6)
        for got, want in zip(
            jax.tree.leaves(batched_state), jax.tree.leaves(expected_state), strict=True
        ):
            # The rollout keeps the problems axis just before the coordinates.
            np.testing.assert_allclose(got[:, index], want, rtol=1e-5, atol=1e-6)


def test_averaging_cells_agree_within_a_problem_and_differ_between_problems():
    params, problems = sample_batch(TASK, jax.random.key(2), 2)
    _, state = run_steps(learned_optimizer(random_weights(), CONFIG), params, problems)
    for hidden, _ in state:
        per_problem = np.asarray(hidden).reshape(CONFIG.hidden_size, 2, TASK.dim)
        averaged, free = per_problem[: CONFIG.gac_cells], per_problem[CONFIG.gac_cells :]
        np.testing.assert_allclose(averaged, averaged[..., :1].repeat(TASK.dim, -1), rtol=1e-6)
        assert np.ptp(free, axis=-1).min() > 0  # ordinary cells: one value per coordinate
        assert np.abs(averaged[:, 0, 0] - averaged[:, 1, 0]).min() > 0


def test_average_over_coordinates_against_numpy():
    values = np.arange(12.0).reshape(2, 6)
    expected = np.repeat(values.mean(-1, keepdims=True), 6, axis=-1)
    np.testing.assert_allclose(average_over_coordinates(jnp.asarray(values)), expected)
    assert average_over_coordinates(jnp.zeros((2, 0))).shape == (2, 0)


def test_the_plain_lstm_is_vectorized_as_it_is_and_equals_each_problem_alone():
    """The plain LSTM's coordinates evolve alone, so the rollout runs it on a batch as one
    problem of all their coordinates (no vmap); that equals each problem's own run. With global
    averaging cells it is not independent, and is vmapped."""
    config = LSTMConfig(hidden_size=CONFIG.hidden_size)
    weights = random_weights(config)
    optimizer = learned_optimizer(weights, config)
    assert isinstance(optimizer, IndependentCoordinates) and vectorized(optimizer) is optimizer
    assert not isinstance(learned_optimizer(random_weights(), CONFIG), IndependentCoordinates)
    params, problems = sample_batch(TASK, jax.random.key(3), 2)
    batched, state = run_steps(optimizer, params, problems)
    columns = params.shape[1]
    for index in range(2):
        alone = jax.tree.map(lambda leaf, i=index: leaf[i], (params, problems))
        expected, expected_state = run_steps(optimizer, *alone, route="alone")
        np.testing.assert_allclose(batched[index], expected, rtol=1e-6)
        for got, want in zip(jax.tree.leaves(state), jax.tree.leaves(expected_state), strict=True):
            block = np.asarray(got)[:, index * columns : (index + 1) * columns]
            np.testing.assert_allclose(block, want, rtol=1e-6, atol=1e-7)
    assert np.abs(batched - params).max() > 1e-3  # the optimizer did move


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["optimizer.kind=gru"], "optimizer.kind"),
        (["optimizer.kind=lstm_gac", "optimizer.gac_cells=21"], "at most optimizer.hidden_size"),
        (["optimizer.gac_cells=0"], "optimizer.gac_cells"),
    ],
)
def test_bad_gac_settings_are_config_errors(overrides, message):
    with pytest.raises(ConfigError, match=message):
        with_overrides(Config(), overrides)
