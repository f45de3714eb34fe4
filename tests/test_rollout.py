"""Rollouts, meta-gradients and evaluation curves, each against a second, independent route."""

import dataclasses
import functools
import logging

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.flatten_util import ravel_pytree

from l2lgd.config import LSTMConfig, MetaConfig
from l2lgd.evaluate import baseline_curves, loss_curves
from l2lgd.meta.unroll import meta_loss
from l2lgd.optimizers import baseline, init_learned_weights, learned_optimizer
from l2lgd.rollout import init_optimizee_state, rollout, sqrt_block_length, vectorized
from l2lgd.tasks import QuadraticTask, make_task, sample_batch

TASK = QuadraticTask(variant="deepmind", dim=3, init_std=0.1)
NUM_PROBLEMS, NUM_STEPS = 3, 3
# Raw gradient inputs make the second-order term of the meta-gradient large enough to see.
CONFIG = LSTMConfig(hidden_size=4, num_layers=2, preprocessing="none")
UNUSED_KEY = jax.random.key(0)  # the quadratic's loss ignores its minibatch key


def assert_trees_allclose(actual, expected, rtol, atol):
    assert jax.tree.structure(actual) == jax.tree.structure(expected)
    for a, e in zip(jax.tree.leaves(actual), jax.tree.leaves(expected), strict=True):
        assert np.shape(a) == np.shape(e)
        np.testing.assert_allclose(a, e, rtol=rtol, atol=atol)


@functools.cache
def random_weights(seed=1):
    """Random weights in the layout init_learned_weights makes, all non-zero (its output layer is 0).

    Kernels N(0, 0.8^2) and biases N(0, 0.1^2): with these the LSTM's output depends strongly
    on its gradient input, so that the second-order part of the meta-gradient is a few percent.
    """
    layout = jax.eval_shape(lambda key: init_learned_weights(key, CONFIG), jax.random.key(0))
    rng = np.random.default_rng(seed)

    def draw(path, leaf):
        scale = 0.8 if path[-1].key == "kernel" else 0.1
        return jnp.asarray(scale * rng.normal(size=leaf.shape), leaf.dtype)

    return jax.tree_util.tree_map_with_path(draw, layout)


@functools.cache
def batch(seed=1):
    return sample_batch(TASK, jax.random.key(seed), NUM_PROBLEMS)


def problem(problems, i):
    return jax.tree.map(lambda leaf: leaf[i], problems)


per_problem_loss_and_grad = jax.jit(jax.value_and_grad(TASK.loss))
per_problem_loss = jax.jit(TASK.loss)


def python_loop(optimizer, params, problems, num_steps):
    """The rollout written plainly: one problem at a time for the gradients, one optax step."""
    opt_state = optimizer.init(params)
    update = jax.jit(optimizer.update)  # one compilation rather than one per primitive
    curve = []
    for _ in range(num_steps):
        results = [
            per_problem_loss_and_grad(params[i], problem(problems, i), UNUSED_KEY)
            for i in range(NUM_PROBLEMS)
        ]
        curve.append([float(loss) for loss, _ in results])
        grads = jnp.stack([grad for _, grad in results])
        updates, opt_state = update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
    curve.append(
        [
            float(per_problem_loss(params[i], problem(problems, i), UNUSED_KEY))
            for i in range(NUM_PROBLEMS)
        ]
    )
    return params, np.array(curve)


# --- rollout --------------------------------------------------------------------------------------

OPTIMIZERS = {
    "adam": lambda: baseline("adam", 0.05),
    "learned": lambda: learned_optimizer(random_weights(), CONFIG),
}


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_rollout_equals_python_loop(name):
    optimizer = OPTIMIZERS[name]()
    params, problems = batch()
    state, losses = jax.jit(
        lambda state, problems: rollout(
            TASK, optimizer, state, problems, jax.random.key(5), NUM_STEPS
        )
    )(init_optimizee_state(optimizer, params), problems)
    expected_params, expected_losses = python_loop(optimizer, params, problems, NUM_STEPS)

    assert losses.shape == (NUM_STEPS + 1, NUM_PROBLEMS)
    np.testing.assert_allclose(losses, expected_losses, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(state.params, expected_params, rtol=1e-4, atol=1e-5)
    assert not np.allclose(losses[-1], losses[0], rtol=1e-3)  # the optimizer did move


def random_gradient_steps(seed, num_steps=3):
    rng = np.random.default_rng(seed)
    return [
        jnp.asarray(rng.normal(size=(NUM_PROBLEMS, TASK.dim)) * 10.0 ** rng.uniform(-3, 1))
        for _ in range(num_steps)
    ]


@pytest.mark.parametrize("name", ["adam", "learned"])
def test_one_optimizer_over_the_batch_equals_one_per_problem(name):
    # The rollout vectorizes the one-problem optimizer over the (problems, dim) batch; for a
    # coordinatewise optimizer that equals one optimizer over all problems' coordinates at once.
    optimizer = OPTIMIZERS[name]()
    params, _ = batch()

    @jax.jit
    def both_routes(gradient_steps):
        batched_state = optimizer.init(params)
        vmapped_state = vectorized(optimizer).init(params)
        batched, vmapped = [], []
        for grads in gradient_steps:
            updates, batched_state = optimizer.update(grads, batched_state, params)
            batched.append(updates)
            updates, vmapped_state = vectorized(optimizer).update(grads, vmapped_state, params)
            vmapped.append(updates)
        return batched, vmapped

    batched, vmapped = both_routes(random_gradient_steps(7))
    assert min(np.abs(np.asarray(updates)).max() for updates in batched) > 1e-4
    assert_trees_allclose(batched, vmapped, rtol=1e-5, atol=1e-6)


# --- meta-gradients -------------------------------------------------------------------------------


def jnp_lstm_update(weights, grads, state):
    """One step of CONFIG's LSTM (no preprocessing, output scale 1), written out plainly with
    coordinates as rows: (updates, new state), `state` a list of (h, c) per layer."""
    layer_input, new_state = grads[:, None], []
    for layer, (h, c) in enumerate(state):
        dense = weights[f"lstm_{layer}"]
        gates = jnp.concatenate([layer_input, h], axis=1) @ dense["kernel"] + dense["bias"]
        i, f, g, o = jnp.split(gates, 4, axis=1)
        c = jax.nn.sigmoid(f + 1.0) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
        h = jax.nn.sigmoid(o) * jnp.tanh(c)
        new_state.append((h, c))
        layer_input = h
    return (layer_input @ weights["output"]["kernel"] + weights["output"]["bias"])[:, 0], new_state


def reference_meta_loss(weights, params, problems, frozen_grads=None):
    """The meta-loss by hand: a Python loop over `jnp_lstm_update`, differentiable end to end.

    With `frozen_grads`, the optimizer is fed those (constant) gradients instead of the live ones,
    while the losses are still those of the live parameters: the function whose derivative the
    paper's first-order meta-gradient is. Also returns the live gradients it saw.
    """
    loss_and_grad = jax.vmap(jax.value_and_grad(TASK.loss), in_axes=(0, 0, None))
    zeros = jnp.zeros((params.size, CONFIG.hidden_size))
    lstm_state = [(zeros, zeros)] * CONFIG.num_layers
    total, seen = 0.0, []
    for t in range(NUM_STEPS):
        losses, grads = loss_and_grad(params, problems, UNUSED_KEY)
        seen.append(grads)
        fed = grads if frozen_grads is None else frozen_grads[t]
        updates, lstm_state = jnp_lstm_update(weights, fed.reshape(-1), lstm_state)
        params = params + updates.reshape(params.shape)
        total = total + losses
    total = total + jax.vmap(TASK.loss, in_axes=(0, 0, None))(params, problems, UNUSED_KEY)
    return jnp.mean(total), seen


def library_meta_value_and_grad(weights, params, problems, second_derivatives):
    """(meta-loss, meta-gradient) of l2lgd.meta.unroll.meta_loss."""
    meta = MetaConfig(
        num_problems=NUM_PROBLEMS,
        num_steps=NUM_STEPS,
        unroll=NUM_STEPS,
        second_derivatives=second_derivatives,
    )
    state = init_optimizee_state(learned_optimizer(weights, CONFIG), params)
    (loss, _), grads = jax.value_and_grad(meta_loss, has_aux=True)(
        weights, TASK, CONFIG, meta, state, problems, jax.random.key(3)
    )
    return loss, grads


@jax.jit
def meta_gradients(weights, params, problems):
    """Every route's (meta-loss, meta-gradient) at `weights`, compiled as one program."""
    reference = jax.value_and_grad(reference_meta_loss, has_aux=True)
    (loss, live_grads), naive = reference(weights, params, problems)
    # The live gradients enter as an input that jax.grad does not differentiate: constants.
    (frozen_loss, _), frozen = reference(weights, params, problems, live_grads)
    return {
        "first_order": library_meta_value_and_grad(weights, params, problems, False),
        "second_order": library_meta_value_and_grad(weights, params, problems, True),
        "naive": (loss, naive),
        "frozen": (frozen_loss, frozen),
    }


@functools.cache
def meta_gradients_at_random_weights():
    return meta_gradients(random_weights(), *batch())


def test_meta_loss_value_equals_reference():
    routes = meta_gradients_at_random_weights()
    expected, _ = routes["naive"]
    for name in ("frozen", "first_order", "second_order"):
        loss, _ = routes[name]
        np.testing.assert_allclose(loss, expected, rtol=1e-5)


def test_first_order_meta_gradient_holds_optimizee_gradients_constant():
    routes = meta_gradients_at_random_weights()
    assert_trees_allclose(routes["first_order"][1], routes["frozen"][1], rtol=1e-4, atol=1e-5)


def test_second_order_meta_gradient_equals_naive_unroll_and_differs_from_first_order():
    routes = meta_gradients_at_random_weights()
    first, second = routes["first_order"][1], routes["second_order"][1]
    assert_trees_allclose(second, routes["naive"][1], rtol=1e-4, atol=1e-5)

    flat_first, flat_second = ravel_pytree(first)[0], ravel_pytree(second)[0]
    assert np.linalg.norm(flat_second - flat_first) > 0.02 * np.linalg.norm(flat_second)


def test_second_order_meta_gradient_matches_finite_differences():
    routes = meta_gradients_at_random_weights()
    flat_second, unravel = ravel_pytree(routes["second_order"][1])
    flat_first = ravel_pytree(routes["first_order"][1])[0]
    flat_weights = ravel_pytree(random_weights())[0]
    # The weight where the two meta-gradients differ most tells them apart best.
    index = int(np.argmax(np.abs(flat_second - flat_first)))
    gap = abs(flat_second[index] - flat_first[index])
    assert gap > 0.5

    def library_loss(flat):
        return meta_gradients(unravel(flat), *batch())["second_order"][0]

    h = 1e-2
    finite_difference = (
        library_loss(flat_weights.at[index].add(h)) - library_loss(flat_weights.at[index].add(-h))
    ) / (2 * h)
    assert abs(finite_difference - flat_second[index]) < 0.01 * gap
    assert abs(finite_difference - flat_first[index]) > 0.99 * gap


# --- evaluation curves ----------------------------------------------------------------------------

RATES = (0.002, 0.02)
# Hashable learning_rate -> optimizer factories (static arguments of loss_curves).
SGD, ADAM = functools.partial(baseline, "sgd"), functools.partial(baseline, "adam")


@functools.cache
def curves(name, seed):
    key = jax.random.key(seed)
    return baseline_curves(TASK, name, jnp.asarray(RATES), key, NUM_PROBLEMS, NUM_STEPS)


def test_baseline_curves_for_a_grid_equal_single_rate_runs():
    grid = curves("sgd", 11)
    assert grid.shape == (len(RATES), NUM_STEPS + 1, NUM_PROBLEMS)
    # loss_curves draws its problems from the first half of its key.
    params, problems = sample_batch(TASK, jax.random.split(jax.random.key(11))[0], NUM_PROBLEMS)
    for rate, rate_curves in zip(RATES, grid, strict=True):
        _, expected = python_loop(baseline("sgd", rate), params, problems, NUM_STEPS)
        np.testing.assert_allclose(rate_curves, expected, rtol=1e-5, atol=1e-6)
    assert not np.allclose(grid[0, -1], grid[1, -1])  # the rates really differ

    single = loss_curves(TASK, SGD, RATES[1], jax.random.key(11), NUM_PROBLEMS, NUM_STEPS)
    np.testing.assert_allclose(grid[1], single, rtol=1e-6, atol=1e-6)


def test_curves_start_from_the_same_problems_for_every_optimizer():
    key = jax.random.key(11)
    sgd = loss_curves(TASK, SGD, RATES[1], key, NUM_PROBLEMS, NUM_STEPS)
    adam = loss_curves(TASK, ADAM, RATES[1], key, NUM_PROBLEMS, NUM_STEPS)
    np.testing.assert_array_equal(adam[0], sgd[0])
    assert not np.allclose(adam[-1], sgd[-1])


def test_baseline_curves_second_call_compiles_nothing(caplog):
    first = curves("sgd", 11)
    rates, key = jnp.asarray([0.005, 0.05], jnp.float32), jax.random.key(12)
    with jax.log_compiles(True), caplog.at_level(logging.WARNING):
        second = baseline_curves(TASK, "sgd", rates, key, NUM_PROBLEMS, NUM_STEPS)
    compilations = [r.getMessage() for r in caplog.records if "compil" in r.getMessage().lower()]
    assert compilations == []
    assert not np.allclose(second, first)  # it did run, with the new rates and key


def test_learned_optimizer_runs_in_float64(tiny_config):
    """The LSTM state takes the parameters' dtype, so a float64 rollout keeps float64 throughout."""
    with jax.enable_x64(True):
        task = make_task(tiny_config.task)
        weights = jax.tree.map(
            lambda w: w.astype(jnp.float64),
            init_learned_weights(jax.random.key(0), tiny_config.optimizer),
        )
        optimizer = learned_optimizer(weights, tiny_config.optimizer)
        params, problems = sample_batch(task, jax.random.key(1), 3)
        params = params.astype(jnp.float64)
        problems = jax.tree.map(lambda x: x.astype(jnp.float64), problems)
        state = init_optimizee_state(optimizer, params)
        final, losses = rollout(task, optimizer, state, problems, jax.random.key(2), 4)
    assert losses.dtype == jnp.float64
    assert final.params.dtype == jnp.float64


def test_log_sum_objective_sums_the_log_losses(tiny_config):
    """meta.objective=log_sum is the mean over problems of the summed log-losses of the unroll."""
    task = make_task(tiny_config.task)
    weights = jax.tree.map(
        lambda w: w + 0.05, init_learned_weights(jax.random.key(0), tiny_config.optimizer)
    )
    params, problems = sample_batch(task, jax.random.key(1), 4)
    optimizer = learned_optimizer(weights, tiny_config.optimizer)
    state = init_optimizee_state(optimizer, params)
    key = jax.random.key(2)
    _, losses = rollout(task, optimizer, state, problems, key, tiny_config.meta.unroll)
    log_config = dataclasses.replace(tiny_config.meta, objective="log_sum")
    value, _ = meta_loss(weights, task, tiny_config.optimizer, log_config, state, problems, key)
    expected = np.mean(np.sum(np.log(np.asarray(losses, np.float64)), axis=0))
    np.testing.assert_allclose(float(value), expected, rtol=1e-5)
    plain, _ = meta_loss(
        weights, task, tiny_config.optimizer, tiny_config.meta, state, problems, key
    )
    assert abs(float(plain) - float(value)) > 1.0


def remat_meta_gradient(remat, num_steps, num_problems=NUM_PROBLEMS):
    """The jitted (meta-loss, meta-gradient) of one unroll under a remat policy."""
    meta = MetaConfig(num_problems=num_problems, num_steps=num_steps, unroll=num_steps, remat=remat)
    grad_fn = jax.value_and_grad(meta_loss, has_aux=True)
    return jax.jit(lambda *args: grad_fn(*args[:1], TASK, CONFIG, meta, *args[1:]))


def remat_arguments(num_problems=NUM_PROBLEMS):
    weights = random_weights()
    params, problems = sample_batch(TASK, jax.random.key(4), num_problems)
    state = init_optimizee_state(learned_optimizer(weights, CONFIG), params)
    return weights, state, problems, jax.random.key(5)


@pytest.mark.parametrize("remat", ["steps", "sqrt"])
def test_rematerialization_changes_no_meta_gradient(remat):
    """Against plain autodiff ("none"), over 12 steps: blocks of 3 for "sqrt"."""
    assert sqrt_block_length(12) == 3
    arguments = remat_arguments()
    (loss, _), grads = remat_meta_gradient(remat, 12)(*arguments)
    (expected_loss, _), expected = remat_meta_gradient("none", 12)(*arguments)
    np.testing.assert_allclose(loss, expected_loss, rtol=1e-6)
    assert_trees_allclose(grads, expected, rtol=1e-4, atol=1e-4)  # float32 summation order


def test_sqrt_remat_memory_grows_like_the_square_root_of_the_unroll():
    """XLA's temporary buffers for 16x the unroll: about 4x with "sqrt", 16x with "steps"."""
    arguments = remat_arguments(num_problems=64)

    def temp_bytes(remat, num_steps):
        compiled = remat_meta_gradient(remat, num_steps, 64).lower(*arguments).compile()
        return compiled.memory_analysis().temp_size_in_bytes

    steps_growth = temp_bytes("steps", 256) / temp_bytes("steps", 16)
    sqrt_growth = temp_bytes("sqrt", 256) / temp_bytes("sqrt", 16)
    assert steps_growth > 10
    assert sqrt_growth < 6
