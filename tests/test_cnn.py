"""The CIFAR CNN task: batch norm against NumPy, gradients, training, test metrics, its size.

Everything runs on tiny self-made image sets (8x8x3 images, a few dozen of them).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from l2lgd import rollout
from l2lgd.data import ImageDataset
from l2lgd.errors import DataError
from l2lgd.rollout import optimize_sampled_problems
from l2lgd.tasks import cnn
from l2lgd.tasks.cnn import BN_EPSILON, BatchNorm, BatchStatistics, CNNTask

NUM_CLASSES = 3
TINY = {"conv_channels": (4, 4), "fc_size": 8, "batch_size": 16}


def colour_dataset(num_train: int = 48, num_test: int = 11, seed: int = 0) -> ImageDataset:
    """8x8x3 noise images whose label is the channel that is brighter: learnable in a few steps."""
    rng = np.random.default_rng(seed)

    def split(count: int) -> tuple[np.ndarray, np.ndarray]:
        labels = rng.integers(0, NUM_CLASSES, count).astype(np.int32)
        images = rng.integers(0, 120, (count, 8, 8, 3))
        images[np.arange(count), :, :, labels] += 120
        return images.astype(np.uint8), labels

    (train_images, train_labels), (test_images, test_labels) = split(num_train), split(num_test)
    return ImageDataset("colours", train_images, train_labels, test_images, test_labels, 3)


@pytest.fixture(scope="module")
def task() -> CNNTask:
    return CNNTask(colour_dataset(), **TINY)


def perturbed_params(task: CNNTask, seed: int, std: float = 0.3):
    """Initial parameters plus noise, so that no batch-norm scale or offset is trivially 1 or 0.

    Jitted and with NumPy noise: op-by-op flax code compiles each small op on its own (slow).
    """
    params = jax.jit(task.init_params)(jax.random.key(seed), ())
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda leaf: leaf + std * rng.normal(size=leaf.shape), params)


# --- batch norm ---------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(4, 3, 5, 6), (7, 5)], ids=["conv", "fc"])
def test_batch_norm_matches_numpy_over_batch_and_spatial_axes(shape):
    rng = np.random.default_rng(1)
    inputs = rng.normal(2.0, 3.0, shape).astype(np.float32)
    scale = rng.normal(1.0, 0.5, shape[-1]).astype(np.float32)
    offset = rng.normal(0.0, 0.5, shape[-1]).astype(np.float32)
    params = {"scale": scale, "offset": offset}
    outputs, statistics = BatchNorm().apply({"params": params}, jnp.asarray(inputs))

    assert BN_EPSILON == 1e-3  # the value the module documents (Sonnet's default)
    x = inputs.astype(np.float64)
    axes = tuple(range(x.ndim - 1))  # (batch, height, width) for conv, (batch,) for fc
    mean = x.mean(axis=axes)
    variance = ((x - mean) ** 2).mean(axis=axes)  # biased, as in training-mode batch norm
    expected = (x - mean) / np.sqrt(variance + 1e-3) * scale + offset
    np.testing.assert_allclose(outputs, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(statistics.mean, mean, rtol=1e-5)
    np.testing.assert_allclose(statistics.variance, variance, rtol=1e-5)


def test_batch_norm_with_given_statistics_treats_each_example_alone():
    rng = np.random.default_rng(2)
    inputs = jnp.asarray(rng.normal(size=(5, 2, 2, 3)), jnp.float32)
    params = {"scale": jnp.array([1.0, 2.0, 0.5]), "offset": jnp.array([0.0, 1.0, -1.0])}
    given = BatchStatistics(jnp.array([0.5, -1.0, 2.0]), jnp.array([4.0, 0.25, 1.0]))
    outputs, used = BatchNorm().apply({"params": params}, inputs, given)
    expected = (inputs - given.mean) / np.sqrt(given.variance + BN_EPSILON)
    expected = expected * params["scale"] + params["offset"]
    np.testing.assert_allclose(outputs, expected, rtol=1e-5, atol=1e-6)
    assert used is given
    alone, _ = BatchNorm().apply({"params": params}, inputs[3:4], given)
    np.testing.assert_allclose(alone, outputs[3:4], rtol=1e-6)


# --- the model and its loss ---------------------------------------------------------------------


def test_default_model_has_the_documented_parameter_count():
    """22,762 parameters on 32x32x3 images and 10 classes, 14,000 of them in the conv kernels."""
    images = np.zeros((2, 32, 32, 3), np.uint8)
    labels = np.zeros(2, np.int32)
    dataset = ImageDataset("zeros", images, labels, images, labels, num_classes=10)
    task = CNNTask(dataset)
    params = jax.eval_shape(task.init_params, jax.random.key(0), ())
    sizes = {
        "/".join(k.key for k in path): leaf.size for path, leaf in jax.tree.leaves_with_path(params)
    }
    assert sum(sizes.values()) == 22_762 and "22,762" in cnn.__doc__
    assert sum(sizes[f"conv_{i}/kernel"] for i in range(3)) == 14_000 and "14,000" in cnn.__doc__
    assert params["fc"]["kernel"].shape == (4 * 4 * 16, 32)  # three 2x2 poolings: 32 -> 4
    leaves, treedef = jax.tree.flatten(task)  # a pytree: the data are leaves, the rest static
    assert len(leaves) == 4 and treedef == jax.tree.structure(CNNTask(dataset))


def test_initial_loss_is_near_log_num_classes(task):
    params = jax.jit(task.init_params)(jax.random.key(0), ())
    loss = jax.jit(task.loss)(params, (), jax.random.key(1))
    assert np.isfinite(loss) and loss == pytest.approx(np.log(NUM_CLASSES), abs=0.01)


def test_loss_gradient_matches_a_finite_difference_in_float64(task):
    params32 = perturbed_params(task, seed=3)
    rng = np.random.default_rng(5)
    params = jax.tree.map(lambda p: np.asarray(p, np.float64), params32)
    direction = jax.tree.map(lambda p: rng.normal(size=p.shape), params)
    step = 1e-6
    with jax.enable_x64(True):
        key = jax.random.key(4)  # one fixed minibatch: the loss is a function of the params
        loss_and_grad = jax.jit(jax.value_and_grad(lambda p: task.loss(p, (), key)))
        _, grads = loss_and_grad(params)
        plus, _ = loss_and_grad(jax.tree.map(lambda p, d: p + step * d, params, direction))
        minus, _ = loss_and_grad(jax.tree.map(lambda p, d: p - step * d, params, direction))
        grads = jax.tree.map(np.asarray, grads)
    assert grads["conv_0"]["kernel"].dtype == np.float64
    finite_difference = (float(plus) - float(minus)) / (2 * step)
    directional = sum(
        float(np.vdot(g, d))
        for g, d in zip(jax.tree.leaves(grads), jax.tree.leaves(direction), strict=True)
    )
    assert abs(directional) > 1e-3
    np.testing.assert_allclose(finite_difference, directional, rtol=1e-6)
    # A bias followed by training-mode batch norm (statistics over batch and space) shifts the
    # batch mean by itself: it cannot change the loss.
    for layer in ("conv_0", "conv_1", "fc"):
        assert np.abs(grads[layer]["bias"]).max() < 1e-12
        assert np.abs(grads[layer]["kernel"]).max() > 1e-4


def test_sgd_steps_lower_the_loss_and_raise_test_accuracy(task):
    num_problems, num_steps = 2, 25

    @jax.jit
    def train_and_test(learning_rate: jax.Array):
        state, curves = optimize_sampled_problems(
            task, optax.sgd(learning_rate), jax.random.key(6), num_problems, num_steps
        )
        # As `l2lgd.evaluate` does: one problem at a time.
        return curves, jax.lax.map(task.test_metrics, state.params)

    curves, after = train_and_test(jnp.float32(0.5))
    _, before = train_and_test(jnp.float32(0.0))  # the same problems, untrained

    assert curves.shape == (num_steps + 1, num_problems) and np.all(np.isfinite(curves))
    assert curves[-3:].mean() < curves[:3].mean() - 0.5
    assert after["test_accuracy"].shape == (num_problems,)
    assert np.all(after["test_loss"] < before["test_loss"] - 0.3)
    assert np.all(after["test_accuracy"] > 0.8)


# --- test metrics -------------------------------------------------------------------------------


def test_test_metrics_in_chunks_equal_one_pass_with_the_training_sample_statistics():
    dataset = colour_dataset(num_train=20, num_test=11, seed=7)
    chunked = CNNTask(dataset, **TINY, statistics_size=8, test_chunk_size=4)  # 3 chunks, 1 pad
    whole = CNNTask(dataset, **TINY, statistics_size=8, test_chunk_size=100)
    params = perturbed_params(chunked, seed=8)

    apply = jax.jit(chunked.model.apply)  # op by op, flax compiles each small op: slow
    statistics = jax.jit(chunked.inference_statistics)(params)
    # The statistics are the training-mode statistics of 8 evenly spaced training images ...
    sample = jnp.asarray(dataset.train_images[[0, 3, 5, 8, 11, 14, 16, 19]], jnp.float32) / 255
    train_logits, sample_statistics = apply({"params": params}, sample)
    assert set(statistics) == {"bn_conv_0", "bn_conv_1", "bn_fc"}
    for name, (mean, variance) in sample_statistics.items():
        np.testing.assert_allclose(statistics[name].mean, mean, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(statistics[name].variance, variance, rtol=1e-5, atol=1e-6)
    # ... so inference mode on that sample reproduces training mode on it.
    inference_logits, _ = apply({"params": params}, sample, statistics)
    np.testing.assert_allclose(inference_logits, train_logits, rtol=1e-4, atol=1e-5)

    test_images = jnp.asarray(dataset.test_images, jnp.float32) / 255
    logits, _ = apply({"params": params}, test_images, statistics)
    labels = dataset.test_labels
    expected_loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
    expected_accuracy = np.mean(np.argmax(logits, axis=-1) == labels)
    for task in (chunked, whole):
        metrics = jax.jit(task.test_metrics)(params)
        assert float(metrics["test_loss"]) == pytest.approx(float(expected_loss), rel=1e-5)
        assert float(metrics["test_accuracy"]) == pytest.approx(float(expected_accuracy), abs=1e-6)


def test_cnn_task_needs_images_with_a_channel_axis():
    images = np.zeros((2, 8, 8), np.uint8)
    labels = np.zeros(2, np.int32)
    with pytest.raises(DataError, match=r"\(N, height, width, channels\)"):
        CNNTask(ImageDataset("grey", images, labels, images, labels, 2))


@pytest.mark.parametrize(("kernel_size", "shape"), [((5, 5), (2, 8, 8, 3)), ((3, 4), (1, 5, 7, 2))])
def test_matmul_conv_equals_lax_same_convolution(kernel_size, shape):
    """The patches-times-kernel convolution against XLA's own, for odd and even kernels."""
    images = jax.random.normal(jax.random.key(0), shape)
    conv = cnn.MatmulConv(6, kernel_size, jax.nn.initializers.normal(1.0))
    params = conv.init(jax.random.key(1), images)["params"]
    reference = nn.Conv(6, kernel_size, padding="SAME").apply({"params": params}, images)
    np.testing.assert_allclose(
        conv.apply({"params": params}, images), reference, rtol=1e-4, atol=1e-4
    )
    assert params["kernel"].shape == (*kernel_size, shape[-1], 6)


def test_make_task_builds_the_configured_cifar_cnn_on_a_class_subset(tmp_path):
    """The config route: CIFAR-10 binary files -> `make_task` -> a CNN on the chosen labels."""
    from l2lgd.config import load_config
    from l2lgd.tasks import make_task

    rng = np.random.default_rng(0)
    folder = tmp_path / "cifar10" / "cifar-10-batches-bin"
    folder.mkdir(parents=True)
    for name in [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]:
        labels = np.arange(10, dtype=np.uint8)
        pixels = rng.integers(0, 256, (10, 3072), dtype=np.uint8)
        (folder / name).write_bytes(np.concatenate([labels[:, None], pixels], axis=1).tobytes())
    config = load_config(
        "configs/cifar2.yaml", [f"task.data_dir={tmp_path}", "task.conv_channels=[2]"]
    )
    task = make_task(config.task)
    assert isinstance(task, CNNTask)
    assert task.dataset.num_classes == 2 and task.dataset.train_labels.shape == (10,)
    assert set(task.dataset.test_labels.tolist()) == {0, 1}
    params = task.init_params(jax.random.key(0), ())
    assert params["conv_0"]["kernel"].shape == (5, 5, 3, 2)
    assert params["logits"]["kernel"].shape == (32, 2)
    assert np.isfinite(task.loss(params, (), jax.random.key(1)))


@pytest.mark.parametrize("shape", [(2, 8, 8, 3), (1, 5, 7, 2)], ids=["even", "odd"])
def test_max_pool_2x2_equals_flax_max_pool_and_its_gradient(shape):
    """Random inputs (no ties): the same pooled values and the same gradient as nn.max_pool."""
    images = jax.random.normal(jax.random.key(0), shape)
    weights = jax.random.normal(jax.random.key(1), cnn.max_pool_2x2(images).shape)

    def flax_pool(x):
        return nn.max_pool(x, (2, 2), strides=(2, 2), padding="SAME")

    np.testing.assert_array_equal(cnn.max_pool_2x2(images), flax_pool(images))
    gradient, expected = (
        jax.grad(lambda x, pool=pool: jnp.sum(weights * pool(x)))(images)
        for pool in (cnn.max_pool_2x2, flax_pool)
    )
    np.testing.assert_array_equal(gradient, expected)


def test_first_order_meta_gradient_on_minibatches_equals_a_loop_with_frozen_gradients(task):
    """The rollout's first-order losses (value plus a linear term) give the meta-gradient of the
    plain formulation: live losses of the same minibatches, gradients fed in as constants."""
    num_problems, num_steps, key = 2, 3, jax.random.key(7)
    params = jax.vmap(task.init_params, in_axes=(0, None))(
        jax.random.split(jax.random.key(1), num_problems), ()
    )
    vmapped = jax.vmap(jax.value_and_grad(task.loss), in_axes=(0, None, 0))

    def update(scale, grads):
        return jax.tree.map(lambda g: -scale * jnp.tanh(100.0 * g), grads)

    def library(scale):
        optimizer = optax.GradientTransformation(
            lambda p: optax.EmptyState(), lambda g, s, p=None: (update(scale, g), s)
        )
        state = rollout.init_optimizee_state(optimizer, params)
        return rollout.rollout(task, optimizer, state, (), key, num_steps)[1].sum()

    def loop(scale):
        current, total = params, 0.0
        for step in range(num_steps):
            keys = jax.random.split(jax.random.fold_in(key, step), num_problems)
            losses, grads = vmapped(current, (), keys)
            current = optax.apply_updates(current, update(scale, jax.lax.stop_gradient(grads)))
            total = total + losses.sum()
        final_keys = jax.random.split(jax.random.fold_in(key, num_steps), num_problems)
        return total + jax.vmap(task.loss, in_axes=(0, None, 0))(current, (), final_keys).sum()

    expected_value, expected_grad = jax.jit(jax.value_and_grad(loop))(0.01)
    value, grad = jax.jit(jax.value_and_grad(library))(0.01)
    assert abs(float(expected_grad)) > 1e-3
    np.testing.assert_allclose(value, expected_value, rtol=1e-5)
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-3)
