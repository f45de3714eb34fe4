"""Style transfer as an optimizee: the paper's Neural Art task (section 3.4).

The parameters are the pixels of one RGB image, (size, size, 3) floats in [0, 1] at the start;
the problem is a content image drawn from a pool; the image starts at the content image; the
loss (Gatys et al., 2016) is

  f(x) = content_weight * content(x) + style_weight * style(x) + tv_weight * tv(x),

on the features of a fixed VGG-19 (`l2lgd.tasks.vgg`):
  content(x) = mean over content layers of  mean((F(x) - F(c))^2) / mean(F(c)^2),
  style(x)   = mean over style layers of  sum((G(x) - G(s))^2) / sum(G(s)^2),
  tv(x)      = mean squared difference of vertically and of horizontally adjacent pixels,
where c is the content image, s the style image and G the Gram matrix of a layer's features.

Warning:
  The paper does not give its weights or normalization. Here each term is relative (content
  and style are 1 when the features or Grams are as far from their targets as zero is), so each
  term starts O(1) at any image size and with any VGG weights: the learned optimizer sees the
  same scale at 64x64 and at 128x128 without output scaling. The content term is 0 at the start.

References:
  Gatys, Ecker and Bethge, 2016, "Image Style Transfer Using Convolutional Neural Networks";
  Andrychowicz et al., 2016, section 3.4.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from l2lgd.config import VGG_POOLINGS
from l2lgd.errors import ConfigError
from l2lgd.tasks.vgg import VGGWeights, check_layer_names

EPSILON = 1e-8
"""Keeps the relative terms finite where a target is all zeros (e.g. a dead ReLU layer)."""


def gram_matrix(features: jax.Array) -> jax.Array:
    """(..., H, W, C) features -> (..., C, C) Gram matrices F^T F / (H W), F = (H W, C)."""
    *batch, height, width, channels = features.shape
    flat = features.reshape(*batch, height * width, channels)
    return jnp.einsum("...pc,...pd->...cd", flat, flat) / (height * width)


def total_variation(image: jax.Array) -> jax.Array:
    """Mean squared difference of vertically adjacent pixels plus that of horizontally adjacent
    ones, for one image (H, W, C) (or a batch, (..., H, W, C), averaged over it)."""
    vertical = image[..., 1:, :, :] - image[..., :-1, :, :]
    horizontal = image[..., :, 1:, :] - image[..., :, :-1, :]
    return jnp.mean(vertical**2) + jnp.mean(horizontal**2)


def content_loss(features: dict[str, jax.Array], targets: dict[str, jax.Array]) -> jax.Array:
    """Mean over layers of the relative squared feature error (0: the content image's features)."""
    terms = [
        jnp.mean((features[name] - target) ** 2) / (jnp.mean(target**2) + EPSILON)
        for name, target in targets.items()
    ]
    return jnp.mean(jnp.stack(terms))


def style_loss(features: dict[str, jax.Array], target_grams: dict[str, jax.Array]) -> jax.Array:
    """Mean over layers of the relative squared Gram-matrix error (0: the style's Grams)."""
    terms = [
        jnp.sum((gram_matrix(features[name]) - target) ** 2) / (jnp.sum(target**2) + EPSILON)
        for name, target in target_grams.items()
    ]
    return jnp.mean(jnp.stack(terms))


class StyleProblem(NamedTuple):
    """One content image and its features at the content layers (computed once per problem)."""

    content_image: jax.Array
    content_features: dict[str, jax.Array]


@struct.dataclass
class StyleTarget:
    """The style image (uint8 (S, S, 3)) and its Gram matrix at each style layer, computed once;
    a pytree of these arrays."""

    image: np.ndarray
    grams: dict[str, np.ndarray]


@struct.dataclass
class ContentPool:
    """The content images problems are drawn from: uint8 (N, S, S, 3); a pytree of them."""

    images: np.ndarray


@struct.dataclass
class StyleTransferTask:
    """Neural Art optimizees: the image is the parameter vector (size * size * 3 coordinates).

    Build it with `StyleTransferTask.create`, which computes the style's Gram matrices.

    Attributes:
      content: the pool of content images; a problem is one of them, uniformly at random.
      style: the style image and its Grams.
      vgg: the feature network's weights (`VGGWeights.source` says which).
      content_layers, style_layers: VGG-19 layer names (e.g. "relu2_2", "relu1_1").
      content_weight, style_weight, tv_weight: the weights of the three terms.
      pooling: "avg" or "max" pooling in VGG-19.

    Example:
      >>> task = StyleTransferTask.create(content, style_image, random_vgg_weights(("relu2_1",)))
      >>> problem = task.sample_problem(jax.random.key(0))
      >>> image = task.init_params(jax.random.key(1), problem)  # the content image
      >>> loss = task.loss(image, problem, jax.random.key(2))   # style and TV terms only
    """

    content: ContentPool
    style: StyleTarget
    vgg: VGGWeights
    content_layers: tuple[str, ...] = struct.field(pytree_node=False, default=("relu2_2",))
    style_layers: tuple[str, ...] = struct.field(pytree_node=False, default=("relu1_1", "relu2_1"))
    content_weight: float = struct.field(pytree_node=False, default=1.0)
    style_weight: float = struct.field(pytree_node=False, default=1.0)
    tv_weight: float = struct.field(pytree_node=False, default=1.0)
    pooling: str = struct.field(pytree_node=False, default="avg")

    @classmethod
    def create(
        cls,
        content: ContentPool,
        style_image: np.ndarray,
        vgg: VGGWeights,
        **settings: object,
    ) -> StyleTransferTask:
        """A task whose style target is `style_image` (uint8 (S, S, 3), the content size)."""
        style_layers = settings.get("style_layers", cls.style_layers)
        check_layer_names(settings.get("content_layers", cls.content_layers), "content layers")
        check_layer_names(style_layers, "style layers")
        pooling = settings.get("pooling", cls.pooling)
        if pooling not in VGG_POOLINGS:
            raise ConfigError(f"pooling must be one of {', '.join(VGG_POOLINGS)}")
        pixels = jnp.asarray(style_image, jnp.float32)[None] / 255.0
        features = vgg.features(pixels, style_layers, pooling)
        grams = {name: np.asarray(gram_matrix(value[0])) for name, value in features.items()}
        style = StyleTarget(np.asarray(style_image), grams)
        return cls(content, style, vgg, **settings)

    def features(self, image: jax.Array, layers: tuple[str, ...]) -> dict[str, jax.Array]:
        """VGG features of one image (H, W, 3), without a batch axis."""
        batched = self.vgg.features(image[None], layers, self.pooling)
        return {name: value[0] for name, value in batched.items()}

    def sample_problem(self, key: jax.Array) -> StyleProblem:
        """A content image drawn uniformly from the pool, with its content features."""
        images = jnp.asarray(self.content.images)
        index = jax.random.randint(key, (), 0, images.shape[0])
        image = images[index].astype(jnp.float32) / 255.0
        return StyleProblem(image, self.features(image, self.content_layers))

    def init_params(self, key: jax.Array, problem: StyleProblem) -> jax.Array:
        """The image starts at the content image (deterministic: `key` is unused)."""
        del key
        return problem.content_image

    def loss_terms(self, image: jax.Array, problem: StyleProblem) -> dict[str, jax.Array]:
        """The unweighted content, style and total-variation terms of `image`."""
        layers = tuple(dict.fromkeys(self.content_layers + self.style_layers))
        features = self.features(image, layers)
        # In the style layers' order: a pytree's dicts come back with sorted keys.
        grams = {name: jnp.asarray(self.style.grams[name]) for name in self.style_layers}
        return {
            "content": content_loss(features, problem.content_features),
            "style": style_loss(features, grams),
            "tv": total_variation(image),
        }

    def loss(self, params: jax.Array, problem: StyleProblem, key: jax.Array) -> jax.Array:
        """The weighted sum of the three terms (deterministic: `key` is unused)."""
        del key
        terms = self.loss_terms(params, problem)
        return (
            self.content_weight * terms["content"]
            + self.style_weight * terms["style"]
            + self.tv_weight * terms["tv"]
        )
