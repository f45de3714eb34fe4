"""The Neural Art task: Gram matrices, total variation, the VGG-19 weight loader, the task's loss,
meta-training on tiny images, and the `l2l stylize` figure."""

import importlib.util
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from l2lgd import runs
from l2lgd.cli import app
from l2lgd.config import load_config
from l2lgd.data.images import load_content_images, resolve_image_path
from l2lgd.errors import ConfigError, DataError
from l2lgd.evaluate import learned_curves
from l2lgd.meta.train import meta_train
from l2lgd.optimizers.learned import init_learned_weights
from l2lgd.sources import load_learned
from l2lgd.tasks import make_task, sample_batch
from l2lgd.tasks.style import ContentPool, StyleTransferTask, gram_matrix, total_variation
from l2lgd.tasks.vgg import (
    RANDOM_WEIGHTS_LABEL,
    VGGWeights,
    conv_shapes,
    load_vgg_weights,
    random_vgg_weights,
)

pytestmark = pytest.mark.usefixtures("compilation_cache")

TINY_WIDTHS = (2, 3, 4, 4, 4)


def test_gram_matrix_matches_explicit_loops():
    features = np.random.default_rng(0).normal(size=(2, 3, 4, 5)).astype(np.float32)
    expected = np.zeros((2, 5, 5))
    for b in range(2):
        for c in range(5):
            for d in range(5):
                total = 0.0
                for i in range(3):
                    for j in range(4):
                        total += features[b, i, j, c] * features[b, i, j, d]
                expected[b, c, d] = total / (3 * 4)
    np.testing.assert_allclose(gram_matrix(jnp.asarray(features)), expected, rtol=1e-5, atol=1e-6)


def test_total_variation_matches_explicit_loops():
    image = np.random.default_rng(1).uniform(size=(4, 5, 3)).astype(np.float32)
    vertical, horizontal = [], []
    for i in range(4):
        for j in range(5):
            for c in range(3):
                if i + 1 < 4:
                    vertical.append((image[i + 1, j, c] - image[i, j, c]) ** 2)
                if j + 1 < 5:
                    horizontal.append((image[i, j + 1, c] - image[i, j, c]) ** 2)
    expected = np.mean(vertical) + np.mean(horizontal)
    np.testing.assert_allclose(total_variation(jnp.asarray(image)), expected, rtol=1e-5)


def conv_relu_reference(image: np.ndarray, kernel: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """3x3 "SAME" cross-correlation (zero padding) plus bias, then ReLU, by explicit loops."""
    height, width, _ = image.shape
    padded = np.pad(image, ((1, 1), (1, 1), (0, 0)))
    out = np.zeros((height, width, kernel.shape[3]))
    for i in range(height):
        for j in range(width):
            for o in range(kernel.shape[3]):
                out[i, j, o] = (
                    np.sum(padded[i : i + 3, j : j + 3, :] * kernel[:, :, :, o]) + bias[o]
                )
    return np.maximum(out, 0.0)


def tiny_weight_arrays(seed: int = 2) -> dict[str, np.ndarray]:
    """conv1_1, conv1_2, conv2_1 of a VGG with TINY_WIDTHS, plus input normalization."""
    rng = np.random.default_rng(seed)
    shapes = {"conv1_1": (3, 2), "conv1_2": (2, 2), "conv2_1": (2, 3)}
    arrays = {}
    for name, (inputs, outputs) in shapes.items():
        arrays[f"{name}/kernel"] = rng.normal(size=(3, 3, inputs, outputs)).astype(np.float32)
        arrays[f"{name}/bias"] = rng.normal(size=(outputs,)).astype(np.float32)
    arrays["input_mean"] = np.array([100.0, 120.0, 140.0], np.float32)
    arrays["input_std"] = np.array([50.0, 60.0, 70.0], np.float32)
    return arrays


def test_vgg_loader_reproduces_a_hand_computed_forward_pass(tmp_path):
    arrays = tiny_weight_arrays()
    path = tmp_path / "tiny_vgg.npz"
    np.savez(path, **arrays, **{"conv5_4/kernel": np.zeros(1)})  # deeper keys are not read
    weights = load_vgg_weights(path, ("relu2_1",), widths=TINY_WIDTHS)
    assert set(weights.params) == {"conv1_1", "conv1_2", "conv2_1"}
    assert weights.source == str(path)

    image = np.random.default_rng(3).uniform(size=(6, 6, 3)).astype(np.float32)
    features = weights.features(jnp.asarray(image)[None], ("relu1_1", "relu2_1"), pooling="avg")

    normalized = (255.0 * image - arrays["input_mean"]) / arrays["input_std"]
    relu1_1 = conv_relu_reference(normalized, arrays["conv1_1/kernel"], arrays["conv1_1/bias"])
    relu1_2 = conv_relu_reference(relu1_1, arrays["conv1_2/kernel"], arrays["conv1_2/bias"])
    pooled = relu1_2.reshape(3, 2, 3, 2, 2).mean(axis=(1, 3))
    relu2_1 = conv_relu_reference(pooled, arrays["conv2_1/kernel"], arrays["conv2_1/bias"])
    np.testing.assert_allclose(features["relu1_1"][0], relu1_1, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(features["relu2_1"][0], relu2_1, rtol=1e-4, atol=1e-4)


def test_vgg_loader_rejects_a_wrong_shape_with_the_key_and_shapes(tmp_path):
    arrays = tiny_weight_arrays()
    arrays["conv1_2/kernel"] = np.zeros((3, 3, 2, 5), np.float32)
    path = tmp_path / "wrong.npz"
    np.savez(path, **arrays)
    with pytest.raises(DataError) as error:
        load_vgg_weights(path, ("relu2_1",), widths=TINY_WIDTHS)
    message = str(error.value)
    assert "'conv1_2/kernel'" in message and "(3, 3, 2, 5)" in message
    assert "(3, 3, 2, 2)" in message and "\n" not in message


def test_vgg_loader_names_a_missing_key_and_a_missing_file(tmp_path):
    arrays = tiny_weight_arrays()
    del arrays["conv2_1/bias"]
    path = tmp_path / "partial.npz"
    np.savez(path, **arrays)
    load_vgg_weights(path, ("relu1_2",), widths=TINY_WIDTHS)  # conv2_1 not needed: fine
    with pytest.raises(DataError, match=r"no array 'conv2_1/bias' \(expected shape \(3,\)\)"):
        load_vgg_weights(path, ("relu2_1",), widths=TINY_WIDTHS)
    with pytest.raises(DataError, match="weights file not found"):
        load_vgg_weights(tmp_path / "absent.npz", ("relu1_1",))
    (tmp_path / "garbage.npz").write_text("not a zip file")
    with pytest.raises(DataError, match="not a readable .npz"):
        load_vgg_weights(tmp_path / "garbage.npz", ("relu1_1",))


def test_random_vgg_weights_are_fixed_and_labelled():
    first = random_vgg_weights(("relu2_1",))
    second = random_vgg_weights(("relu2_1",))
    assert set(first.params) == {"conv1_1", "conv1_2", "conv2_1"}
    assert first.params["conv1_2"]["kernel"].shape == (3, 3, 64, 64)
    np.testing.assert_array_equal(
        first.params["conv2_1"]["kernel"], second.params["conv2_1"]["kernel"]
    )
    assert first.source == RANDOM_WEIGHTS_LABEL


def smooth_images(count: int, size: int, seed: int) -> np.ndarray:
    """uint8 RGB images made of a few colour blocks, (count, size, size, 3)."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 256, size=(count, 3, 3, 3), dtype=np.uint8)
    scale = -(-size // 3)
    return np.kron(blocks, np.ones((1, scale, scale, 1), np.uint8))[:, :size, :size]


def tiny_task(size: int = 8) -> StyleTransferTask:
    vgg = VGGWeights(
        random_vgg_weights(("relu2_1",), widths=TINY_WIDTHS).params, widths=TINY_WIDTHS
    )
    return StyleTransferTask.create(
        ContentPool(smooth_images(5, size, seed=4)),
        smooth_images(1, size, seed=5)[0],
        vgg,
        content_layers=("relu2_1",),
        style_layers=("relu1_1", "relu2_1"),
        tv_weight=0.5,
    )


def test_the_image_starts_at_the_content_image_with_zero_content_loss():
    task = tiny_task()

    @jax.jit
    def start_and_terms(key):
        params, problems = sample_batch(task, key, 3)
        keys = jax.random.split(key, 3)
        return (
            params,
            problems,
            jax.vmap(task.loss_terms)(params, problems),
            jax.vmap(task.loss)(params, problems, keys),
            jax.vmap(task.loss_terms)(params + 0.1, problems),
        )

    params, problems, terms, losses, moved_terms = start_and_terms(jax.random.key(0))
    np.testing.assert_array_equal(params, problems.content_image)
    assert params.shape == (3, 8, 8, 3)
    np.testing.assert_allclose(terms["content"], 0.0, atol=1e-7)
    assert np.all(terms["style"] > 0.0)
    np.testing.assert_allclose(losses, terms["style"] + 0.5 * terms["tv"], rtol=1e-5)
    assert np.all(moved_terms["content"] > 0.0)


def test_unknown_layers_and_content_shortfalls_are_clear_errors(tmp_path):
    config = load_config(None, ["task.name=style", "task.style_layers=relu1_1,relu9_9"])
    with pytest.raises(ConfigError, match=r"task.style_layers: unknown VGG-19 layer\(s\) relu9_9"):
        make_task(config.task)
    with pytest.raises(DataError, match="holds 0 images, fewer than"):
        load_content_images("folder", 8, 1, folder=str(tmp_path))
    with pytest.raises(DataError, match="content image folder not found"):
        load_content_images("folder", 8, 1, folder=str(tmp_path / "absent"))
    assert resolve_image_path("matplotlib:grace_hopper.jpg").is_file()
    with pytest.raises(DataError, match="ships no image 'absent.png'"):
        resolve_image_path("matplotlib:absent.png")


def write_tiny_images(folder: Path) -> tuple[Path, Path]:
    """A folder of 6 content PNGs and one style PNG, as a user would supply them."""
    content_dir = folder / "content"
    content_dir.mkdir()
    for index, image in enumerate(smooth_images(6, 12, seed=6)):
        Image.fromarray(image).save(content_dir / f"photo_{index}.png")
    style_path = folder / "style.png"
    Image.fromarray(smooth_images(1, 12, seed=7)[0]).save(style_path)
    return content_dir, style_path


def tiny_style_overrides(content_dir: Path, style_path: Path) -> list[str]:
    return [
        "task.name=style",
        "task.image_size=8",
        "task.content_source=folder",
        f"task.content_dir={json.dumps(str(content_dir))}",
        "task.num_content_images=6",
        f"task.style_image={json.dumps(str(style_path))}",
        "task.content_layers=relu1_1",
        "task.style_layers=relu1_1",
        "optimizer.preprocessing=log_sign",
        "meta.iterations=20",
        "meta.num_problems=2",
        "meta.num_steps=16",
        "meta.unroll=8",
        "meta.learning_rate=0.01",
        "meta.objective=log_sum",
        "meta.validate_every=10",
        "meta.num_validation_problems=4",
        "eval.num_problems=4",
        "eval.num_steps=16",
        "eval.num_tuning_problems=2",
        "eval.lr_min=0.01",
        "eval.lr_max=0.1",
        "eval.lr_per_decade=1",
    ]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A Neural Art optimizer meta-trained on 8x8 images (random VGG up to relu1_1)."""
    folder = tmp_path_factory.mktemp("style")
    content_dir, style_path = write_tiny_images(folder)
    config = load_config(None, tiny_style_overrides(content_dir, style_path))
    run_dir = folder / "run"
    runs.create_run_dir(run_dir, config)
    meta_train(config, run_dir)
    return run_dir, config


def test_meta_training_on_tiny_images_beats_the_untrained_optimizer(tiny_run):
    run_dir, config = tiny_run
    task = make_task(config.task)
    key = jax.random.key(11)
    trained = load_learned(run_dir)
    untrained = init_learned_weights(jax.random.key(0), config.optimizer)
    trained_curves = learned_curves(task, trained.weights, trained.config, key, 8, 16)
    untrained_curves = learned_curves(task, untrained, config.optimizer, key, 8, 16)
    start = trained_curves[0].mean()
    assert trained_curves[-1].mean() < 0.7 * start
    assert trained_curves[-1].mean() < untrained_curves[-1].mean()


def test_stylize_and_compare_commands_on_the_tiny_run(tiny_run, tmp_path):
    run_dir, _ = tiny_run
    out = tmp_path / "figure"
    result = CliRunner().invoke(
        app,
        ["stylize", "--optimizer", str(run_dir), "--optimizer", "adam:0.03"]
        + ["--count", "2", "--out", str(out)],
    )
    assert result.exit_code == 0, result.output
    assert (out / "stylized.png").read_bytes().startswith(b"\x89PNG")
    record = json.loads((out / "stylized.json").read_text())
    assert set(record["final_losses"]) == {"LSTM (run)", "adam (lr 0.03)"}
    assert RANDOM_WEIGHTS_LABEL in record["title"]

    config_path = run_dir / "config.yaml"
    compare_out = tmp_path / "compare"
    result = CliRunner().invoke(
        app,
        ["compare", "--task", "style", "--config", str(config_path), "--baselines", "adam"]
        + ["--learned", str(run_dir), "--out", str(compare_out)],
    )
    assert result.exit_code == 0, result.output
    curves = json.loads((compare_out / "curves.json").read_text())
    assert set(curves["optimizers"]) == {"LSTM (run)", "adam"}
    assert len(curves["optimizers"]["adam"]["final_losses"]) == 4
    summary = (compare_out / "summary.md").read_text()
    assert f"VGG-19 weights: {RANDOM_WEIGHTS_LABEL}" in summary


def load_converter():
    spec = importlib.util.spec_from_file_location(
        "convert_vgg19", Path(__file__).parents[1] / "scripts" / "convert_vgg19.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_converter_turns_torchvision_and_keras_layouts_into_a_loadable_file(tmp_path):
    converter = load_converter()
    shapes = conv_shapes()
    rng = np.random.default_rng(8)
    first = rng.normal(size=(64, 3, 3, 3)).astype(np.float32)  # torchvision: (out, in, h, w)
    state = {}
    for name, index in zip(converter.conv_names(), converter.TORCHVISION_CONV_INDICES, strict=True):
        kernel_shape, bias_shape = shapes[name]
        h, w, i, o = kernel_shape
        state[f"features.{index}.weight"] = np.zeros((o, i, h, w), np.float32)
        state[f"features.{index}.bias"] = np.full(bias_shape, index, np.float32)
    state["features.0.weight"] = first
    arrays = converter.from_torchvision(state)
    converter.check_shapes(arrays)
    np.testing.assert_array_equal(arrays["conv1_1/kernel"][1, 2, 0, 5], first[5, 0, 1, 2])
    path = tmp_path / "vgg19.npz"
    np.savez(path, **arrays)
    weights = load_vgg_weights(path, ("relu5_4",))
    assert len(weights.params) == 16
    np.testing.assert_array_equal(weights.params["conv5_4"]["bias"], 34.0)
    np.testing.assert_allclose(weights.input_std, 255.0 * np.array([0.229, 0.224, 0.225]))

    keras_layers = {
        f"block{name[4]}_conv{name[6]}": (np.zeros(shapes[name][0]), np.zeros(shapes[name][1]))
        for name in converter.conv_names()
    }
    bgr_kernel = rng.normal(size=(3, 3, 3, 64))
    keras_layers["block1_conv1"] = (bgr_kernel, np.zeros(64))
    keras_arrays = converter.from_keras(keras_layers)
    converter.check_shapes(keras_arrays)
    # RGB channel 0 (red) takes the weights the BGR kernel gave its channel 2 (red)
    np.testing.assert_allclose(keras_arrays["conv1_1/kernel"][:, :, 0], bgr_kernel[:, :, 2])
