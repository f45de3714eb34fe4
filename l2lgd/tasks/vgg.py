"""VGG-19 features for style transfer (the paper's Neural Art task, section 3.4), in flax.

The network is the convolutional part of VGG-19 (Simonyan and Zisserman, 2015): five blocks of
3x3 "SAME" convolutions with ReLU (2, 2, 4, 4, 4 layers of 64, 128, 256, 512, 512 channels), each
block followed by 2x2 pooling. Layers are named as in the style-transfer literature: `conv3_1`
is the first convolution of block 3 (before its ReLU), `relu3_1` the same after the ReLU,
`pool3` the pooling after block 3. `VGG19` computes only up to the deepest layer asked for, which
matters on a CPU: the whole network takes about 7x the multiply-adds of the layers up to
`relu2_1`, and 3.5x those up to `relu3_1`.

Pooling is average pooling by default, as Gatys et al. recommend for image synthesis (smoother
gradients than max-pooling); `pooling="max"` gives the network as it was trained.

Weights file (`load_vgg_weights`): a NumPy `.npz` with, for every convolution up to the deepest
layer used, `convB_I/kernel` of shape (3, 3, in, out) (HWIO, cross-correlation as in flax and
PyTorch) and `convB_I/bias` of shape (out,), float32. Optional `input_mean` and `input_std`,
shape (3,) each, say how the network expects RGB pixels in [0, 255] to be normalized:
`(pixels - input_mean) / input_std`; without them, the Caffe ImageNet mean (RGB) and std 1.
`scripts/convert_vgg19.py` writes such a file from torchvision's `vgg19` weights (.pth) or from
Keras's `vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5`. Without a file, `random_vgg_weights`
gives fixed-seed He-initialized weights, so the whole pipeline runs offline; results made with
them are labelled `RANDOM_WEIGHTS_LABEL`.

References:
  Simonyan and Zisserman, 2015, "Very Deep Convolutional Networks for Large-Scale Image
  Recognition"; Gatys, Ecker and Bethge, 2016, "Image Style Transfer Using Convolutional Neural
  Networks"; Andrychowicz et al., 2016, section 3.4.
"""

from __future__ import annotations

import zipfile
from dataclasses import field
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from l2lgd.errors import ConfigError, DataError
from l2lgd.tasks.cnn import MatmulConv, max_pool_2x2

VGG19_BLOCK_DEPTHS = (2, 2, 4, 4, 4)
"""Convolutions per block."""

VGG19_WIDTHS = (64, 128, 256, 512, 512)
"""Output channels of every convolution of each block."""

CAFFE_RGB_MEAN = (123.68, 116.779, 103.939)
"""The ImageNet mean pixel (RGB, 0-255) that the original Caffe VGG weights subtract."""

RANDOM_WEIGHTS_LABEL = "random VGG-19 weights (no weights file)"


def vgg19_layer_names() -> tuple[str, ...]:
    """Every named layer in network order: conv1_1, relu1_1, conv1_2, relu1_2, pool1, ..."""
    names = []
    for block, depth in enumerate(VGG19_BLOCK_DEPTHS, start=1):
        for index in range(1, depth + 1):
            names += [f"conv{block}_{index}", f"relu{block}_{index}"]
        names.append(f"pool{block}")
    return tuple(names)


def check_layer_names(layers: tuple[str, ...], what: str) -> None:
    """Raises `ConfigError` naming `what` (a config field) if a layer is not a VGG-19 layer."""
    valid = vgg19_layer_names()
    unknown = [layer for layer in layers if layer not in valid]
    if not layers:
        raise ConfigError(f"{what} must name at least one VGG-19 layer")
    if unknown:
        raise ConfigError(
            f"{what}: unknown VGG-19 layer(s) {', '.join(unknown)}; valid: conv1_1, relu1_1, "
            "..., pool1, ..., relu5_4, pool5"
        )


def layers_needed(layers: tuple[str, ...]) -> tuple[str, ...]:
    """Every layer `VGG19` computes to reach all of `layers`: network order up to the deepest."""
    order = vgg19_layer_names()
    deepest = max(order.index(layer) for layer in layers)
    return order[: deepest + 1]


def convolutions_needed(layers: tuple[str, ...]) -> tuple[str, ...]:
    """The convolutions `VGG19` runs to reach every layer in `layers` (network order)."""
    return tuple(name for name in layers_needed(layers) if name.startswith("conv"))


def conv_shapes(widths: tuple[int, ...] = VGG19_WIDTHS) -> dict[str, tuple[tuple[int, ...], ...]]:
    """(kernel shape, bias shape) of every convolution, for RGB input and the given widths."""
    shapes, channels = {}, 3
    for block, (depth, width) in enumerate(zip(VGG19_BLOCK_DEPTHS, widths, strict=True), start=1):
        for index in range(1, depth + 1):
            shapes[f"conv{block}_{index}"] = ((3, 3, channels, width), (width,))
            channels = width
    return shapes


def avg_pool_2x2(images: jax.Array) -> jax.Array:
    """2x2 average pooling with stride 2 by a reshape and a mean (odd sizes drop the last row or
    column, as VALID pooling does)."""
    batch, height, width, channels = images.shape
    images = images[:, : height // 2 * 2, : width // 2 * 2]
    blocks = images.reshape(batch, height // 2, 2, width // 2, 2, channels)
    return blocks.mean(axis=(2, 4))


class VGG19(nn.Module):
    """The activations of the named `outputs` layers of VGG-19, for normalized images.

    Attributes:
      outputs: layer names (see `vgg19_layer_names`); the network stops at the deepest.
      widths: channels of each block; (64, 128, 256, 512, 512) is VGG-19, smaller ones are for
        tests.
      pooling: "avg" or "max".

    The convolutions are `MatmulConv` (one matmul over image patches), parameters named
    `convB_I/kernel` and `convB_I/bias`, as in the weights file. The weights always come from a
    file or `random_vgg_weights`; the zeros initializer only gives flax their shapes.
    """

    outputs: tuple[str, ...]
    widths: tuple[int, ...] = VGG19_WIDTHS
    pooling: str = "avg"

    @nn.compact
    def __call__(self, images: jax.Array) -> dict[str, jax.Array]:
        """Features of `images` (batch, H, W, 3), already normalized (see `normalize_pixels`)."""
        shapes = conv_shapes(self.widths)
        pool = avg_pool_2x2 if self.pooling == "avg" else max_pool_2x2
        found, hidden = {}, images
        for name in layers_needed(self.outputs):
            if name.startswith("conv"):
                (_, _, _, width), _ = shapes[name]
                hidden = MatmulConv(width, (3, 3), nn.initializers.zeros, name=name)(hidden)
            elif name.startswith("relu"):
                hidden = jax.nn.relu(hidden)
            else:
                hidden = pool(hidden)
            found[name] = hidden
        return {name: found[name] for name in self.outputs}


@struct.dataclass
class VGGWeights:
    """VGG-19 convolution weights and the input normalization they expect.

    A pytree: the arrays are its leaves, `source` and `widths` static, so that a task holding it
    is an ordinary argument of compiled programs.

    Attributes:
      params: {"convB_I": {"kernel": (3, 3, in, out), "bias": (out,)}} for the convolutions kept.
      input_mean: (3,) RGB mean subtracted from pixels in [0, 255].
      input_std: (3,) RGB divisor after the subtraction.
      source: what results should say about these weights (a file, or `RANDOM_WEIGHTS_LABEL`).
      widths: the channels of each block (VGG-19's unless made for a test).
    """

    params: dict[str, dict[str, np.ndarray]]
    input_mean: np.ndarray = field(default_factory=lambda: np.asarray(CAFFE_RGB_MEAN, np.float32))
    input_std: np.ndarray = field(default_factory=lambda: np.ones(3, np.float32))
    source: str = struct.field(pytree_node=False, default=RANDOM_WEIGHTS_LABEL)
    widths: tuple[int, ...] = struct.field(pytree_node=False, default=VGG19_WIDTHS)

    def normalize_pixels(self, images: jax.Array) -> jax.Array:
        """RGB images in [0, 1] -> the network's input, (255 * images - mean) / std."""
        return (255.0 * images - jnp.asarray(self.input_mean)) / jnp.asarray(self.input_std)

    def features(
        self, images: jax.Array, layers: tuple[str, ...], pooling: str = "avg"
    ) -> dict[str, jax.Array]:
        """Activations of `layers` for RGB images in [0, 1], shape (batch, H, W, 3)."""
        params = jax.tree.map(jnp.asarray, self.params)
        model = VGG19(outputs=layers, widths=self.widths, pooling=pooling)
        return model.apply({"params": params}, self.normalize_pixels(images))


def random_vgg_weights(
    layers: tuple[str, ...], seed: int = 0, widths: tuple[int, ...] = VGG19_WIDTHS
) -> VGGWeights:
    """Fixed He-initialized weights (kernels ~ N(0, 2 / fan_in), zero biases) for the
    convolutions up to the deepest of `layers`: the offline stand-in for trained VGG-19 weights.

    Random convolutional features still make a usable style loss (Gatys-style Gram matching on
    random networks works, if less well), but the result is not the paper's setting.
    """
    shapes = conv_shapes(widths)
    key = jax.random.key(seed)
    params = {}
    for index, name in enumerate(convolutions_needed(layers)):
        kernel_shape, bias_shape = shapes[name]
        fan_in = kernel_shape[0] * kernel_shape[1] * kernel_shape[2]
        kernel = jax.random.normal(jax.random.fold_in(key, index), kernel_shape) * np.sqrt(
            2.0 / fan_in
        )
        params[name] = {
            "kernel": np.asarray(kernel, np.float32),
            "bias": np.zeros(bias_shape, np.float32),
        }
    return VGGWeights(params, widths=widths)


def load_vgg_weights(
    path: str | Path, layers: tuple[str, ...], widths: tuple[int, ...] = VGG19_WIDTHS
) -> VGGWeights:
    """Reads the convolutions up to the deepest of `layers` from a `.npz` weights file.

    Args:
      path: the file (format in the module docstring).
      layers: the layers that will be used; deeper convolutions in the file are not read.
      widths: the expected channels of each block.

    Raises:
      DataError: a missing or unreadable file, a missing key, or an array of the wrong shape,
        in one line naming the file, the key and the shapes.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(
            f"VGG-19 weights file not found: {path} (make one with scripts/convert_vgg19.py, "
            "or leave task.vgg_weights empty for random weights)"
        )
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile) as error:
        raise DataError(f"VGG-19 weights file {path} is not a readable .npz ({error})") from None
    with archive:
        shapes = conv_shapes(widths)
        params: dict[str, dict[str, np.ndarray]] = {}
        for name in convolutions_needed(layers):
            kernel_shape, bias_shape = shapes[name]
            params[name] = {
                "kernel": _checked_array(archive, path, f"{name}/kernel", kernel_shape),
                "bias": _checked_array(archive, path, f"{name}/bias", bias_shape),
            }
        extras: dict[str, Any] = {}
        for key in ("input_mean", "input_std"):
            if key in archive.files:
                extras[key] = _checked_array(archive, path, key, (3,))
    return VGGWeights(params, source=str(path), widths=widths, **extras)


def _checked_array(archive: Any, path: Path, key: str, shape: tuple[int, ...]) -> np.ndarray:
    if key not in archive.files:
        raise DataError(f"VGG-19 weights file {path} has no array {key!r} (expected shape {shape})")
    array = archive[key]
    if array.shape != shape:
        raise DataError(
            f"VGG-19 weights file {path}: {key!r} has shape {array.shape}, expected {shape}"
        )
    if not np.issubdtype(array.dtype, np.floating):
        raise DataError(f"VGG-19 weights file {path}: {key!r} has dtype {array.dtype}, not float")
    return np.asarray(array, np.float32)
