"""Data sets as checked numpy arrays: from their own distribution files, or from tfds."""

from l2lgd.data.cifar import load_cifar10, subset_classes
from l2lgd.data.dataset import DATA_DIR_ENV, ImageDataset, resolve_data_dir
from l2lgd.data.mnist import load_mnist

__all__ = [
    "DATA_DIR_ENV",
    "ImageDataset",
    "load_cifar10",
    "load_mnist",
    "resolve_data_dir",
    "subset_classes",
]
