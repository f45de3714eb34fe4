"""Converts standard VGG-19 weights into the `.npz` that the Neural Art task loads.

Two sources (neither library is a dependency of l2lgd; each is imported only when needed):

  * torchvision's ImageNet VGG-19, a state_dict saved with torch (`pip install torch`):
        https://download.pytorch.org/models/vgg19-dcbb9e9d.pth
    (what `torchvision.models.vgg19(weights="IMAGENET1K_V1")` downloads). Keys
    `features.{0,2,5,...,34}.weight` (out, in, 3, 3) and `.bias`; the network expects RGB in
    [0, 1] normalized by mean (0.485, 0.456, 0.406) and std (0.229, 0.224, 0.225), stored here as
    `input_mean` / `input_std` on the 0-255 scale.
  * Keras's VGG-19 without the classifier, an HDF5 file (`pip install h5py`):
        https://storage.googleapis.com/tensorflow/keras-applications/vgg19/vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5
    Groups `block{B}_conv{I}` holding a (3, 3, in, out) kernel and an (out,) bias. These are the
    original Caffe weights, which expect BGR pixels in [0, 255] minus the ImageNet mean: the
    first kernel's input channels are reversed so that it takes RGB, with the Caffe mean.

    python scripts/convert_vgg19.py vgg19-dcbb9e9d.pth vgg19.npz
    python scripts/convert_vgg19.py vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5 vgg19.npz
    l2l meta-train --task style --config configs/style.yaml --set task.vgg_weights=vgg19.npz

The output holds `convB_I/kernel` (3, 3, in, out), `convB_I/bias` (out,), `input_mean` and
`input_std` (3,) for all 16 convolutions; `l2lgd.tasks.vgg.load_vgg_weights` checks every shape.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from l2lgd.tasks.vgg import CAFFE_RGB_MEAN, conv_shapes

TORCHVISION_CONV_INDICES = (0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34)
"""Positions of the 16 convolutions in torchvision's `vgg19().features` (ReLUs and pools between)."""

TORCHVISION_MEAN = (0.485, 0.456, 0.406)
TORCHVISION_STD = (0.229, 0.224, 0.225)


def conv_names() -> list[str]:
    """conv1_1, conv1_2, conv2_1, ..., conv5_4: the 16 convolutions in network order."""
    return list(conv_shapes())


def from_torchvision(state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Our arrays from a torchvision VGG-19 state_dict (values as numpy arrays)."""
    arrays = {}
    for name, index in zip(conv_names(), TORCHVISION_CONV_INDICES, strict=True):
        weight = np.asarray(state[f"features.{index}.weight"], np.float32)
        arrays[f"{name}/kernel"] = weight.transpose(2, 3, 1, 0)  # OIHW -> HWIO
        arrays[f"{name}/bias"] = np.asarray(state[f"features.{index}.bias"], np.float32)
    arrays["input_mean"] = 255.0 * np.asarray(TORCHVISION_MEAN, np.float32)
    arrays["input_std"] = 255.0 * np.asarray(TORCHVISION_STD, np.float32)
    return arrays


def from_keras(layers: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, np.ndarray]:
    """Our arrays from Keras's VGG-19 layers {"block1_conv1": (kernel HWIO, bias), ...} (BGR)."""
    arrays = {}
    for name in conv_names():
        block, index = name.removeprefix("conv").split("_")
        kernel, bias = layers[f"block{block}_conv{index}"]
        kernel = np.asarray(kernel, np.float32)
        if name == "conv1_1":
            kernel = kernel[:, :, ::-1, :]  # BGR input channels -> RGB
        arrays[f"{name}/kernel"] = np.ascontiguousarray(kernel)
        arrays[f"{name}/bias"] = np.asarray(bias, np.float32)
    arrays["input_mean"] = np.asarray(CAFFE_RGB_MEAN, np.float32)
    arrays["input_std"] = np.ones(3, np.float32)
    return arrays


def read_torchvision(path: Path) -> dict[str, np.ndarray]:
    try:
        import torch
    except ImportError:
        sys.exit("reading a .pth file needs PyTorch: pip install torch")
    state = torch.load(path, map_location="cpu", weights_only=True)
    state = state.get("state_dict", state)
    return {key: value.numpy() for key, value in state.items()}


def read_keras(path: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    try:
        import h5py
    except ImportError:
        sys.exit("reading a Keras .h5 file needs h5py: pip install h5py")
    layers = {}
    with h5py.File(path, "r") as file:
        root = file.get("model_weights", file)
        for group_name in root:
            if group_name.startswith("block") and "conv" in group_name:
                layers[group_name] = _kernel_and_bias(root[group_name])
    return layers


def _kernel_and_bias(group) -> tuple[np.ndarray, np.ndarray]:
    """The 4-D and the 1-D dataset under an HDF5 group (Keras nests them differently by version)."""
    datasets: list[np.ndarray] = []
    group.visititems(lambda _, item: datasets.append(item[()]) if hasattr(item, "shape") else None)
    kernel = next(array for array in datasets if array.ndim == 4)
    bias = next(array for array in datasets if array.ndim == 1)
    return kernel, bias


def check_shapes(arrays: dict[str, np.ndarray]) -> None:
    for name, (kernel_shape, bias_shape) in conv_shapes().items():
        for key, shape in ((f"{name}/kernel", kernel_shape), (f"{name}/bias", bias_shape)):
            if arrays[key].shape != shape:
                sys.exit(f"{key} has shape {arrays[key].shape}, expected {shape}: not VGG-19")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", type=Path, help="torchvision .pth or Keras .h5 weights")
    parser.add_argument("output", type=Path, help="the .npz to write")
    args = parser.parse_args()
    if args.source.suffix in (".pth", ".pt"):
        arrays = from_torchvision(read_torchvision(args.source))
    elif args.source.suffix in (".h5", ".hdf5"):
        arrays = from_keras(read_keras(args.source))
    else:
        sys.exit(f"{args.source}: expected a torchvision .pth or a Keras .h5 file")
    check_shapes(arrays)
    np.savez(args.output, **arrays)
    print(f"wrote {args.output}: {len(arrays) - 2} arrays of 16 convolutions, input normalization")


if __name__ == "__main__":
    main()
