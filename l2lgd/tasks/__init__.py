"""Task families: each samples problems and gives `init_params(key, problem)` and `loss(params, problem, key)`.

A task is a pytree (arrays as leaves, hyper-parameters static; see `l2lgd.tasks.protocol`) whose
methods are pure and vmap over a batch of problems; compiled programs take it as an argument.
`sample_batch` draws a batch of problems with their initial parameters from one key.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import jax

from l2lgd.config import TASK_NAMES, DataLocationConfig, StyleTaskConfig, TaskConfig
from l2lgd.errors import ConfigError
from l2lgd.tasks.cnn import CNNTask
from l2lgd.tasks.mlp import MLPTask
from l2lgd.tasks.protocol import Task, sample_batch
from l2lgd.tasks.quadratic import QuadraticProblem, QuadraticTask
from l2lgd.tasks.style import ContentPool, StyleProblem, StyleTransferTask
from l2lgd.tasks.vgg import (
    RANDOM_WEIGHTS_LABEL,
    VGGWeights,
    check_layer_names,
    load_vgg_weights,
    random_vgg_weights,
)

if TYPE_CHECKING:
    from l2lgd.data import ImageDataset

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


def make_task(config: TaskConfig) -> Task:
    """The task family a config names (loading its dataset, if it has one), its arrays on the
    default device (uncommitted), so that every compiled program it enters reads them in place."""
    return jax.device_put(_host_task(config))


def _host_task(config: TaskConfig) -> Task:
    """The task family a config names, its arrays still on the host."""
    if config.name == "quadratic":
        return QuadraticTask(
            variant=config.variant,
            dim=config.dim,
            init_std=config.init_std,
            condition_number=config.condition_number,
            loss_scale=config.loss_scale,
            loss_scale_spread=config.loss_scale_spread,
        )
    if config.name == "mnist":
        return MLPTask(
            load_dataset(config.name, *_data_location(config), config.classes),
            hidden_sizes=config.hidden_sizes,
            activation=config.activation,
            batch_size=config.batch_size,
            init_std=config.init_std,
            init_scheme=config.init,
        )
    if config.name == "cifar10":
        return CNNTask(
            load_dataset(config.name, *_data_location(config), config.classes),
            conv_channels=config.conv_channels,
            fc_size=config.fc_size,
            batch_size=config.batch_size,
            init_std=config.init_std,
        )
    if config.name == "style":
        return style_task(config)
    raise ConfigError(f"unknown task {config.name!r}; valid: {', '.join(TASK_NAMES)}")


@functools.lru_cache(maxsize=4)
def style_task(config: StyleTaskConfig) -> StyleTransferTask:
    """The Neural Art task of a config: images read, VGG weights loaded, style Grams computed;
    once per process, since one command builds its task at several steps."""
    from l2lgd.data.images import load_style_image

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


def _content_pool(config: StyleTaskConfig) -> ContentPool:
    from l2lgd.data.images import load_content_images

    size, count = config.image_size, config.num_content_images
    if config.content_source == "folder":
        return ContentPool(load_content_images("folder", size, count, folder=config.content_dir))
    cifar = load_dataset("cifar10", *_data_location(config), ())
    split = getattr(cifar, f"{config.content_split}_images")
    return ContentPool(load_content_images("cifar10", size, count, cifar_images=split))


def _data_location(config: DataLocationConfig) -> tuple[str, str | None, bool]:
    """(source, data folder, download); for files, the folder resolved now, so that a missing
    folder is reported before any file is read."""
    from l2lgd.data import resolve_data_dir

    data_dir = config.data_dir or None
    if config.data_source == "files":
        data_dir = str(resolve_data_dir(data_dir))
    return config.data_source, data_dir, config.download


@functools.lru_cache(maxsize=8)
def load_dataset(
    name: str, source: str, data_dir: str | None, download: bool, classes: tuple[int, ...]
) -> ImageDataset:
    """A data set, or the subset of `classes`, read once per process (keyed on the resolved
    folder), since one command builds its task at several steps (checks, training, evaluation);
    the data layer is imported only here, so that importing the tasks (and the rollout) does not
    import it."""
    from l2lgd.data import load_cifar10, load_mnist, subset_classes

    loaders = {"mnist": load_mnist, "cifar10": load_cifar10}
    dataset = loaders[name](source, data_dir, download)
    return subset_classes(dataset, classes) if classes else dataset
