"""An MLP classifier trained on minibatches of an image dataset: the paper's MNIST experiment (3.2).

A problem is a fresh initialization plus a fresh stream of minibatches; the minibatch of each
step is sampled on device from the whole training split (uniformly, with replacement), so no
Python runs per step. The loss is the mean softmax cross-entropy of the minibatch.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax import struct

if TYPE_CHECKING:
    from l2lgd.data import ImageDataset

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "sigmoid": jax.nn.sigmoid,
    "relu": jax.nn.relu,
    "tanh": jnp.tanh,
}


class MLP(nn.Module):
    """Fully connected layers with the given activation, then a linear layer to the logits.

    `init_scheme` (not `init`, which would hide `nn.Module.init`): "normal", weights and biases
    ~ N(0, init_std^2), as in the original code; "flax", flax's `nn.Dense` defaults (LeCun-normal
    kernels, zero biases), what a user's own flax model starts from (beyond the paper).
    """

    hidden_sizes: tuple[int, ...]
    num_classes: int
    activation: str = "sigmoid"
    init_std: float = 0.01
    init_scheme: str = "normal"

    @nn.compact
    def __call__(self, inputs: jax.Array) -> jax.Array:
        dense = self._dense_layer()
        hidden = inputs
        for size in self.hidden_sizes:
            hidden = ACTIVATIONS[self.activation](dense(size)(hidden))
        return dense(self.num_classes)(hidden)

    def _dense_layer(self) -> Callable[[int], nn.Dense]:
        """features -> a dense layer initialized as `init_scheme` says."""
        if self.init_scheme == "flax":
            return nn.Dense
        normal = nn.initializers.normal(self.init_std)
        return functools.partial(nn.Dense, kernel_init=normal, bias_init=normal)


@struct.dataclass
class MLPTask:
    """MLP optimizees on an image dataset; a pytree whose leaves are the dataset's arrays."""

    dataset: ImageDataset
    hidden_sizes: tuple[int, ...] = struct.field(pytree_node=False, default=(20,))
    activation: str = struct.field(pytree_node=False, default="sigmoid")
    batch_size: int = struct.field(pytree_node=False, default=128)
    init_std: float = struct.field(pytree_node=False, default=0.01)
    init_scheme: str = struct.field(pytree_node=False, default="normal")

    @property
    def model(self) -> MLP:
        return MLP(
            self.hidden_sizes,
            self.dataset.num_classes,
            self.activation,
            self.init_std,
            self.init_scheme,
        )

    def sample_problem(self, key: jax.Array) -> tuple[()]:
        """Problems differ only by their initialization and minibatches: nothing to draw here."""
        del key
        return ()

    def init_params(self, key: jax.Array, problem: tuple[()]) -> Any:
        del problem
        num_inputs = _flat_size(self.dataset.train_images)
        return self.model.init(key, jnp.zeros((1, num_inputs), jnp.float32))["params"]

    def loss(self, params: Any, problem: tuple[()], key: jax.Array) -> jax.Array:
        """Mean cross-entropy on a minibatch drawn with `key` from the training split."""
        del problem
        images, labels = self._split("train")
        index = jax.random.randint(key, (self.batch_size,), 0, labels.shape[0])
        return self.cross_entropy(params, images[index], labels[index])

    def cross_entropy(self, params: Any, images: jax.Array, labels: jax.Array) -> jax.Array:
        logits = self.model.apply({"params": params}, pixels_to_inputs(images))
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

    def _split(self, split: str) -> tuple[jax.Array, jax.Array]:
        """A whole split as arrays (inside `jit`, arguments of the compiled program), so that
        minibatches are gathered on device."""
        images = getattr(self.dataset, f"{split}_images")
        labels = getattr(self.dataset, f"{split}_labels")
        return jnp.asarray(images), jnp.asarray(labels, jnp.int32)

    def test_metrics(self, params: Any) -> dict[str, jax.Array]:
        """Loss and accuracy of one trained optimizee on the whole test split."""
        images, labels = self._split("test")
        logits = self.model.apply({"params": params}, pixels_to_inputs(images))
        return {
            "test_loss": optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean(),
            "test_accuracy": jnp.mean(jnp.argmax(logits, axis=-1) == labels),
        }


def pixels_to_inputs(images: jax.Array) -> jax.Array:
    """uint8 images (batch, ...) -> float32 vectors in [0, 1]."""
    return images.reshape(images.shape[0], -1).astype(jnp.float32) / 255.0


def _flat_size(images: Any) -> int:
    return int(math.prod(images.shape[1:]))
