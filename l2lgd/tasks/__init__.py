"""Task families: each samples problems and gives `init_params(key, problem)` and `loss(params, problem, key)`.

A task is a frozen dataclass (hashable, so a static `jit` argument) whose methods are pure and
vmap over a batch of problems. `sample_batch` draws a batch of problems with their initial
parameters from one key.
"""

from __future__ import annotations

import functools
from typing import Any, Protocol

import jax
from jax.sharding import Mesh

from l2lgd.config import TASK_NAMES, TaskConfig
from l2lgd.data import ImageDataset, load_cifar10, load_mnist, resolve_data_dir, subset_classes
from l2lgd.data.images import load_content_images, load_style_image
from l2lgd.errors import ConfigError
from l2lgd.sharding import shard_problems
from l2lgd.tasks.cnn import CNNTask
from l2lgd.tasks.mlp import MLPTask
from l2lgd.tasks.quadratic import QuadraticProblem, QuadraticTask
from l2lgd.tasks.style import ContentPool, StyleProblem, StyleTransferTask
from l2lgd.tasks.vgg import (
    RANDOM_WEIGHTS_LABEL,
    VGGWeights,
    check_layer_names,
    load_vgg_weights,
    random_vgg_weights,
)

__all__ = [
    "CNNTask",
    "MLPTask",
    "QuadraticProblem",
    "QuadraticTask",
    "StyleProblem",
    "StyleTransferTask",
    "VGGWeights",
    "Task",
    "make_task",
    "sample_batch",
    "task_description",
]


class Task(Protocol):
    """What meta-training and evaluation need from a problem family."""

    def sample_problem(self, key: jax.Array) -> Any: ...

    def init_params(self, key: jax.Array, problem: Any) -> Any: ...

    def loss(self, params: Any, problem: Any, key: jax.Array) -> jax.Array: ...


def make_task(config: TaskConfig) -> Task:
    """The task family a config names (loading its dataset, if it has one)."""
    if config.name == "quadratic":
        return QuadraticTask(variant=config.variant, dim=config.dim, init_std=config.init_std)
    if config.name == "mnist":
        return MLPTask(
            load_dataset_cached(config.name, *_data_location(config), config.classes),
            hidden_sizes=config.hidden_sizes,
            activation=config.activation,
            batch_size=config.batch_size,
            init_std=config.init_std,
        )
    if config.name == "cifar10":
        return CNNTask(
            load_dataset_cached(config.name, *_data_location(config), config.classes),
            conv_channels=config.conv_channels,
            fc_size=config.fc_size,
            batch_size=config.batch_size,
            init_std=config.init_std,
        )
    if config.name == "style":
        return style_task_cached(config)
    raise ConfigError(f"unknown task {config.name!r}; valid: {', '.join(TASK_NAMES)}")


@functools.lru_cache(maxsize=4)
def style_task_cached(config: TaskConfig) -> StyleTransferTask:
    """The Neural Art task of a config, built once per process (images read, VGG weights loaded,
    style Grams computed), so that equal configs give the same (jit-cache-sharing) task."""
    check_layer_names(config.content_layers, "task.content_layers")
    check_layer_names(config.style_layers, "task.style_layers")
    layers = config.content_layers + config.style_layers
    if config.vgg_weights:
        vgg = load_vgg_weights(config.vgg_weights, layers)
    else:
        vgg = random_vgg_weights(layers)
    return StyleTransferTask.create(
        _content_pool(config),
        load_style_image(config.style_image, config.image_size),
        vgg,
        content_layers=config.content_layers,
        style_layers=config.style_layers,
        content_weight=config.content_weight,
        style_weight=config.style_weight,
        tv_weight=config.tv_weight,
        pooling=config.vgg_pooling,
    )


def task_description(config: TaskConfig) -> str:
    """One line on what a result depends on beyond the config's name, for result tables: for
    the style task, the images and which VGG-19 weights (a file, or random); "" for others."""
    if config.name != "style":
        return ""
    content = (
        f"the first {config.num_content_images} CIFAR-10 {config.content_split} images"
        if config.content_source == "cifar10"
        else f"the images of {config.content_dir}"
    )
    weights = config.vgg_weights or RANDOM_WEIGHTS_LABEL
    return (
        f"{config.image_size}x{config.image_size} images, content: {content}, style: "
        f"{config.style_image}; VGG-19 weights: {weights}"
    )


def _content_pool(config: TaskConfig) -> ContentPool:
    size, count = config.image_size, config.num_content_images
    if config.content_source == "folder":
        return ContentPool(load_content_images("folder", size, count, folder=config.content_dir))
    cifar = load_dataset_cached("cifar10", *_data_location(config), ())
    split = getattr(cifar, f"{config.content_split}_images")
    return ContentPool(load_content_images("cifar10", size, count, cifar_images=split))


def _data_location(config: TaskConfig) -> tuple[str, str | None, bool]:
    """(source, data folder, download); for files, the folder resolved now, so that the cache is
    keyed on the folder and not on an environment variable that may change."""
    data_dir = config.data_dir or None
    if config.data_source == "files":
        data_dir = str(resolve_data_dir(data_dir))
    return config.data_source, data_dir, config.download


LOADERS = {"mnist": load_mnist, "cifar10": load_cifar10}


@functools.lru_cache(maxsize=8)
def load_dataset_cached(
    name: str, source: str, data_dir: str | None, download: bool, classes: tuple[int, ...]
) -> ImageDataset:
    """A data set (or the subset of `classes`) read once per process, so that equal configs give
    equal (jit-cache-sharing) tasks."""
    dataset = LOADERS[name](source, data_dir, download)
    return subset_classes(dataset, classes) if classes else dataset


def sample_batch(
    task: Task, key: jax.Array, num_problems: int, mesh: Mesh | None = None
) -> tuple[Any, Any]:
    """`num_problems` problems and their initial parameters, each with a leading batch axis.

    Inside `jit`, the batch is split across the devices of `mesh` (default: all; see
    `l2lgd.sharding`).
    """
    problem_keys, init_keys = jax.random.split(key)
    problems = jax.vmap(task.sample_problem)(jax.random.split(problem_keys, num_problems))
    params = jax.vmap(task.init_params)(jax.random.split(init_keys, num_problems), problems)
    return shard_problems((params, problems), mesh)
