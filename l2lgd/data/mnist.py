"""MNIST from its four IDX files in a data folder, or from tensorflow-datasets."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from l2lgd.data.dataset import (
    DATA_DIR_ENV,
    ImageDataset,
    check_split,
    checked_dataset,
    pack_splits,
    resolve_data_dir,
)
from l2lgd.data.idx import read_idx
from l2lgd.data.tfds_source import load_tfds_splits
from l2lgd.errors import DataError

SOURCES = ("files", "tfds")
IMAGE_SHAPE = (28, 28)
NUM_CLASSES = 10
# (images, labels) file names per split, as distributed by Y. LeCun; each may also end in .gz.
FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def load_mnist(
    source: str = "files", data_dir: str | Path | None = None, download: bool = False
) -> ImageDataset:
    """Loads MNIST's 60,000 training and 10,000 test images, checked, into memory.

    Args:
        source: "files" reads the four IDX files (gzipped or not) from `data_dir/mnist/` or
            `data_dir/`; "tfds" loads them through tensorflow-datasets (`pip install
            'l2lgd[tfds]'`).
        data_dir: for "files", the data folder (default $L2LGD_DATA_DIR); for "tfds", tfds's
            folder of prepared data sets (default: tfds's own).
        download: for "tfds" only: whether tfds may download MNIST when it is not prepared.

    Returns:
        MNIST with images uint8 (N, 28, 28) and labels int32 (N,).

    Raises:
        DataError: an unknown source, missing or malformed files, or tfds unavailable.
    """
    if source == "files":
        if download:
            raise DataError(
                "download=True needs source 'tfds'; source 'files' only reads local IDX files"
            )
        return _load_mnist_files(resolve_data_dir(data_dir))
    if source == "tfds":
        return _load_mnist_tfds(data_dir, download)
    raise DataError(f"unknown MNIST source {source!r}; valid sources: {', '.join(SOURCES)}")


def _load_mnist_files(data_dir: Path) -> ImageDataset:
    """Reads and checks the four IDX files, all from one folder."""
    folder = _mnist_folder(data_dir)
    splits = {}
    for split, (images_name, labels_name) in FILES.items():
        images_path = _find_file(folder, images_name)
        labels_path = _find_file(folder, labels_name)
        images, labels = read_idx(images_path), read_idx(labels_path)
        check_split(
            images,
            labels,
            image_shape=IMAGE_SHAPE,
            num_classes=NUM_CLASSES,
            images_origin=str(images_path),
            labels_origin=str(labels_path),
        )
        splits[split] = (images, labels.astype(np.int32))
    return pack_splits("mnist", splits, NUM_CLASSES)


def _mnist_folder(data_dir: Path) -> Path:
    """`data_dir/mnist` if it holds any MNIST file, else `data_dir` itself."""
    nested = data_dir / "mnist"
    names = [name for pair in FILES.values() for name in pair]
    if any((nested / n).is_file() or (nested / f"{n}.gz").is_file() for n in names):
        return nested
    return data_dir


def _find_file(folder: Path, name: str) -> Path:
    """The uncompressed file if present, else the gzipped one."""
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    raise DataError(
        f"MNIST file {name}[.gz] not found in {folder}: put the four MNIST IDX files in DIR or "
        f"DIR/mnist and pass --data-dir DIR or set {DATA_DIR_ENV}=DIR"
    )


def _load_mnist_tfds(data_dir: str | Path | None, download: bool) -> ImageDataset:
    """Loads both splits through tfds and converts them to the files' layout."""
    train, test = load_tfds_splits("mnist", ("train", "test"), data_dir, download)
    splits = {}
    for split, features in (("train", train), ("test", test)):
        images = features["image"]
        if images.ndim != 4 or images.shape[-1] != 1:
            raise DataError(
                f"tfds mnist {split} split: images of shape {images.shape}, expected (N, 28, 28, 1)"
            )
        # tfds keeps a channel axis of 1; the IDX files have none
        splits[split] = (images[..., 0], features["label"])
    return checked_dataset("mnist", splits, IMAGE_SHAPE, NUM_CLASSES, "tfds mnist {split} split")
