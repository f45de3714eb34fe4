"""Task families: the quadratic's loss and gradient, its sampling distributions, batches, lookup."""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from l2lgd.config import QuadraticTaskConfig
from l2lgd.errors import ConfigError
from l2lgd.tasks import QuadraticProblem, QuadraticTask, make_task, sample_batch

VARIANTS = ("paper", "deepmind")

# One compiled program per (task, batch size) keeps the file fast; eager vmap compiles op by op.
jit_sample_batch = jax.jit(sample_batch, static_argnums=(0, 2))


INIT_STD = 0.3


@functools.cache
def _many_problems(variant):
    """Many problems of one variant (sampled once per test session)."""
    task = QuadraticTask(variant=variant, dim=6, init_std=INIT_STD)
    params, problems = jit_sample_batch(task, jax.random.key(123), 400)
    return task, np.asarray(params), np.asarray(problems.W), np.asarray(problems.y)


def numpy_loss(W, y, theta):
    residual = np.asarray(W, np.float64) @ np.asarray(theta, np.float64) - np.asarray(y, np.float64)
    return np.sum(residual**2)


def numpy_grad(W, y, theta):
    W, y, theta = (np.asarray(a, np.float64) for a in (W, y, theta))
    return 2.0 * W.T @ (W @ theta - y)


@pytest.mark.parametrize("variant", VARIANTS)
def test_quadratic_loss_and_grad_match_closed_form(variant):
    task, params, W, y = _many_problems(variant)
    loss_and_grad = jax.jit(jax.vmap(jax.value_and_grad(task.loss)))
    some = slice(0, 3)
    keys = jax.random.split(jax.random.key(99), 3)  # the loss ignores its key

    losses, grads = loss_and_grad(params[some], QuadraticProblem(W[some], y[some]), keys)

    for i in range(3):
        expected_loss = numpy_loss(W[i], y[i], params[i])
        assert expected_loss > 0
        np.testing.assert_allclose(losses[i], expected_loss, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(
            grads[i], numpy_grad(W[i], y[i], params[i]), rtol=1e-4, atol=1e-5
        )


def test_quadratic_loss_on_hand_made_problem():
    # W theta - y = [1*1 + 2*(-1) - 3, 0*1 + 4*(-1) - 1] = [-4, -5]: loss 41, grad 2 W^T r.
    problem = QuadraticProblem(jnp.array([[1.0, 2.0], [0.0, 4.0]]), jnp.array([3.0, 1.0]))
    theta = jnp.array([1.0, -1.0])
    task = QuadraticTask(dim=2)
    loss, grad = jax.value_and_grad(task.loss)(theta, problem, jax.random.key(0))
    np.testing.assert_allclose(loss, 41.0, rtol=1e-6)
    np.testing.assert_allclose(grad, [2 * (-4.0), 2 * (2 * -4.0 + 4 * -5.0)], rtol=1e-6)


def test_loss_ignores_the_minibatch_key():
    task, params, W, y = _many_problems("paper")
    problem, theta = QuadraticProblem(W[0], y[0]), params[0]
    assert task.loss(theta, problem, jax.random.key(1)) == task.loss(
        theta, problem, jax.random.key(2)
    )


def test_paper_variant_is_standard_gaussian():
    _, _, W, y = _many_problems("paper")
    for values in (W.ravel(), y.ravel()):
        assert (values < 0).mean() > 0.4  # a uniform [0, 1) draw would have none
        assert abs(values.mean()) < 0.05
        assert abs(values.std() - 1.0) < 0.05
    assert np.abs(W).max() > 2.5  # Gaussian tails, beyond any [0, 1) draw


def test_deepmind_variant_is_uniform_unit_interval():
    _, _, W, y = _many_problems("deepmind")
    for values in (W.ravel(), y.ravel()):
        assert values.min() >= 0.0
        assert values.max() < 1.0
        assert abs(values.mean() - 0.5) < 0.02
        assert abs(values.std() - np.sqrt(1 / 12)) < 0.02


@pytest.mark.parametrize("variant", VARIANTS)
def test_initial_params_are_gaussian_with_init_std(variant):
    _, theta0, _, _ = _many_problems(variant)
    assert theta0.shape == (400, 6)
    assert abs(theta0.mean()) < 0.1 * INIT_STD
    np.testing.assert_allclose(theta0.std(), INIT_STD, rtol=0.05)
    assert (theta0 < 0).mean() > 0.4


@pytest.mark.parametrize("variant", VARIANTS)
def test_sample_batch_shapes_and_determinism(variant):
    task = QuadraticTask(variant=variant, dim=3, init_std=0.01)
    params, problems = jit_sample_batch(task, jax.random.key(7), 5)
    assert params.shape == (5, 3)
    assert problems.W.shape == (5, 3, 3)
    assert problems.y.shape == (5, 3)
    assert 0 < np.abs(params).max() < 0.05  # init_std = 0.01

    again = jit_sample_batch(task, jax.random.key(7), 5)
    other = jit_sample_batch(task, jax.random.key(8), 5)
    for a, b in zip(jax.tree.leaves((params, problems)), jax.tree.leaves(again), strict=True):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(jax.tree.leaves((params, problems)), jax.tree.leaves(other), strict=True):
        assert not np.any(np.asarray(a) == np.asarray(b))
    for leaf in (params, problems.W, problems.y):  # and the problems of a batch differ
        rows = np.asarray(leaf).reshape(5, -1)
        assert len({row.tobytes() for row in rows}) == 5


def test_make_task_builds_the_configured_quadratic():
    config = QuadraticTaskConfig(variant="deepmind", dim=3, init_std=0.2)
    assert make_task(config) == QuadraticTask(variant="deepmind", dim=3, init_std=0.2)
    assert jax.tree.leaves(make_task(config)) == []  # a pytree; its settings are static


def test_make_task_rejects_unknown_name():
    config = dataclasses.replace(QuadraticTaskConfig(), name="imagenet")  # bypasses validate()
    with pytest.raises(ConfigError, match="imagenet"):
        make_task(config)


@pytest.mark.parametrize("condition_number", [1.0, 100.0, 1e4])
def test_conditioned_quadratics_have_the_hessian_condition_number_asked_for(condition_number):
    task = QuadraticTask(variant="conditioned", dim=8, condition_number=condition_number)
    _, problems = jit_sample_batch(task, jax.random.key(5), 3)
    for W in np.asarray(problems.W, np.float64):
        hessian_eigenvalues = np.linalg.eigvalsh(2.0 * W.T @ W)
        np.testing.assert_allclose(hessian_eigenvalues.max(), 2.0, rtol=1e-4)
        np.testing.assert_allclose(
            hessian_eigenvalues.max() / hessian_eigenvalues.min(), condition_number, rtol=1e-3
        )
    # random rotations: the problems differ, and W is not diagonal
    assert not np.allclose(problems.W[0], problems.W[1])
    assert np.abs(np.asarray(problems.W[0]) - np.diag(np.diag(problems.W[0]))).max() > 0.1


def test_loss_scale_multiplies_the_loss_and_its_gradient():
    task, params, W, y = _many_problems("paper")
    scaled = dataclasses.replace(task, loss_scale=1e-3)
    problem, theta, key = QuadraticProblem(W[0], y[0]), params[0], jax.random.key(0)
    loss, grad = jax.value_and_grad(scaled.loss)(theta, problem, key)
    np.testing.assert_allclose(loss, 1e-3 * numpy_loss(W[0], y[0], theta), rtol=1e-5)
    np.testing.assert_allclose(grad, 1e-3 * numpy_grad(W[0], y[0], theta), rtol=1e-4, atol=1e-9)


def test_loss_scale_spread_gives_each_problem_a_log_uniform_factor():
    """Each problem's loss is its unscaled problem's (same key) times a factor c: the losses'
    ratio is c at every theta, and log c is uniform on [-log 100, log 100]."""
    keys = jax.random.split(jax.random.key(5), 2000)
    plain, spread = QuadraticTask(dim=4), QuadraticTask(dim=4, loss_scale_spread=100.0)
    unscaled, scaled = (jax.vmap(task.sample_problem)(keys) for task in (plain, spread))
    thetas = jax.random.normal(jax.random.key(6), (2, 2000, 4))
    losses = jax.vmap(jax.vmap(plain.loss, (0, 0, None)), (0, None, None))
    ratios = np.asarray(losses(thetas, scaled, keys[0]) / losses(thetas, unscaled, keys[0]))
    np.testing.assert_allclose(ratios[0], ratios[1], rtol=1e-4)  # one factor per problem
    log_factors = np.log(ratios[0]) / np.log(100.0)
    assert log_factors.min() >= -1.0 - 1e-5 and log_factors.max() <= 1.0 + 1e-5
    np.testing.assert_allclose(np.histogram(log_factors, bins=4, range=(-1, 1))[0], 500, rtol=0.2)


def test_make_task_passes_conditioning_and_scale_through():
    config = QuadraticTaskConfig(
        variant="conditioned", condition_number=50.0, loss_scale=0.1, loss_scale_spread=3.0
    )
    task = make_task(config)
    assert (task.variant, task.condition_number, task.loss_scale) == ("conditioned", 50.0, 0.1)
    assert task.loss_scale_spread == 3.0


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"variant": "conditioned", "condition_number": 0.5}, "condition_number"),
        ({"variant": "paper", "condition_number": 10.0}, "'conditioned' only"),
        ({"loss_scale": 0.0}, "loss_scale"),
        ({"loss_scale_spread": 0.5}, "loss_scale_spread"),
    ],
)
def test_quadratic_config_rejects_bad_conditioning_or_scale(fields, message):
    with pytest.raises(ConfigError, match=message):
        QuadraticTaskConfig(**fields).validate()


def test_random_rotations_are_orthogonal_and_differ():
    from l2lgd.tasks.quadratic import random_rotation

    rotations = jax.vmap(random_rotation, (0, None))(jax.random.split(jax.random.key(3), 4), 12)
    for q in np.asarray(rotations, np.float64):
        np.testing.assert_allclose(q.T @ q, np.eye(12), atol=1e-5)
    assert not np.allclose(rotations[0], rotations[1])
