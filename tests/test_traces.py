"""Update traces (Figures 10-13) against hand-written runs, and `l2l trace` end to end."""

import json

import jax
import numpy as np
import optax
from test_cli import PNG_MAGIC, assert_user_error, l2l

from l2lgd.optimizers import learned_optimizer
from l2lgd.sources import load_learned
from l2lgd.tasks import QuadraticTask, sample_batch
from l2lgd.traces import chosen_coordinates, traced_run, update_traces

TASK = QuadraticTask(variant="paper", dim=6, init_std=0.5)
KEY = jax.random.key(5)
COORDINATES = np.array([1, 4])


def the_problem():
    """The problem and start `update_traces` draws from KEY."""
    params, problems = sample_batch(TASK, jax.random.split(KEY)[0], 1)
    return np.asarray(params[0], np.float64), jax.tree.map(lambda a: np.asarray(a[0]), problems)


def test_sgd_trace_is_minus_the_learning_rate_times_the_closed_form_gradient():
    theta, problem = the_problem()
    expected = []
    for _ in range(5):
        gradient = 2 * problem.W.T @ (problem.W @ theta - problem.y)  # of sum((W theta - y)^2)
        expected.append(-0.01 * gradient[COORDINATES])
        theta = theta - 0.01 * gradient
    traces = update_traces(TASK, optax.sgd(0.01), KEY, 5, COORDINATES)
    np.testing.assert_allclose(traces, expected, rtol=1e-4, atol=1e-6)


def test_learned_trace_equals_a_plain_optax_loop():
    learned = load_learned("quadratic")
    optimizer = learned_optimizer(learned.weights, learned.config)
    theta, problem = the_problem()
    theta = theta.astype(np.float32)
    state, expected = optimizer.init(theta), []
    for _ in range(4):
        grads = jax.grad(TASK.loss)(theta, problem, None)
        updates, state = optimizer.update(grads, state, theta)
        expected.append(np.asarray(updates)[COORDINATES])
        theta = theta + updates
    traces = update_traces(TASK, optimizer, KEY, 4, COORDINATES)
    np.testing.assert_allclose(traces, expected, rtol=1e-5, atol=1e-7)


def test_a_second_trace_of_the_same_optimizer_compiles_nothing():
    optimizer = optax.adam(0.1)
    update_traces(TASK, optimizer, KEY, 3, COORDINATES)
    before = traced_run._cache_size()
    again = update_traces(TASK, optimizer, jax.random.key(6), 3, COORDINATES)
    assert traced_run._cache_size() == before
    assert not np.allclose(again, update_traces(TASK, optimizer, KEY, 3, COORDINATES))


def test_chosen_coordinates_are_distinct_and_in_range():
    chosen = chosen_coordinates(TASK, 6, jax.random.key(0))
    assert sorted(chosen.tolist()) == list(range(6))


def test_trace_command_writes_the_updates_and_a_figure(tmp_path):
    result = l2l(
        "trace",
        "--optimizer",
        "quadratic",
        "--optimizer",
        "adam:0.1",
        "--coordinates",
        "3",
        "--set",
        "eval.num_steps=7",
        "--out",
        tmp_path,
    )
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "traces.json").read_text())
    assert record["task"] == "quadratic" and len(record["coordinates"]) == 3
    assert list(record["updates"]) == ["LSTM (pretrained quadratic)", "adam (lr 0.1)"]
    assert np.shape(record["updates"]["adam (lr 0.1)"]) == (7, 3)
    assert (tmp_path / "traces.png").read_bytes().startswith(PNG_MAGIC)


def test_trace_command_rejects_more_coordinates_than_the_task_has(tmp_path):
    result = l2l("trace", "--optimizer", "sgd:0.1", "--coordinates", "11", "--out", tmp_path)
    assert_user_error(result, "1 to 10 coordinates")
