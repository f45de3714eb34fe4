"""An image classification data set held in memory, and where its files are found."""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import jax
import numpy as np

from l2lgd.errors import DataError

DATA_DIR_ENV = "L2LGD_DATA_DIR"


@partial(
    jax.tree_util.register_dataclass,
    data_fields=["train_images", "train_labels", "test_images", "test_labels"],
    meta_fields=["name", "num_classes"],
)
@dataclass(frozen=True, eq=False)
class ImageDataset:
    """Train and test splits of an image classification data set, as numpy arrays when loaded.

    A pytree (the four arrays are its leaves), so that a task holding it is an ordinary
    argument of compiled programs (`l2lgd.tasks.make_task` puts them on the device).

    The loaders guarantee: images are uint8 of shape (N, H, W) or (N, H, W, C), labels are int32
    of shape (N,) with values in [0, num_classes), each split holds as many labels as images, and
    the arrays are read-only, so that one user of a shared data set cannot change it for others.
    `eq=False` because comparing arrays with `==` is elementwise, not a yes or no.
    """

    name: str
    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    num_classes: int


def resolve_data_dir(data_dir: str | Path | None) -> Path:
    """Returns the folder that holds the data sets: `data_dir` if given, else $L2LGD_DATA_DIR.

    An empty string counts as not given, as in a config whose `data_dir` is left blank.

    Raises:
        DataError: neither is set, or the folder does not exist.
    """
    if data_dir:
        origin, path = "--data-dir", Path(data_dir).expanduser()
    elif os.environ.get(DATA_DIR_ENV):
        origin, path = f"${DATA_DIR_ENV}", Path(os.environ[DATA_DIR_ENV]).expanduser()
    else:
        raise DataError(
            f"no data folder given: pass --data-dir DIR or set {DATA_DIR_ENV}=DIR "
            "(a folder holding the data set's own files)"
        )
    if not path.is_dir():
        raise DataError(f"data folder {path} (from {origin}) does not exist or is not a folder")
    return path


def check_split(
    images: np.ndarray,
    labels: np.ndarray,
    *,
    image_shape: tuple[int, ...],
    num_classes: int,
    images_origin: str,
    labels_origin: str,
) -> None:
    """Checks one split against what a model will assume, naming where the data came from.

    Args:
        images: uint8 images, shape (N, *image_shape).
        labels: integer labels, shape (N,).
        image_shape: the shape of one image.
        num_classes: labels must lie in [0, num_classes).
        images_origin: where the images came from (a file, a tfds split), for the messages.
        labels_origin: where the labels came from.

    Raises:
        DataError: on the first check that fails.
    """
    if images.dtype != np.uint8:
        raise DataError(f"{images_origin}: images of dtype {images.dtype}, expected uint8")
    if images.ndim != 1 + len(image_shape) or images.shape[1:] != image_shape:
        expected = "(N, " + ", ".join(str(n) for n in image_shape) + ")"
        raise DataError(f"{images_origin}: images of shape {images.shape}, expected {expected}")
    if labels.ndim != 1:
        raise DataError(f"{labels_origin}: labels of shape {labels.shape}, expected (N,)")
    if not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"{labels_origin}: labels of dtype {labels.dtype}, expected integers")
    if len(images) != len(labels):
        raise DataError(
            f"{images_origin} holds {len(images)} images but {labels_origin} holds "
            f"{len(labels)} labels"
        )
    if len(images) == 0:
        raise DataError(f"{images_origin} holds no images")
    bad = np.flatnonzero((labels < 0) | (labels >= num_classes))
    if bad.size:
        index = int(bad[0])
        raise DataError(
            f"{labels_origin}: label {int(labels[index])} at index {index} is outside "
            f"[0, {num_classes}) ({bad.size} such labels)"
        )


def pack_splits(
    name: str, splits: dict[str, tuple[np.ndarray, np.ndarray]], num_classes: int
) -> ImageDataset:
    """Packs checked train and test splits into an `ImageDataset` of read-only arrays."""
    for arrays in splits.values():
        for array in arrays:
            array.flags.writeable = False  # shared by every task built from a cached dataset
    (train_images, train_labels), (test_images, test_labels) = splits["train"], splits["test"]
    return ImageDataset(
        name=name,
        train_images=train_images,
        train_labels=train_labels,
        test_images=test_images,
        test_labels=test_labels,
        num_classes=num_classes,
    )


def checked_dataset(
    name: str,
    raw_splits: dict[str, tuple[np.ndarray, np.ndarray]],
    image_shape: tuple[int, ...],
    num_classes: int,
    origin: str,
) -> ImageDataset:
    """Checks each (images, labels) split (`check_split`) and packs them (`pack_splits`).

    `origin` names where the splits came from, with "{split}" standing for the split's name.
    """
    splits = {}
    for split, (images, labels) in raw_splits.items():
        where = origin.format(split=split)
        check_split(
            images,
            labels,
            image_shape=image_shape,
            num_classes=num_classes,
            images_origin=where,
            labels_origin=where,
        )
        splits[split] = (images, labels.astype(np.int32))
    return pack_splits(name, splits, num_classes)
