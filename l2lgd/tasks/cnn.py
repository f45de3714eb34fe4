"""A small convolutional network with batch norm on an image dataset: the paper's CIFAR-10 task (3.3).

Architecture, as in the original code: conv layers (default 3 of 16 channels, 5x5, stride 1,
SAME), each followed by batch norm, ReLU and 2x2 max-pooling; a fully connected layer (default
32 units) with batch norm and ReLU; a linear layer to the logits. Pixels are scaled to [0, 1].
On 32x32x3 images with 10 classes the default model has 22,762 parameters (14,000 of them in the
conv kernels, which the paper's conv LSTM optimizes).

A problem is a fresh initialization plus a fresh stream of minibatches, sampled on device as in
`l2lgd.tasks.mlp`; the loss is the mean softmax cross-entropy of the minibatch.

Batch norm is pure: it has learned `scale` and `offset` parameters but no running averages and
no mutable collection, so the loss is an ordinary function of the parameters that `grad`, `vmap`
and `lax.scan` take as they are.
  * Training (`loss`): each layer normalizes with the current minibatch's mean and (biased)
    variance, over the batch and spatial axes, as the original code did (training mode).
  * Test (`test_metrics`): each layer normalizes with fixed statistics of the trained network on
    a fixed, evenly spaced sample of `statistics_size` training images (the usual inference
    mode, with exact statistics in place of running averages), so a test image's prediction
    does not depend on the others and the test split can be scored in chunks of any size.

Warning:
  Unlike the original code (Sonnet's BatchNorm: offset only, no scale), batch norm here also
  learns a scale. The biases of the conv and fully connected layers are kept for the same
  parameter layout as the original, but a bias followed by batch norm in training mode cannot
  change the output: its gradient is zero.

References:
  Andrychowicz et al., 2016, "Learning to learn by gradient descent by gradient descent";
  Ioffe and Szegedy, 2015, "Batch Normalization".
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from l2lgd.errors import DataError

if TYPE_CHECKING:
    from l2lgd.data import ImageDataset

BN_EPSILON = 1e-3
"""Added to the variance before the square root: Sonnet's default, which the original used."""


class BatchStatistics(NamedTuple):
    """The per-channel mean and (biased) variance that one batch-norm layer normalizes with."""

    mean: jax.Array
    variance: jax.Array


def batch_statistics(inputs: jax.Array) -> BatchStatistics:
    """Mean and biased variance over every axis but the last (batch and, for conv, space)."""
    axes = tuple(range(inputs.ndim - 1))
    return BatchStatistics(inputs.mean(axes), inputs.var(axes))


def normalize(
    inputs: jax.Array,
    statistics: BatchStatistics,
    scale: jax.Array,
    offset: jax.Array,
    epsilon: float = BN_EPSILON,
) -> jax.Array:
    """(inputs - mean) / sqrt(variance + epsilon) * scale + offset, per channel (last axis)."""
    inverse_std = jax.lax.rsqrt(statistics.variance + epsilon)
    return (inputs - statistics.mean) * (inverse_std * scale) + offset


class BatchNorm(nn.Module):
    """Batch norm without state: batch statistics, or fixed ones when the caller gives them.

    Returns the normalized inputs and the statistics it used, so that one pass in training mode
    yields the statistics that inference mode is then given (see `CNN`).
    """

    epsilon: float = BN_EPSILON

    @nn.compact
    def __call__(
        self, inputs: jax.Array, statistics: BatchStatistics | None = None
    ) -> tuple[jax.Array, BatchStatistics]:
        features = inputs.shape[-1]
        scale = self.param("scale", nn.initializers.ones, (features,))
        offset = self.param("offset", nn.initializers.zeros, (features,))
        if statistics is None:
            statistics = batch_statistics(inputs)
        return normalize(inputs, statistics, scale, offset, self.epsilon), statistics


NetworkStatistics = dict[str, BatchStatistics]
"""The statistics of every batch-norm layer of a `CNN`, by layer name."""


class MatmulConv(nn.Module):
    """A stride-1 "SAME" convolution written as one matmul over image patches (im2col).

    Same parameters as `nn.Conv` (`kernel` (kh, kw, in, out), `bias`) and the same result, but
    fast inside `lax.scan`, where every rollout runs the model: there XLA:CPU's convolutions and
    their gradients fall off the fast path (jax-ml/jax#12868) while matmuls do not. On the CIFAR
    CNN it is 10x faster than `nn.Conv` in a scan and 2.4x slower outside one
    (scripts/bench_conv.py). It also keeps a vmap over problems, whose kernels differ, a batched
    matmul instead of a grouped convolution.
    """

    features: int
    kernel_size: tuple[int, int]
    param_init: nn.initializers.Initializer = nn.initializers.lecun_normal()  # kernel and bias

    @nn.compact
    def __call__(self, inputs: jax.Array) -> jax.Array:
        (kh, kw), channels = self.kernel_size, inputs.shape[-1]
        kernel = self.param("kernel", self.param_init, (kh, kw, channels, self.features))
        bias = self.param("bias", self.param_init, (self.features,))
        return image_patches(inputs, kh, kw) @ kernel.reshape(-1, self.features) + bias


def image_patches(images: jax.Array, kh: int, kw: int) -> jax.Array:
    """(batch, H, W, C) -> (batch, H, W, kh * kw * C): each pixel's zero-padded kh x kw
    neighbourhood, ordered as a flattened (kh, kw, C) kernel."""
    height, width = images.shape[1], images.shape[2]
    top, left = (kh - 1) // 2, (kw - 1) // 2
    padded = jnp.pad(images, ((0, 0), (top, kh - 1 - top), (left, kw - 1 - left), (0, 0)))
    shifted = [padded[:, i : i + height, j : j + width, :] for i in range(kh) for j in range(kw)]
    return jnp.concatenate(shifted, axis=-1)


def max_pool_2x2(images: jax.Array) -> jax.Array:
    """2x2 max-pooling with stride 2 and "SAME" padding, as `nn.max_pool`, by a reshape and a max.

    `nn.max_pool`'s gradient is a select-and-scatter, which XLA:CPU runs far slower than the
    elementwise gradient of a plain max: this made meta-training on CIFAR about 1.3x faster
    (scripts/profile_meta.py). Ties split the gradient instead of giving it to one element;
    after a ReLU the only ties are zeros, whose gradient the ReLU stops anyway.
    """
    batch, height, width, channels = images.shape
    padded = jnp.pad(
        images,
        ((0, 0), (0, height % 2), (0, width % 2), (0, 0)),
        constant_values=-jnp.inf,
    )
    blocks = padded.reshape(batch, (height + 1) // 2, 2, (width + 1) // 2, 2, channels)
    return blocks.max(axis=(2, 4))


class CNN(nn.Module):
    """Conv -> batch norm -> ReLU -> max-pool layers, then dense -> batch norm -> ReLU, then logits.

    Layers are named `conv_{i}`, `bn_conv_{i}`, `fc`, `bn_fc` and `logits`. Kernels and biases
    start ~ N(0, init_std^2), as in the original code; batch norm starts as the identity
    (scale 1, offset 0). With init_std 0.01 the logits start near 0 and the loss near
    log(num_classes).
    """

    conv_channels: tuple[int, ...]
    fc_size: int
    num_classes: int
    init_std: float = 0.01

    @nn.compact
    def __call__(
        self, images: jax.Array, statistics: NetworkStatistics | None = None
    ) -> tuple[jax.Array, NetworkStatistics]:
        """Logits of float images (batch, H, W, C), and the batch-norm statistics used.

        Args:
          images: float images in [0, 1], shape (batch, height, width, channels).
          statistics: None to normalize with the batch's own statistics (training mode), or
            fixed statistics for every batch-norm layer (inference mode).
        """
        init = nn.initializers.normal(self.init_std)
        used: NetworkStatistics = {}

        def batch_norm(hidden: jax.Array, name: str) -> jax.Array:
            given = None if statistics is None else statistics[name]
            hidden, used[name] = BatchNorm(name=name)(hidden, given)
            return hidden

        hidden = images
        for layer, channels in enumerate(self.conv_channels):
            conv = MatmulConv(channels, (5, 5), init, name=f"conv_{layer}")
            hidden = jax.nn.relu(batch_norm(conv(hidden), f"bn_conv_{layer}"))
            hidden = max_pool_2x2(hidden)
        hidden = hidden.reshape(hidden.shape[0], -1)
        hidden = nn.Dense(self.fc_size, kernel_init=init, bias_init=init, name="fc")(hidden)
        hidden = jax.nn.relu(batch_norm(hidden, "bn_fc"))
        logits = nn.Dense(self.num_classes, kernel_init=init, bias_init=init, name="logits")
        return logits(hidden), used


@struct.dataclass
class CNNTask:
    """CNN optimizees on an image dataset of NHWC images; a pytree whose leaves are its arrays.

    Attributes:
      dataset: images uint8 (N, H, W, C), e.g. from `l2lgd.data.load_cifar10`.
      conv_channels: output channels of each conv layer.
      fc_size: units of the fully connected layer.
      batch_size: images per training minibatch.
      init_std: standard deviation of the initial kernels and biases.
      statistics_size: training images whose batch-norm statistics `test_metrics` uses (all of
        them if the split is smaller).
      test_chunk_size: test images scored at once by `test_metrics`; bounds its memory.

    Example:
      >>> task = CNNTask(load_cifar10("files", "/data"))
      >>> params = task.init_params(jax.random.key(0), task.sample_problem(jax.random.key(1)))
      >>> loss = task.loss(params, (), jax.random.key(2))
    """

    dataset: ImageDataset
    conv_channels: tuple[int, ...] = struct.field(pytree_node=False, default=(16, 16, 16))
    fc_size: int = struct.field(pytree_node=False, default=32)
    batch_size: int = struct.field(pytree_node=False, default=128)
    init_std: float = struct.field(pytree_node=False, default=0.01)
    statistics_size: int = struct.field(pytree_node=False, default=1024)
    test_chunk_size: int = struct.field(pytree_node=False, default=1000)

    def __post_init__(self) -> None:
        shape = getattr(self.dataset.train_images, "shape", None)  # None: a pytree placeholder
        if shape is not None and len(shape) != 4:
            raise DataError(
                f"CNNTask needs images of shape (N, height, width, channels); "
                f"{self.dataset.name} has {shape}"
            )

    @property
    def model(self) -> CNN:
        return CNN(self.conv_channels, self.fc_size, self.dataset.num_classes, self.init_std)

    def sample_problem(self, key: jax.Array) -> tuple[()]:
        """Problems differ only by their initialization and minibatches: nothing to draw here."""
        del key
        return ()

    def init_params(self, key: jax.Array, problem: tuple[()]) -> Any:
        del problem
        images = jnp.zeros((1, *self.dataset.train_images.shape[1:]), jnp.float32)
        return self.model.init(key, images)["params"]

    def loss(self, params: Any, problem: tuple[()], key: jax.Array) -> jax.Array:
        """Mean cross-entropy on a minibatch drawn with `key` from the training split,
        normalized with the minibatch's own batch-norm statistics."""
        del problem
        images, labels = self._split("train")
        index = jax.random.randint(key, (self.batch_size,), 0, labels.shape[0])
        logits, _ = self.model.apply({"params": params}, pixels_to_floats(images[index]))
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels[index]).mean()

    def _split(self, split: str) -> tuple[jax.Array, jax.Array]:
        """A whole split as arrays (inside `jit`, arguments of the compiled program), so that
        minibatches are gathered on device."""
        images = getattr(self.dataset, f"{split}_images")
        labels = getattr(self.dataset, f"{split}_labels")
        return jnp.asarray(images), jnp.asarray(labels, jnp.int32)

    def inference_statistics(self, params: Any) -> NetworkStatistics:
        """Every batch-norm layer's statistics on a fixed sample of training images.

        One training-mode pass gives them exactly: each layer's statistics are those of its
        inputs when every earlier layer normalizes with its own statistics of the same sample.
        The sample is `statistics_size` evenly spaced images, the same for every call.
        """
        images = self.dataset.train_images
        count = images.shape[0]
        index = np.linspace(0, count - 1, min(self.statistics_size, count))
        sample = jnp.asarray(images)[np.round(index).astype(np.int64)]
        _, statistics = self.model.apply({"params": params}, pixels_to_floats(sample))
        return statistics

    def test_metrics(self, params: Any) -> dict[str, jax.Array]:
        """Loss and accuracy of one trained optimizee on the whole test split, in inference mode.

        The split is scored `test_chunk_size` images at a time (`lax.map`); the last chunk is
        padded with images that are masked out of the means.
        """
        statistics = self.inference_statistics(params)
        images, labels, valid = _padded_chunks(
            self.dataset.test_images, self.dataset.test_labels, self.test_chunk_size
        )

        def chunk_sums(chunk: tuple[jax.Array, ...]) -> tuple[jax.Array, jax.Array]:
            chunk_images, chunk_labels, chunk_valid = chunk
            logits, _ = self.model.apply(
                {"params": params}, pixels_to_floats(chunk_images), statistics
            )
            losses = optax.softmax_cross_entropy_with_integer_labels(logits, chunk_labels)
            correct = jnp.argmax(logits, axis=-1) == chunk_labels
            return jnp.sum(losses * chunk_valid), jnp.sum(correct * chunk_valid)

        loss_sums, correct_sums = jax.lax.map(chunk_sums, (images, labels, valid))
        count = self.dataset.test_labels.shape[0]
        return {"test_loss": loss_sums.sum() / count, "test_accuracy": correct_sums.sum() / count}


def pixels_to_floats(images: jax.Array) -> jax.Array:
    """uint8 images -> float32 images in [0, 1], same shape."""
    return images.astype(jnp.float32) / 255.0


def _padded_chunks(
    images: jax.Array, labels: jax.Array, chunk_size: int
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Images, labels and a 0/1 validity mask, zero-padded and cut into chunks of `chunk_size`."""
    count = labels.shape[0]
    size = min(chunk_size, count)
    num_chunks = math.ceil(count / size)
    padding = num_chunks * size - count
    valid = np.concatenate([np.ones(count, np.float32), np.zeros(padding, np.float32)])
    images = jnp.concatenate([images, jnp.zeros((padding, *images.shape[1:]), images.dtype)])
    labels = jnp.concatenate([labels, jnp.zeros(padding, labels.dtype)]).astype(jnp.int32)
    return (
        jnp.asarray(images.reshape(num_chunks, size, *images.shape[1:])),
        jnp.asarray(labels.reshape(num_chunks, size)),
        jnp.asarray(valid.reshape(num_chunks, size)),
    )
