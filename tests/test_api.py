"""The drop-in optimizer: `l2lgd.load_optimizer` in an ordinary optax loop equals meta-training's path."""

from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import load_example, synthetic_dataset
from jax.flatten_util import ravel_pytree

import l2lgd
from l2lgd import pretrained
from l2lgd.config import MetaConfig
from l2lgd.data import ImageDataset
from l2lgd.meta.unroll import meta_loss
from l2lgd.rollout import init_optimizee_state
from l2lgd.tasks import QuadraticTask, sample_batch

REPO = Path(__file__).resolve().parent.parent
UNUSED_KEY = jax.random.key(0)  # the quadratic's loss ignores its minibatch key


def assert_trees_allclose(actual, expected, rtol=1e-5, atol=1e-6):
    assert jax.tree.structure(actual) == jax.tree.structure(expected)
    for a, e in zip(jax.tree.leaves(actual), jax.tree.leaves(expected), strict=True):
        np.testing.assert_allclose(a, e, rtol=rtol, atol=atol)


class TinyModel(nn.Module):
    """A user's flax model: tensors of several shapes, a nonlinearity, a scalar loss."""

    @nn.compact
    def __call__(self, inputs):
        return nn.Dense(2)(nn.tanh(nn.Dense(5)(inputs)))


def tiny_model_problem():
    inputs = jax.random.normal(jax.random.key(1), (16, 3))
    targets = jax.random.normal(jax.random.key(2), (16, 2))
    model = TinyModel()
    params = model.init(jax.random.key(3), inputs)["params"]

    def loss(params):
        return jnp.mean((model.apply({"params": params}, inputs) - targets) ** 2)

    return params, loss


def test_optax_loop_equals_the_meta_training_update_path():
    """Same weights, gradients and starting points: a user's optax loop on each problem alone
    reaches the parameters and LSTM states that meta-training's unroll reaches on the batch."""
    task = QuadraticTask(variant="paper", dim=10, init_std=0.01)
    learned = l2lgd.load_learned("quadratic")
    unroll = 5
    params, problems = sample_batch(task, jax.random.key(11), 3)
    state = init_optimizee_state(l2lgd.learned_optimizer(learned.weights, learned.config), params)
    meta_config = MetaConfig(num_steps=unroll, unroll=unroll)
    _, meta_state = meta_loss(
        learned.weights, task, learned.config, meta_config, state, problems, UNUSED_KEY
    )

    optimizer = l2lgd.load_optimizer("quadratic")
    lstm_states = []
    for i in range(3):
        theta, problem = params[i], jax.tree.map(lambda leaf, i=i: leaf[i], problems)
        opt_state = optimizer.init(theta)
        for _ in range(unroll):
            grads = jax.grad(task.loss)(theta, problem, UNUSED_KEY)
            updates, opt_state = optimizer.update(grads, opt_state, theta)
            theta = optax.apply_updates(theta, updates)
        np.testing.assert_allclose(meta_state.params[i], theta, rtol=1e-5, atol=1e-6)
        lstm_states.append(opt_state.lstm_state)
    # The rollout keeps each problem's state side by side: the plain LSTM's coordinates evolve
    # alone, so the batch is one state of all problems' coordinates, problem after problem.
    expected = jax.tree.map(lambda *per_problem: jnp.concatenate(per_problem, -1), *lstm_states)
    assert_trees_allclose(meta_state.opt_state.lstm_state, expected)
    assert not np.allclose(meta_state.params, params, atol=1e-3)  # it really moved


@pytest.mark.parametrize("kind", ["run folder", "weights file", "name"])
def test_load_optimizer_from_each_kind_of_source(kind, tmp_path):
    name_path = pretrained.pretrained_path("mnist")
    if kind == "run folder":
        (tmp_path / "checkpoints").mkdir()
        (tmp_path / "checkpoints" / "best.msgpack").write_bytes(name_path.read_bytes())
        spec = tmp_path
    else:
        spec = name_path if kind == "weights file" else "mnist"
    params, loss = tiny_model_problem()
    grads = jax.grad(loss)(params)

    optimizer = l2lgd.load_optimizer(spec)
    updates, _ = optimizer.update(grads, optimizer.init(params), params)

    learned = l2lgd.load_learned("pretrained:mnist")
    reference = l2lgd.learned_optimizer(learned.weights, learned.config)
    expected, _ = reference.update(grads, reference.init(params), params)
    assert_trees_allclose(updates, expected, rtol=0, atol=0)
    assert np.abs(ravel_pytree(updates)[0]).max() > 0


def test_learned_optimizer_trains_a_flax_model_under_jit_and_chains_with_a_schedule():
    params, loss = tiny_model_problem()
    halving = optax.scale_by_schedule(lambda step: 0.5**step)
    chained = optax.chain(l2lgd.load_optimizer("mnist"), halving)
    alone = l2lgd.load_optimizer("mnist")

    @jax.jit
    def step(params, chained_state, alone_state):
        grads = jax.grad(loss)(params)
        updates, chained_state = chained.update(grads, chained_state, params)
        plain, alone_state = alone.update(grads, alone_state, params)
        return optax.apply_updates(params, updates), chained_state, alone_state, updates, plain

    chained_state, alone_state = chained.init(params), alone.init(params)
    start = loss(params)
    for t in range(4):
        params, chained_state, alone_state, updates, plain = step(
            params, chained_state, alone_state
        )
        assert_trees_allclose(updates, jax.tree.map(lambda u, t=t: u * 0.5**t, plain))
    assert loss(params) < start


def test_example_runs_end_to_end_on_a_shrunken_config(tmp_path):
    example = load_example("flax_mnist")
    config = example.ExampleConfig(
        hidden_sizes=(8,),
        num_steps=20,
        batch_size=32,
        seeds=(1, 2),
        adam_learning_rates=(0.01, 0.1),
    )
    results = example.train_and_evaluate(config, synthetic_dataset(), tmp_path)

    for name in ("learned", "adam"):
        curve = results[name]["mean_curve"]
        assert len(curve) == 20 and np.all(np.isfinite(curve))
    assert results["adam"]["learning_rate"] == min(
        (0.01, 0.1), key=lambda lr: results["adam_grid"][str(lr)]
    )
    assert results["learned"]["train_loss"] < np.log(2)  # below chance: the learned one learns
    assert (tmp_path / "loss.png").read_bytes().startswith(b"\x89PNG")
    assert "| learned (mnist) |" in (tmp_path / "RESULTS.md").read_text()


def test_cifar_example_runs_end_to_end_on_a_shrunken_config(tmp_path):
    example = load_example("flax_cifar10")
    gray = synthetic_dataset()
    color = ImageDataset(
        "synthetic",
        np.repeat(gray.train_images[..., None], 3, axis=-1),
        gray.train_labels,
        np.repeat(gray.test_images[..., None], 3, axis=-1),
        gray.test_labels,
        2,
    )
    config = example.ExampleConfig(
        channels=4,
        hidden=8,
        num_steps=30,
        batch_size=16,
        seeds=(1,),
        tuning_seeds=(2,),
        adam_learning_rates=(0.003, 0.03),
        max_grid_growth=1,
    )
    summary = example.run_example(config, color, tmp_path)

    learned = summary["results"]["learned (cifar10)"]
    assert len(learned["mean_curve"]) == 30 and np.all(np.isfinite(learned["mean_curve"]))
    assert learned["final"] < learned["mean_curve"][0]  # the shipped optimizer lowers the loss
    assert len(summary["adam_grid"]) == 3  # an edge was best, so the grid grew once
    assert (tmp_path / "loss.png").read_bytes().startswith(b"\x89PNG")
    assert "| learned (cifar10) |" in (tmp_path / "RESULTS.md").read_text()
