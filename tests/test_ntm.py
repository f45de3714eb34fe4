"""NTM-BFGS / NTM-L-BFGS: the memory's read and write against explicit matrix algebra, the window,
one memory per problem, and meta-training."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from l2lgd.config import Config, NTMConfig, with_overrides
from l2lgd.errors import ConfigError
from l2lgd.optimizers import init_learned_weights, learned_optimizer
from l2lgd.optimizers.ntm import (
    DenseMemory,
    WindowMemory,
    read_memory,
    write_memory,
    zero_memory,
)
from l2lgd.rollout import vectorized
from l2lgd.tasks import QuadraticTask, sample_batch

BFGS = NTMConfig(hidden_size=6, gac_cells=2, kind="ntm_bfgs", ntm_read_heads=2)
TASK = QuadraticTask(variant="paper", dim=5, init_std=0.5)
PROBLEMS, SIZE, WRITE_HEADS, READ_HEADS = 2, 4, 3, 2


def random_writes(rng, steps):
    """Per step, left and right write vectors of each problem, (heads, problems, SIZE)."""
    shape = (steps, 2, WRITE_HEADS, PROBLEMS, SIZE)
    return rng.normal(size=shape).astype(np.float32)


def numpy_memory(writes, initial_scale):
    """M_p = initial_scale * I + (1/n) sum over the given writes of a b^T, per problem p."""
    memory = np.stack([initial_scale * np.eye(SIZE) for _ in range(PROBLEMS)])
    for left, right in writes:
        for p in range(PROBLEMS):
            for a, b in zip(left[:, p], right[:, p], strict=True):
                memory[p] += np.outer(a, b) / SIZE
    return memory


def numpy_read(memory, vectors):
    """M_p r for each read vector of problem p, (heads, problems, SIZE)."""
    return np.einsum("pij,hpj->hpi", memory, vectors)


def write_and_read(window, writes, vectors, initial_scale):
    """Each problem's memory alone: written with its vectors, then read."""
    reads = []
    for p in range(PROBLEMS):
        memory = zero_memory(window, WRITE_HEADS, SIZE, jnp.float32)
        for left, right in writes:
            memory = write_memory(memory, jnp.asarray(left[:, p]), jnp.asarray(right[:, p]))
        reads.append(read_memory(memory, jnp.asarray(vectors[:, p]), initial_scale))
    return np.stack(reads, axis=1), memory


@pytest.mark.parametrize("initial_scale", [1.0, 0.0])
def test_dense_read_and_write_against_numpy(initial_scale):
    rng = np.random.default_rng(0)
    writes = random_writes(rng, steps=3)
    vectors = rng.normal(size=(READ_HEADS, PROBLEMS, SIZE)).astype(np.float32)
    got, memory = write_and_read(None, writes, vectors, initial_scale)
    assert isinstance(memory, DenseMemory)
    expected = numpy_read(numpy_memory(writes, initial_scale), vectors)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("window", [2, 3, 5])
def test_window_keeps_the_last_steps_writes(window):
    rng = np.random.default_rng(1)
    writes = random_writes(rng, steps=3)
    vectors = rng.normal(size=(READ_HEADS, PROBLEMS, SIZE)).astype(np.float32)
    got, memory = write_and_read(window, writes, vectors, 1.0)
    assert isinstance(memory, WindowMemory)
    expected = numpy_read(numpy_memory(writes[-window:], 1.0), vectors)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def random_weights(config, seed=0):
    """Non-zero weights everywhere (the read outputs start at 0), so updates depend on them."""
    weights = init_learned_weights(jax.random.key(seed), config)
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda w: w + 0.3 * rng.normal(size=w.shape).astype(np.float32), weights)


def run_updates(config, weights, params, problems, num_steps, batched=True):
    """The updates of `num_steps` optimizer steps on quadratics, stacked."""
    grad = jax.grad(TASK.loss)
    if batched:
        grad = jax.vmap(grad, in_axes=(0, 0, None))
    optimizer = learned_optimizer(weights, config)
    if batched:
        optimizer = vectorized(optimizer)
    state = optimizer.init(params)
    history = []
    for _ in range(num_steps):
        updates, state = optimizer.update(grad(params, problems, None), state, params)
        params = params + updates
        history.append(updates)
    return np.stack(history), state


def test_lbfgs_with_a_window_as_long_as_the_run_equals_bfgs():
    steps = 6
    weights = random_weights(BFGS)
    params, problems = sample_batch(TASK, jax.random.key(1), 2)
    bfgs, state = run_updates(BFGS, weights, params, problems, steps)
    assert isinstance(state.memory, DenseMemory)
    assert np.abs(state.memory.correction).max() > 0.01  # the writes did change the memory
    long_window = dataclasses.replace(BFGS, kind="ntm_lbfgs", ntm_window=steps)
    lbfgs, _ = run_updates(long_window, weights, params, problems, steps)
    np.testing.assert_allclose(lbfgs, bfgs, rtol=1e-4, atol=1e-5)
    short_window = dataclasses.replace(BFGS, kind="ntm_lbfgs", ntm_window=2)
    forgetful, _ = run_updates(short_window, weights, params, problems, steps)
    np.testing.assert_allclose(forgetful[:2], bfgs[:2], rtol=1e-4, atol=1e-5)
    assert np.abs(forgetful[-1] - bfgs[-1]).max() > 1e-3


@pytest.mark.parametrize("kind", ["ntm_bfgs", "ntm_lbfgs"])
def test_each_problem_of_a_batch_has_its_own_memory(kind):
    config = dataclasses.replace(BFGS, kind=kind, ntm_window=3)
    weights = random_weights(config, seed=2)
    params, problems = sample_batch(TASK, jax.random.key(3), 2)
    batched, _ = run_updates(config, weights, params, problems, num_steps=4)
    for index in range(2):
        alone = jax.tree.map(lambda leaf, i=index: leaf[i], (params, problems))
        expected, _ = run_updates(config, weights, *alone, num_steps=4, batched=False)
        np.testing.assert_allclose(batched[:, index], expected, rtol=1e-4, atol=1e-5)


def test_the_update_comes_from_the_read_or_from_the_controller():
    config = dataclasses.replace(BFGS, ntm_memory_init="zero")
    params, problems = sample_batch(TASK, jax.random.key(4), 2)
    weights = random_weights(config, seed=3)
    from_read, state = run_updates(config, weights, params, problems, num_steps=2)
    np.testing.assert_allclose(from_read[-1], state.reads[0], rtol=1e-6)
    from_controller = dataclasses.replace(config, ntm_update_from="controller")
    controller_weights = random_weights(from_controller, seed=3)
    direct, state = run_updates(from_controller, controller_weights, params, problems, 2)
    assert np.abs(direct[-1] - state.reads[0]).max() > 1e-3


def test_untrained_ntm_proposes_no_update():
    weights = init_learned_weights(jax.random.key(0), BFGS)
    params, problems = sample_batch(TASK, jax.random.key(5), 2)
    updates, _ = run_updates(BFGS, weights, params, problems, num_steps=2)
    np.testing.assert_array_equal(updates, 0.0)


def test_a_dense_memory_too_big_is_a_config_error():
    with pytest.raises(ConfigError, match="ntm_lbfgs"):
        zero_memory(None, 3, 20_000, jnp.float32)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["optimizer.ntm_read_heads=0"], "optimizer.ntm_read_heads"),
        (["optimizer.ntm_write_heads=0"], "optimizer.ntm_write_heads"),
        (["optimizer.ntm_window=0"], "optimizer.ntm_window"),
        (["optimizer.ntm_memory_init=random"], "optimizer.ntm_memory_init"),
        (["optimizer.ntm_update_from=both"], "optimizer.ntm_update_from"),
        (["optimizer.ntm_write_activation=relu"], "optimizer.ntm_write_activation"),
    ],
)
def test_bad_ntm_settings_are_config_errors(overrides, message):
    with pytest.raises(ConfigError, match=message):
        with_overrides(Config(), overrides)


def test_a_meta_trained_ntm_loads_as_a_drop_in_optax_optimizer(tiny_config, tmp_path):
    import l2lgd
    from l2lgd.meta.train import meta_train

    config = with_overrides(tiny_config, ["optimizer.kind=ntm_lbfgs", "optimizer.ntm_window=4"])
    meta_train(config, tmp_path)
    learned = l2lgd.load_learned(tmp_path)
    assert learned.config.kind == "ntm_lbfgs" and learned.config.ntm_window == 4
    params = {"w": jnp.ones((3, 2)), "b": jnp.zeros(2)}
    grads = {"w": jnp.full((3, 2), 0.5), "b": jnp.array([1.0, -1.0])}
    optimizer = l2lgd.load_optimizer(tmp_path)
    state = optimizer.init(params)
    step = jax.jit(optimizer.update)
    for _ in range(3):
        updates, state = step(grads, state, params)
    reference = learned_optimizer(learned.weights, learned.config)
    reference_state = reference.init(params)
    for _ in range(3):
        expected, reference_state = reference.update(grads, reference_state, params)
    for got, want in zip(jax.tree.leaves(updates), jax.tree.leaves(expected), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
    assert max(float(jnp.abs(leaf).max()) for leaf in jax.tree.leaves(updates)) > 0
    assert state.memory.left.shape == (4 * 3, 8)  # 4 steps x 3 write heads, 8 coordinates


def test_each_parameter_group_has_its_own_ntm_and_memory():
    config = dataclasses.replace(BFGS, kind="ntm_lbfgs", ntm_window=2, groups="kernel_bias")
    weights = init_learned_weights(jax.random.key(0), config)
    params = {"Dense_0": {"kernel": jnp.ones((3, 4)), "bias": jnp.zeros(4)}}
    optimizer = learned_optimizer(weights, config)
    state = optimizer.init(params)
    updates, state = jax.jit(optimizer.update)(params, state, params)
    is_memory = lambda node: isinstance(node, WindowMemory)  # noqa: E731
    memories = [node.left.shape for node in jax.tree.leaves(state, is_memory) if is_memory(node)]
    assert sorted(memories) == [(2 * 3, 4), (2 * 3, 12)]  # window x write heads, coordinates
    assert jax.tree.structure(updates) == jax.tree.structure(params)
