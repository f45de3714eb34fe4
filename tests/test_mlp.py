"""The MNIST MLP task against a NumPy float64 reference, its test metrics, and the MNIST pipeline.

Everything runs on tiny self-made image sets (64 train, 32 test images of 28x28), never on MNIST.
"""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from typer.testing import CliRunner

from l2lgd.cli import app
from l2lgd.config import Config, load_config, with_overrides
from l2lgd.data import DATA_DIR_ENV, ImageDataset
from l2lgd.evaluate import _BaselineFactory, evaluate_baseline, evaluation_run, has_test_metrics
from l2lgd.rollout import batch_loss
from l2lgd.tasks import MLPTask, QuadraticTask, make_task, sample_batch

pytestmark = pytest.mark.usefixtures("compilation_cache")

MNIST_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "mnist.yaml"
NUM_CLASSES = 10


# --- tiny data sets and the NumPy reference --------------------------------------------------


def random_dataset(seed: int = 0, n_train: int = 64, n_test: int = 32) -> ImageDataset:
    """Uniform random uint8 images with random labels."""
    rng = np.random.default_rng(seed)
    return ImageDataset(
        name="random",
        train_images=rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        train_labels=rng.integers(0, NUM_CLASSES, n_train).astype(np.int32),
        test_images=rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        test_labels=rng.integers(0, NUM_CLASSES, n_test).astype(np.int32),
        num_classes=NUM_CLASSES,
    )


def learnable_arrays(seed: int = 0, n_train: int = 64, n_test: int = 32) -> dict[str, np.ndarray]:
    """Images of class c are class c's random prototype with 20% of the pixels replaced by noise,
    so that a small MLP learns the classes in a few dozen steps and generalizes to the test split."""
    rng = np.random.default_rng(seed)
    prototypes = rng.integers(0, 256, (NUM_CLASSES, 28, 28), dtype=np.uint8)

    def split(n: int) -> tuple[np.ndarray, np.ndarray]:
        labels = rng.permutation(np.arange(n) % NUM_CLASSES)
        images = prototypes[labels].copy()
        noisy = rng.random(images.shape) < 0.2
        images[noisy] = rng.integers(0, 256, int(noisy.sum()), dtype=np.uint8)
        return images, labels.astype(np.int32)

    train_images, train_labels = split(n_train)
    test_images, test_labels = split(n_test)
    return {
        "train_images": train_images,
        "train_labels": train_labels,
        "test_images": test_images,
        "test_labels": test_labels,
    }


def learnable_dataset(seed: int = 0) -> ImageDataset:
    return ImageDataset(name="learnable", num_classes=NUM_CLASSES, **learnable_arrays(seed))


def dense_layers(params) -> list[tuple[np.ndarray, np.ndarray]]:
    """(kernel, bias) per layer in float64, input layer first (flax names them Dense_0, ...)."""
    names = sorted(params, key=lambda name: int(name.rsplit("_", 1)[1]))
    return [
        (np.asarray(params[n]["kernel"], np.float64), np.asarray(params[n]["bias"], np.float64))
        for n in names
    ]


def np_activation(name: str, z: np.ndarray) -> np.ndarray:
    if name == "tanh":
        return np.tanh(z)
    return 1.0 / (1.0 + np.exp(-z)) if name == "sigmoid" else np.maximum(z, 0.0)


def np_forward(params, images: np.ndarray, activation: str) -> tuple[np.ndarray, list]:
    """Logits, and each layer's (input, pre-activation) for backprop."""
    hidden = np.asarray(images, np.float64).reshape(len(images), -1) / 255.0
    layers = dense_layers(params)
    cache = []
    for kernel, bias in layers[:-1]:
        pre = hidden @ kernel + bias
        cache.append((hidden, pre))
        hidden = np_activation(activation, pre)
    kernel, bias = layers[-1]
    cache.append((hidden, None))
    return hidden @ kernel + bias, cache


def np_log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def np_cross_entropy(params, images, labels, activation: str) -> float:
    logits, _ = np_forward(params, images, activation)
    labels = np.asarray(labels)
    return float(-np_log_softmax(logits)[np.arange(len(labels)), labels].mean())


def np_cross_entropy_grad(params, images, labels, activation: str) -> list[tuple]:
    """Hand-written backprop of the mean cross-entropy: (d kernel, d bias) per layer."""
    logits, cache = np_forward(params, images, activation)
    labels = np.asarray(labels)
    n = len(labels)
    delta = np.exp(np_log_softmax(logits))
    delta[np.arange(n), labels] -= 1.0
    delta /= n  # d loss / d logits
    layers = dense_layers(params)
    grads = []
    for index in reversed(range(len(layers))):
        layer_input, _ = cache[index]
        kernel, _ = layers[index]
        grads.append((layer_input.T @ delta, delta.sum(axis=0)))
        if index > 0:
            _, pre = cache[index - 1]
            d_hidden = delta @ kernel.T
            if activation == "sigmoid":
                s = np_activation("sigmoid", pre)
                delta = d_hidden * s * (1.0 - s)
            elif activation == "tanh":
                delta = d_hidden * (1.0 - np.tanh(pre) ** 2)
            else:
                delta = d_hidden * (pre > 0)
    return grads[::-1]


def layer_shapes(hidden_sizes: tuple[int, ...]) -> list[tuple[tuple[int, int], tuple[int]]]:
    sizes = [28 * 28, *hidden_sizes, NUM_CLASSES]
    return [((a, b), (b,)) for a, b in zip(sizes[:-1], sizes[1:], strict=True)]


ARCHITECTURES = [
    ((20,), "sigmoid"),
    ((20,), "relu"),
    ((8, 6), "sigmoid"),
    ((8, 6), "relu"),
    ((8, 6), "tanh"),
]
ARCHITECTURE_IDS = ["20-sigmoid", "20-relu", "8-6-sigmoid", "8-6-relu", "8-6-tanh"]


@pytest.fixture(scope="module")
def random_data() -> ImageDataset:
    return random_dataset()


# --- cross-entropy and its gradient ----------------------------------------------------------


@pytest.mark.parametrize(("hidden_sizes", "activation"), ARCHITECTURES, ids=ARCHITECTURE_IDS)
def test_cross_entropy_matches_numpy_forward_pass(random_data, hidden_sizes, activation):
    # init_std 0.3 spreads the pre-activations over several units, so that the nonlinearity
    # (not only its linear part near 0) shapes the loss, and the logits are far from equal.
    task = MLPTask(random_data, hidden_sizes, activation, batch_size=16, init_std=0.3)
    params = task.init_params(jax.random.key(1), ())
    images, labels = random_data.train_images, random_data.train_labels
    got = float(task.cross_entropy(params, jnp.asarray(images), jnp.asarray(labels)))
    want = np_cross_entropy(params, images, labels, activation)
    assert got == pytest.approx(want, rel=1e-5)
    # The loss is far from chance level, so a wrong activation or layer order would show.
    assert abs(want - np.log(NUM_CLASSES)) > 0.05
    other = {"sigmoid": "relu", "relu": "sigmoid", "tanh": "relu"}[activation]
    assert abs(np_cross_entropy(params, images, labels, other) - want) > 0.1


@pytest.mark.parametrize(("hidden_sizes", "activation"), ARCHITECTURES, ids=ARCHITECTURE_IDS)
def test_cross_entropy_gradient_matches_numpy_backprop(random_data, hidden_sizes, activation):
    task = MLPTask(random_data, hidden_sizes, activation, batch_size=16, init_std=0.3)
    params = task.init_params(jax.random.key(2), ())
    images, labels = random_data.train_images[:32], random_data.train_labels[:32]
    grads = jax.grad(task.cross_entropy)(params, jnp.asarray(images), jnp.asarray(labels))
    want = np_cross_entropy_grad(params, images, labels, activation)
    got = dense_layers(grads)
    assert len(got) == len(hidden_sizes) + 1
    for (got_kernel, got_bias), (want_kernel, want_bias) in zip(got, want, strict=True):
        assert got_kernel.shape == want_kernel.shape and got_bias.shape == want_bias.shape
        for g, w in ((got_kernel, want_kernel), (got_bias, want_bias)):
            scale = np.abs(w).max()
            assert scale > 0
            np.testing.assert_allclose(g, w, rtol=1e-3, atol=1e-4 * scale)


# --- minibatch loss --------------------------------------------------------------------------


@pytest.mark.parametrize("batch_size", [8, 16])
def test_loss_is_cross_entropy_on_the_minibatch_its_key_selects(random_data, batch_size):
    task = MLPTask(random_data, (20,), "sigmoid", batch_size=batch_size, init_std=0.1)
    params = task.init_params(jax.random.key(3), ())
    losses = []
    for seed in range(3):
        key = jax.random.key(100 + seed)
        index = np.asarray(jax.random.randint(key, (batch_size,), 0, len(random_data.train_labels)))
        assert index.shape == (batch_size,)
        loss = float(task.loss(params, (), key))
        images, labels = random_data.train_images[index], random_data.train_labels[index]
        assert loss == pytest.approx(float(task.cross_entropy(params, images, labels)), rel=1e-6)
        assert loss == pytest.approx(np_cross_entropy(params, images, labels, "sigmoid"), rel=1e-5)
        losses.append(loss)
    assert len(set(losses)) == len(losses)  # different keys, different minibatches

    # Not the mean over a batch of another size, nor over the whole split.
    key = jax.random.key(100)
    other_index = np.asarray(jax.random.randint(key, (2 * batch_size,), 0, 64))
    imgs, labels = random_data.train_images, random_data.train_labels
    whole = np_cross_entropy(params, imgs, labels, "sigmoid")
    other = np_cross_entropy(params, imgs[other_index], labels[other_index], "sigmoid")
    assert abs(losses[0] - whole) > 1e-4 and abs(losses[0] - other) > 1e-4


# --- initialization --------------------------------------------------------------------------


@pytest.mark.parametrize("hidden_sizes", [(20,), (8, 6)], ids=["784-20-10", "784-8-6-10"])
def test_init_params_has_one_dense_layer_per_size(random_data, hidden_sizes):
    task = MLPTask(random_data, hidden_sizes)
    params = task.init_params(jax.random.key(0), ())
    assert sorted(params) == [f"Dense_{i}" for i in range(len(hidden_sizes) + 1)]
    layers = dense_layers(params)
    assert [(k.shape, b.shape) for k, b in layers] == layer_shapes(hidden_sizes)
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(params))


@pytest.mark.parametrize("init_std", [0.01, 0.5])
def test_init_params_are_gaussian_with_init_std(random_data, init_std):
    task = MLPTask(random_data, (1000,), init_std=init_std)
    params = task.init_params(jax.random.key(4), ())
    (kernel0, bias0), (kernel1, bias1) = dense_layers(params)
    # Relative standard error of a sample std is about 1 / sqrt(2n).
    for values, tolerance in ((kernel0, 0.01), (kernel1, 0.04), (bias0, 0.1), (bias1, None)):
        values = values.ravel()
        assert abs(values.mean()) < 5 * init_std / np.sqrt(values.size)
        if tolerance is not None:
            assert values.std() == pytest.approx(init_std, rel=tolerance)
    # Gaussian, not uniform: about 4.6% of the draws lie beyond 2 standard deviations
    # (none would for a uniform of this std, whose support ends at 1.73 std).
    beyond = np.mean(np.abs(kernel0) > 2 * init_std)
    assert beyond == pytest.approx(0.0455, abs=0.004)
    assert np.abs(bias1).max() < 6 * init_std


def test_flax_init_gives_lecun_normal_kernels_and_zero_biases(random_data):
    task = MLPTask(random_data, (1000,), init_scheme="flax")
    params = task.init_params(jax.random.key(4), ())
    (kernel0, bias0), (kernel1, bias1) = dense_layers(params)
    # LeCun normal: std sqrt(1 / fan_in), from a normal truncated at 2 std and rescaled.
    assert kernel0.std() == pytest.approx(np.sqrt(1 / 784), rel=0.01)
    assert kernel1.std() == pytest.approx(np.sqrt(1 / 1000), rel=0.04)
    assert np.abs(kernel0).max() <= 2 * np.sqrt(1 / 784) / 0.8796 + 1e-6
    assert not bias0.any() and not bias1.any()


def test_init_params_depend_on_the_key_only(random_data):
    task = MLPTask(random_data, (8, 6))
    first = task.init_params(jax.random.key(5), ())
    again = task.init_params(jax.random.key(5), ())
    other = task.init_params(jax.random.key(6), ())
    for a, b, c in zip(*(jax.tree.leaves(p) for p in (first, again, other)), strict=True):
        np.testing.assert_array_equal(a, b)
        assert not np.allclose(a, c)


# --- test-set metrics ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("hidden_sizes", "activation"), ARCHITECTURES[::3], ids=ARCHITECTURE_IDS[::3]
)
def test_test_metrics_match_numpy_on_the_test_split(random_data, hidden_sizes, activation):
    task = MLPTask(random_data, hidden_sizes, activation, batch_size=16, init_std=0.1)
    params = task.init_params(jax.random.key(7), ())
    metrics = task.test_metrics(params)
    assert set(metrics) == {"test_loss", "test_accuracy"}
    images, labels = random_data.test_images, random_data.test_labels
    want_loss = np_cross_entropy(params, images, labels, activation)
    assert float(metrics["test_loss"]) == pytest.approx(want_loss, rel=1e-5)
    assert want_loss != pytest.approx(
        np_cross_entropy(params, random_data.train_images, random_data.train_labels, activation)
    )
    logits, _ = np_forward(params, images, activation)
    want_accuracy = np.mean(logits.argmax(axis=1) == labels)
    assert float(metrics["test_accuracy"]) == pytest.approx(want_accuracy, abs=1e-6)
    assert 0.0 <= float(metrics["test_accuracy"]) <= 1.0


def test_test_accuracy_counts_correct_argmax_predictions(random_data):
    """Labels chosen from the net's own predictions: all right gives 1, all wrong 0, half 0.5."""
    task = MLPTask(random_data, (20,), "relu", init_std=0.1)
    params = task.init_params(jax.random.key(8), ())
    logits, _ = np_forward(params, random_data.test_images, "relu")
    predicted = logits.argmax(axis=1).astype(np.int32)
    assert len(set(predicted)) > 1  # a constant prediction would not test the argmax axis
    half = predicted.copy()
    half[::2] = (half[::2] + 1) % NUM_CLASSES
    for labels, accuracy in ((predicted, 1.0), ((predicted + 3) % NUM_CLASSES, 0.0), (half, 0.5)):
        dataset = ImageDataset(
            "relabelled",
            random_data.train_images,
            random_data.train_labels,
            random_data.test_images,
            labels,
            NUM_CLASSES,
        )
        metrics = MLPTask(dataset, (20,), "relu", init_std=0.1).test_metrics(params)
        assert float(metrics["test_accuracy"]) == accuracy


def test_only_tasks_with_a_test_split_have_test_metrics(random_data):
    assert has_test_metrics(MLPTask(random_data))
    assert not has_test_metrics(QuadraticTask())


# --- the task built from MNIST-format files, and its evaluation with test metrics -----------


def idx_file(path: Path, array: np.ndarray) -> None:
    """Writes `array` as an IDX file of unsigned bytes: magic 0x0000 08 ndim, dims, values."""
    magic = {3: 0x00000803, 1: 0x00000801}[array.ndim]
    header = struct.pack(">i", magic) + struct.pack(f">{array.ndim}i", *array.shape)
    path.write_bytes(header + np.ascontiguousarray(array, np.uint8).tobytes())


MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}

# The shrunken mnist.yaml of every test below. The evaluation tests use eval.num_problems and
# eval.num_steps too, so that they and the CLI's compare share one compiled program per baseline.
NUM_PROBLEMS, NUM_STEPS = 3, 30
TINY_MNIST_SETS = [
    "meta.iterations=2",
    "meta.num_steps=10",
    "meta.unroll=5",
    "meta.validate_every=1",
    "meta.num_validation_problems=2",
    f"eval.num_problems={NUM_PROBLEMS}",
    f"eval.num_steps={NUM_STEPS}",
    "eval.num_tuning_problems=2",
    "eval.lr_min=0.01",
    "eval.lr_max=0.1",
    "eval.lr_per_decade=1",
    "task.batch_size=8",
]


@pytest.fixture(scope="module")
def tiny_mnist(tmp_path_factory) -> tuple[Path, dict[str, np.ndarray]]:
    """A data folder holding a learnable tiny MNIST as IDX files in DIR/mnist: (DIR, arrays)."""
    data_dir = tmp_path_factory.mktemp("data")
    arrays = learnable_arrays(seed=1)
    (data_dir / "mnist").mkdir()
    for key, name in MNIST_FILES.items():
        idx_file(data_dir / "mnist" / name, arrays[key])
    return data_dir, arrays


@pytest.fixture(scope="module")
def mnist_config(tiny_mnist) -> Config:
    data_dir, _ = tiny_mnist
    return load_config(MNIST_CONFIG, [*TINY_MNIST_SETS, f"task.data_dir={data_dir}"])


@pytest.fixture(scope="module")
def mnist_task(mnist_config) -> MLPTask:
    return make_task(mnist_config.task)


def test_make_task_reads_the_mnist_files_into_the_configured_mlp(mnist_task, tiny_mnist):
    _, arrays = tiny_mnist
    assert isinstance(mnist_task, MLPTask)
    assert (mnist_task.hidden_sizes, mnist_task.activation) == ((20,), "sigmoid")
    assert (mnist_task.batch_size, mnist_task.init_std) == (8, 0.01)
    for key in MNIST_FILES:
        np.testing.assert_array_equal(getattr(mnist_task.dataset, key), arrays[key])
    params = mnist_task.init_params(jax.random.key(0), ())
    assert [(k.shape, b.shape) for k, b in dense_layers(params)] == layer_shapes((20,))


def test_evaluation_run_scores_the_parameters_it_ends_with(mnist_task):
    """At learning rate 0 the final parameters are the initial ones that `sample_batch` draws:
    the test metrics must be theirs, on the whole test split."""
    key = jax.random.key(10)
    curves, metrics, _ = evaluation_run(
        mnist_task, _BaselineFactory("adam"), jnp.float32(0.0), key, NUM_PROBLEMS, NUM_STEPS, True
    )
    assert curves.shape == (NUM_STEPS + 1, NUM_PROBLEMS)
    assert set(metrics) == {"test_loss", "test_accuracy"}
    assert all(values.shape == (NUM_PROBLEMS,) for values in metrics.values())
    problem_key, run_key = jax.random.split(key)
    params, problems = sample_batch(mnist_task, problem_key, NUM_PROBLEMS)
    first_losses = batch_loss(mnist_task, params, problems, jax.random.fold_in(run_key, 0))
    np.testing.assert_allclose(curves[0], first_losses, rtol=1e-5)
    data = jax.tree.map(np.asarray, mnist_task.dataset)  # the task holds device arrays
    for problem in range(NUM_PROBLEMS):
        one = jax.tree.map(lambda leaf, p=problem: leaf[p], params)
        want_loss = np_cross_entropy(one, data.test_images, data.test_labels, "sigmoid")
        assert float(metrics["test_loss"][problem]) == pytest.approx(want_loss, rel=1e-5)
        logits, _ = np_forward(one, data.test_images, "sigmoid")
        want_accuracy = np.mean(logits.argmax(axis=1) == data.test_labels)
        assert float(metrics["test_accuracy"][problem]) == pytest.approx(want_accuracy, abs=1e-6)


def test_adam_lowers_the_training_loss_and_raises_test_accuracy(mnist_task):
    key = jax.random.key(10)
    untrained = evaluate_baseline(mnist_task, "adam", 0.0, key, NUM_PROBLEMS, NUM_STEPS)
    trained = evaluate_baseline(mnist_task, "adam", 0.01, key, NUM_PROBLEMS, NUM_STEPS)

    assert trained.curves.shape == (NUM_STEPS + 1, NUM_PROBLEMS)
    assert set(trained.test_metrics) == {"test_loss", "test_accuracy"}
    for values in trained.test_metrics.values():
        assert values.shape == (NUM_PROBLEMS,)
        assert np.all(np.isfinite(values))
    accuracy = trained.test_metrics["test_accuracy"]
    assert np.all((accuracy >= 0.0) & (accuracy <= 1.0))
    # Accuracies on 32 test images are multiples of 1/32.
    np.testing.assert_allclose(accuracy * 32, np.round(accuracy * 32), atol=1e-4)

    # Same problems, same starting points: the same loss before the first step.
    np.testing.assert_allclose(trained.curves[0], untrained.curves[0], rtol=1e-6)
    # At init_std 0.01 every logit is about 0: the losses start at log(10).
    np.testing.assert_allclose(trained.curves[0], np.log(NUM_CLASSES), atol=0.02)
    np.testing.assert_allclose(untrained.test_metrics["test_loss"], np.log(NUM_CLASSES), atol=0.01)

    # Fixed seeds: adam takes the training loss from 2.30 to about 1.96, every problem's test
    # loss below its untrained one, and the test accuracy from 0.09 to about 0.29.
    assert trained.curves[-1].mean() < trained.curves[0].mean() - 0.15
    assert np.all(trained.test_metrics["test_loss"] < untrained.test_metrics["test_loss"])
    assert accuracy.mean() > untrained.test_metrics["test_accuracy"].mean() + 0.1


# --- the command line on MNIST-format files --------------------------------------------------


def l2l(*args: str | Path):
    return CliRunner().invoke(app, [str(arg) for arg in args])


def check_test_metric_columns(summary: str, curves: dict, labels: set[str]) -> None:
    """summary.md has the two metric columns, filled for every optimizer from curves.json."""
    rows = [line for line in summary.splitlines() if line.startswith("| ")]
    header = [cell.strip() for cell in rows[0].strip("|").split("|")]
    assert "test_accuracy (95% CI)" in header and "test_loss (95% CI)" in header
    assert set(curves["optimizers"]) == labels
    for row in rows[1:]:
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        entry = curves["optimizers"][cells[0]]
        for name in ("test_accuracy", "test_loss"):
            cell = cells[header.index(f"{name} (95% CI)")]
            assert re.fullmatch(r"\S+ ± \S+", cell), cell
            assert float(cell.split(" ± ")[0]) == pytest.approx(
                entry["test_metrics"][name]["mean"], rel=1e-3
            )


def test_meta_train_and_compare_on_mnist_files(tiny_mnist, tmp_path):
    data_dir, _ = tiny_mnist
    sets = [arg for value in TINY_MNIST_SETS for arg in ("--set", value)]
    run_dir = tmp_path / "run"

    trained = l2l(
        "meta-train", "--task", "mnist", "--config", MNIST_CONFIG, "--out", run_dir,
        *sets, "--set", f"task.data_dir={data_dir}",
    )  # fmt: skip
    assert trained.exit_code == 0, trained.output
    evaluated = json.loads((run_dir / "eval" / "curves.json").read_text())
    assert evaluated["task"] == "mnist"
    assert evaluated["config"]["task"]["data_dir"] == str(data_dir)
    check_test_metric_columns(
        (run_dir / "eval" / "summary.md").read_text(), evaluated, {"LSTM (run)"}
    )

    out_dir = tmp_path / "compare"
    compared = l2l(
        "compare", "--task", "mnist", "--config", MNIST_CONFIG, "--learned", run_dir,
        "--baselines", "adam,sgd", "--out", out_dir, "--data-dir", data_dir, *sets,
    )  # fmt: skip
    assert compared.exit_code == 0, compared.output
    curves = json.loads((out_dir / "curves.json").read_text())
    assert (curves["num_problems"], curves["num_steps"]) == (NUM_PROBLEMS, NUM_STEPS)
    assert curves["config"]["task"]["data_dir"] == str(data_dir)
    labels = {"LSTM (run)", "adam", "sgd"}
    check_test_metric_columns((out_dir / "summary.md").read_text(), curves, labels)
    for label, entry in curves["optimizers"].items():
        assert len(entry["mean"]) == NUM_STEPS + 1
        assert set(entry["test_metrics"]) == {"test_loss", "test_accuracy"}, label
        for name, metric in entry["test_metrics"].items():
            values = metric["per_problem"]
            assert len(values) == NUM_PROBLEMS and None not in values, (label, name)
            assert metric["mean"] == pytest.approx(np.mean(values), rel=1e-6)
        accuracies = np.array(entry["test_metrics"]["test_accuracy"]["per_problem"])
        assert np.all((accuracies >= 0) & (accuracies <= 1))
        np.testing.assert_allclose(accuracies * 32, np.round(accuracies * 32), atol=1e-4)
    # The learned optimizer meets the same test problems as in meta-train's own evaluation.
    learned = curves["optimizers"]["LSTM (run)"]
    assert learned["test_metrics"] == evaluated["optimizers"]["LSTM (run)"]["test_metrics"]
    # The tuned adam learns the tiny MNIST: a test loss below the untrained log(10).
    assert curves["optimizers"]["adam"]["test_metrics"]["test_loss"]["mean"] < np.log(10) - 0.1


def data_error_line(result) -> str:
    """Exit code 2, no traceback, and exactly one `error: ...` line, the last one on stderr."""
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], result.stderr
    return errors[0]


@pytest.mark.parametrize("command", ["meta-train", "compare", "evaluate"])
def test_mnist_without_a_data_folder_is_a_one_line_error(tmp_path, monkeypatch, command):
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    args = ["--task", "mnist", "--config", MNIST_CONFIG, "--out", tmp_path / "out"]
    extra = {
        "meta-train": [],
        "compare": ["--baselines", "sgd"],
        "evaluate": ["--optimizer", "sgd:0.1"],
    }
    line = data_error_line(l2l(command, *args, *extra[command]))
    assert "--data-dir" in line or DATA_DIR_ENV in line
    assert not (tmp_path / "out" / "curves.json").exists()


def test_mnist_with_a_data_folder_without_the_files_names_the_missing_file(tmp_path, monkeypatch):
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    empty = tmp_path / "empty"
    empty.mkdir()
    result = l2l(
        "evaluate", "--task", "mnist", "--config", MNIST_CONFIG, "--optimizer", "sgd:0.1",
        "--out", tmp_path / "out", "--data-dir", empty,
    )  # fmt: skip
    line = data_error_line(result)
    assert "train-images-idx3-ubyte" in line and str(empty) in line
    assert "--data-dir" in line

    missing = tmp_path / "missing"
    line = data_error_line(
        l2l("evaluate", "--task", "mnist", "--config", MNIST_CONFIG, "--optimizer", "sgd:0.1",
            "--out", tmp_path / "out", "--data-dir", missing)
    )  # fmt: skip
    assert str(missing) in line and "does not exist" in line


def test_meta_train_without_data_leaves_no_run_folder(tmp_path, monkeypatch):
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    run_dir = tmp_path / "run"
    result = l2l("meta-train", "--task", "mnist", "--config", MNIST_CONFIG, "--out", run_dir)
    assert result.exit_code == 2
    assert not run_dir.exists()


def test_eval_test_metrics_false_skips_the_test_split(mnist_config, tmp_path):
    from l2lgd.compare import compare

    config = with_overrides(mnist_config, ["eval.test_metrics=false", "eval.num_problems=4"])
    compare(config, ["adam"], [], tmp_path)
    curves = json.loads((tmp_path / "curves.json").read_text())
    assert curves["optimizers"]["adam"]["test_metrics"] == {}
    assert "test_accuracy" not in (tmp_path / "summary.md").read_text()


def test_task_classes_keep_and_renumber_a_subset_of_labels(mnist_config, tiny_mnist):
    _, arrays = tiny_mnist
    task = make_task(with_overrides(mnist_config, ["task.classes=[3, 1]"]).task)
    keep = np.isin(arrays["train_labels"], [3, 1])
    assert task.dataset.num_classes == 2
    np.testing.assert_array_equal(task.dataset.train_images, arrays["train_images"][keep])
    np.testing.assert_array_equal(
        task.dataset.train_labels, np.where(arrays["train_labels"][keep] == 3, 0, 1)
    )
    assert task.init_params(jax.random.key(0), ())["Dense_1"]["kernel"].shape[-1] == 2


def test_mnist_config_takes_tanh_and_flax_init_and_rejects_unknown_init():
    from l2lgd.config import MNISTTaskConfig
    from l2lgd.errors import ConfigError

    MNISTTaskConfig(activation="tanh", init="flax").validate()
    with pytest.raises(ConfigError, match="task.init"):
        MNISTTaskConfig(init="he").validate()
