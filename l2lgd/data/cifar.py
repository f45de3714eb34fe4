"""CIFAR-10 from its binary distribution (folder or archive) or from tensorflow-datasets.

The binary version holds six files: `data_batch_1.bin` .. `data_batch_5.bin` (training) and
`test_batch.bin`. Each is a run of 3,073-byte records: one label byte, then the 32x32x3 pixels
channel-major (all red bytes, then green, then blue, each row by row). The record count comes
from the file size, so class-balanced subsets (e.g. 5,000 records per batch file) read as well
as the original 10,000.
"""

from __future__ import annotations

import operator
import tarfile
import zlib
from pathlib import Path, PurePosixPath

import numpy as np

from l2lgd.data.dataset import (
    DATA_DIR_ENV,
    ImageDataset,
    check_split,
    checked_dataset,
    pack_splits,
    resolve_data_dir,
)
from l2lgd.data.tfds_source import load_tfds_splits
from l2lgd.errors import ConfigError, DataError

SOURCES = ("files", "tfds")
NUM_CLASSES = 10
CHANNELS, HEIGHT, WIDTH = 3, 32, 32
IMAGE_SHAPE = (HEIGHT, WIDTH, CHANNELS)
RECORD_BYTES = 1 + CHANNELS * HEIGHT * WIDTH  # 3,073: a label byte, then the pixels
FOLDER_NAME = "cifar-10-batches-bin"
ARCHIVE_NAME = "cifar-10-binary.tar.gz"
SPLIT_FILES = {
    "train": tuple(f"data_batch_{i}.bin" for i in range(1, 6)),
    "test": ("test_batch.bin",),
}
WHERE_TO_PUT = (
    f"put CIFAR-10's binary version (the folder {FOLDER_NAME}/ or the archive {ARCHIVE_NAME}) "
    f"in DIR or DIR/cifar10 and pass --data-dir DIR or set {DATA_DIR_ENV}=DIR"
)


def load_cifar10(
    source: str = "files", data_dir: str | Path | None = None, download: bool = False
) -> ImageDataset:
    """Loads CIFAR-10's training and test images, checked, into memory.

    Args:
        source: "files" reads the binary version from `data_dir/cifar10/` or `data_dir/`: the
            extracted folder `cifar-10-batches-bin/` if there, else the archive
            `cifar-10-binary.tar.gz` (read in memory, never extracted to disk); "tfds" loads it
            through tensorflow-datasets (`pip install 'l2lgd[tfds]'`).
        data_dir: for "files", the data folder (default $L2LGD_DATA_DIR); for "tfds", tfds's
            folder of prepared data sets (default: tfds's own).
        download: for "tfds" only: whether tfds may download CIFAR-10 when it is not prepared.

    Returns:
        CIFAR-10 with images uint8 (N, 32, 32, 3) (NHWC) and labels int32 (N,) in [0, 10).

    Raises:
        DataError: an unknown source, missing or malformed files, or tfds unavailable.

    Example:
        >>> dataset = load_cifar10("files", "/data")  # /data/cifar10/cifar-10-binary.tar.gz
        >>> dataset.train_images.shape
        (50000, 32, 32, 3)
    """
    if source == "files":
        if download:
            raise DataError(
                "download=True needs source 'tfds'; source 'files' only reads local CIFAR-10 files"
            )
        return _load_cifar10_files(resolve_data_dir(data_dir))
    if source == "tfds":
        return _load_cifar10_tfds(data_dir, download)
    raise DataError(f"unknown CIFAR-10 source {source!r}; valid sources: {', '.join(SOURCES)}")


def subset_classes(dataset: ImageDataset, classes: tuple[int, ...]) -> ImageDataset:
    """Keeps only the images of `classes` in both splits, relabelled 0..k-1 in the given order.

    The paper's CIFAR-5 and CIFAR-2 are such subsets of CIFAR-10. Images keep their order.

    Args:
        dataset: the full data set.
        classes: at least two distinct labels of `dataset`; `classes[i]` becomes label i.

    Returns:
        The subset, with `num_classes = len(classes)` and read-only arrays.

    Raises:
        ConfigError: fewer than two classes, repeated classes, or a class out of range.
        DataError: a split holds no image of the chosen classes.

    Example:
        >>> cifar2 = subset_classes(load_cifar10(), (3, 5))  # cats -> 0, dogs -> 1
    """
    classes = _checked_classes(classes, dataset.num_classes)
    new_label = np.full(dataset.num_classes, -1, np.int32)
    new_label[list(classes)] = np.arange(len(classes), dtype=np.int32)
    splits = {}
    for split in ("train", "test"):
        images = getattr(dataset, f"{split}_images")
        labels = new_label[getattr(dataset, f"{split}_labels")]
        keep = labels >= 0
        if not keep.any():
            raise DataError(f"the {split} split of {dataset.name} holds no image of {classes}")
        splits[split] = (images[keep], labels[keep])
    name = f"{dataset.name}-classes-{'-'.join(str(c) for c in classes)}"
    return pack_splits(name, splits, len(classes))


def _checked_classes(classes: tuple[int, ...], num_classes: int) -> tuple[int, ...]:
    """`classes` as Python ints, after checking they can define a subset."""
    try:
        classes = tuple(operator.index(c) for c in classes)
    except TypeError as err:
        raise ConfigError(f"classes must be integer labels, got {classes!r}") from err
    if len(classes) < 2:
        raise ConfigError(f"a class subset needs at least 2 classes, got {classes}")
    if len(set(classes)) != len(classes):
        raise ConfigError(f"classes must be distinct, got {classes}")
    outside = [c for c in classes if not 0 <= c < num_classes]
    if outside:
        raise ConfigError(f"classes {outside} are outside [0, {num_classes})")
    return classes


def _load_cifar10_files(data_dir: Path) -> ImageDataset:
    """Reads and checks the six batch files from the folder or archive found in `data_dir`."""
    location = _find_cifar10(data_dir)
    contents = _read_folder(location) if location.is_dir() else _read_archive(location)
    splits = {}
    for split, names in SPLIT_FILES.items():
        parts = [_parse_records(*contents[name]) for name in names]
        images = np.concatenate([images for images, _ in parts])
        labels = np.concatenate([labels for _, labels in parts])
        splits[split] = (images, labels)
    return pack_splits("cifar10", splits, NUM_CLASSES)


def _find_cifar10(data_dir: Path) -> Path:
    """The first of folder or archive, in `data_dir/cifar10` then `data_dir`, that exists."""
    for base in (data_dir / "cifar10", data_dir):
        if (base / FOLDER_NAME).is_dir():
            return base / FOLDER_NAME
        if (base / ARCHIVE_NAME).is_file():
            return base / ARCHIVE_NAME
    raise DataError(f"CIFAR-10 not found in {data_dir}: {WHERE_TO_PUT}")


def _read_folder(folder: Path) -> dict[str, tuple[bytes, str]]:
    """Each batch file's bytes and path, by file name."""
    contents = {}
    for name in (*SPLIT_FILES["train"], *SPLIT_FILES["test"]):
        path = folder / name
        if not path.is_file():
            raise DataError(f"CIFAR-10 file {name} not found in {folder}: {WHERE_TO_PUT}")
        contents[name] = (path.read_bytes(), str(path))
    return contents


def _read_archive(archive: Path) -> dict[str, tuple[bytes, str]]:
    """Each batch file's bytes and origin, by file name, in one pass over the archive.

    Members are matched by file name wherever they lie in the archive, and read in the
    archive's order: a gzipped tar cannot seek backwards without decompressing again.
    """
    wanted = {*SPLIT_FILES["train"], *SPLIT_FILES["test"]}
    contents: dict[str, tuple[bytes, str]] = {}
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar:
                name = PurePosixPath(member.name).name
                if member.isfile() and name in wanted and name not in contents:
                    data = tar.extractfile(member).read()
                    contents[name] = (data, f"{archive}:{member.name}")
                    if len(contents) == len(wanted):
                        break
    except (tarfile.TarError, EOFError, zlib.error, OSError) as err:
        raise DataError(f"cannot read the CIFAR-10 archive {archive} ({err})") from err
    missing = sorted(wanted - contents.keys())
    if missing:
        raise DataError(
            f"CIFAR-10 archive {archive} lacks {', '.join(missing)}: it must hold the folder "
            f"{FOLDER_NAME}/ of the binary version"
        )
    return contents


def _parse_records(data: bytes, origin: str) -> tuple[np.ndarray, np.ndarray]:
    """One batch file's records as checked NHWC uint8 images and int32 labels."""
    if len(data) % RECORD_BYTES:
        raise DataError(
            f"{origin}: {len(data):,} bytes is not a whole number of {RECORD_BYTES:,}-byte "
            "CIFAR-10 records (1 label byte + 3,072 pixel bytes): truncated, or not the binary "
            "version?"
        )
    records = np.frombuffer(data, np.uint8).reshape(-1, RECORD_BYTES)
    labels = records[:, 0].astype(np.int32)
    channel_major = records[:, 1:].reshape(-1, CHANNELS, HEIGHT, WIDTH)
    images = np.ascontiguousarray(channel_major.transpose(0, 2, 3, 1))
    check_split(
        images,
        labels,
        image_shape=IMAGE_SHAPE,
        num_classes=NUM_CLASSES,
        images_origin=origin,
        labels_origin=origin,
    )
    return images, labels


def _load_cifar10_tfds(data_dir: str | Path | None, download: bool) -> ImageDataset:
    """Loads both splits through tfds, whose layout (NHWC uint8) is already the files' one."""
    train, test = load_tfds_splits("cifar10", ("train", "test"), data_dir, download)
    splits = {"train": (train["image"], train["label"]), "test": (test["image"], test["label"])}
    return checked_dataset(
        "cifar10", splits, IMAGE_SHAPE, NUM_CLASSES, "tfds cifar10 {split} split"
    )
