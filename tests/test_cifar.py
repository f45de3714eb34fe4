"""CIFAR-10: the binary-version reader (folder and archive), tfds, class subsets, the real copy.

Everything but the last test runs on tiny self-made files; the last reads the real copy when
$L2LGD_DATA_DIR or ../shared/data has it, and is skipped otherwise.
"""

from __future__ import annotations

import io
import os
import sys
import tarfile
import types
from pathlib import Path

import numpy as np
import pytest

from l2lgd.data import DATA_DIR_ENV, ImageDataset, load_cifar10, subset_classes
from l2lgd.errors import ConfigError, DataError

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
TRAIN_FILES = [f"data_batch_{i}.bin" for i in range(1, 6)]
TEST_FILE = "test_batch.bin"
# Records per training batch file: unequal, so that nothing may assume a fixed count per file.
TRAIN_COUNTS = (1, 3, 2, 1, 2)
TEST_COUNT = 4


def cifar_records(images: np.ndarray, labels: np.ndarray) -> bytes:
    """Encodes NHWC images as the binary version does: per image, the label byte, then all red
    bytes row by row, then all green, then all blue."""
    return b"".join(
        bytes([int(label)]) + image.transpose(2, 0, 1).tobytes()
        for image, label in zip(images, labels, strict=True)
    )


def tiny_cifar() -> dict[str, list[tuple[np.ndarray, np.ndarray]]]:
    """Random images and labels per file: {"train": five (images, labels), "test": one}."""
    rng = np.random.default_rng(0)

    def part(count: int) -> tuple[np.ndarray, np.ndarray]:
        return rng.integers(0, 256, (count, 32, 32, 3), dtype=np.uint8), rng.integers(0, 10, count)

    return {"train": [part(n) for n in TRAIN_COUNTS], "test": [part(TEST_COUNT)]}


def file_bytes(parts: dict[str, list[tuple[np.ndarray, np.ndarray]]]) -> dict[str, bytes]:
    names = [*TRAIN_FILES, TEST_FILE]
    return {
        name: cifar_records(*part)
        for name, part in zip(names, [*parts["train"], *parts["test"]], strict=True)
    }


def write_folder(folder: Path, files: dict[str, bytes]) -> None:
    folder.mkdir(parents=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)


def write_archive(path: Path, files: dict[str, bytes]) -> None:
    """A .tar.gz laid out like the official one: a meta file, then cifar-10-batches-bin/*.bin."""
    path.parent.mkdir(parents=True, exist_ok=True)
    members = {"batches.meta.txt": b"airplane\nautomobile\n", **files}
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(f"cifar-10-batches-bin/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def check_equals_parts(dataset: ImageDataset, parts) -> None:
    """The dataset holds exactly the parts' images and labels, in file order, as documented."""
    for split in ("train", "test"):
        images = getattr(dataset, f"{split}_images")
        labels = getattr(dataset, f"{split}_labels")
        assert images.dtype == np.uint8 and images.shape[1:] == (32, 32, 3)
        assert labels.dtype == np.int32
        assert not images.flags.writeable and not labels.flags.writeable
        np.testing.assert_array_equal(images, np.concatenate([p[0] for p in parts[split]]))
        np.testing.assert_array_equal(labels, np.concatenate([p[1] for p in parts[split]]))
    assert (dataset.name, dataset.num_classes) == ("cifar10", 10)


# --- the binary version, from a folder or an archive --------------------------------------------


def test_records_are_channel_major_and_come_back_nhwc(tmp_path):
    """One hand-made record: pixel (row 1, column 2) of the green plane is byte 1 + 1024 + 34."""
    record = np.arange(3073, dtype=np.int64) % 251
    record[0] = 7
    write_folder(
        tmp_path / "cifar-10-batches-bin",
        {name: record.astype(np.uint8).tobytes() for name in [*TRAIN_FILES, TEST_FILE]},
    )
    dataset = load_cifar10("files", tmp_path)
    assert dataset.train_images.shape == (5, 32, 32, 3)
    assert dataset.train_images[0, 1, 2, 1] == record[1 + 1024 + 1 * 32 + 2]
    assert dataset.train_images[0, 31, 0, 2] == record[1 + 2048 + 31 * 32]
    assert dataset.test_labels.tolist() == [7]


@pytest.mark.parametrize("subfolder", ["", "cifar10"])
def test_load_cifar10_reads_the_extracted_folder(tmp_path, subfolder):
    parts = tiny_cifar()
    write_folder(tmp_path / subfolder / "cifar-10-batches-bin", file_bytes(parts))
    check_equals_parts(load_cifar10("files", tmp_path), parts)


@pytest.mark.parametrize("subfolder", ["", "cifar10"])
def test_load_cifar10_reads_the_archive_without_extracting_it(tmp_path, subfolder):
    parts = tiny_cifar()
    write_archive(tmp_path / subfolder / "cifar-10-binary.tar.gz", file_bytes(parts))
    check_equals_parts(load_cifar10("files", tmp_path), parts)
    assert not list(tmp_path.rglob("*.bin"))


def test_load_cifar10_takes_the_folder_from_the_environment(tmp_path, monkeypatch):
    parts = tiny_cifar()
    write_archive(tmp_path / "cifar10" / "cifar-10-binary.tar.gz", file_bytes(parts))
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path))
    check_equals_parts(load_cifar10(), parts)


@pytest.mark.parametrize("container", ["folder", "archive"])
def test_a_size_that_is_not_whole_records_is_a_data_error_naming_the_file(tmp_path, container):
    files = file_bytes(tiny_cifar())
    files["data_batch_3.bin"] = files["data_batch_3.bin"][:-1]
    if container == "folder":
        write_folder(tmp_path / "cifar-10-batches-bin", files)
    else:
        write_archive(tmp_path / "cifar-10-binary.tar.gz", files)
    with pytest.raises(DataError, match="data_batch_3.bin") as caught:
        load_cifar10("files", tmp_path)
    assert "3,073" in str(caught.value) and f"{2 * 3073 - 1:,} bytes" in str(caught.value)


def test_a_label_outside_0_to_9_is_a_data_error_naming_the_file(tmp_path):
    files = file_bytes(tiny_cifar())
    files[TEST_FILE] = bytes([10]) + files[TEST_FILE][1:]
    write_folder(tmp_path / "cifar-10-batches-bin", files)
    with pytest.raises(DataError, match=r"test_batch\.bin.*label 10 at index 0"):
        load_cifar10("files", tmp_path)


def test_no_cifar10_in_the_data_folder_says_what_to_put_where(tmp_path):
    with pytest.raises(DataError, match="CIFAR-10 not found") as caught:
        load_cifar10("files", tmp_path)
    message = str(caught.value)
    assert str(tmp_path) in message and "--data-dir" in message and DATA_DIR_ENV in message
    assert "cifar-10-batches-bin" in message and "cifar-10-binary.tar.gz" in message


def test_a_missing_batch_file_is_named(tmp_path):
    files = file_bytes(tiny_cifar())
    del files["data_batch_4.bin"]
    write_folder(tmp_path / "cifar-10-batches-bin", files)
    with pytest.raises(DataError, match=r"data_batch_4\.bin not found in .*cifar-10-batches-bin"):
        load_cifar10("files", tmp_path)

    write_archive(tmp_path / "archive" / "cifar-10-binary.tar.gz", files)
    with pytest.raises(DataError, match=r"cifar-10-binary\.tar\.gz lacks data_batch_4\.bin"):
        load_cifar10("files", tmp_path / "archive")


def test_a_corrupt_archive_is_a_data_error_naming_it(tmp_path):
    archive = tmp_path / "cifar-10-binary.tar.gz"
    archive.write_bytes(b"\x1f\x8b\x08\x00 this is not a gzip stream")
    with pytest.raises(DataError, match="cannot read the CIFAR-10 archive .*cifar-10-binary"):
        load_cifar10("files", tmp_path)


def test_load_cifar10_rejects_an_unknown_source_and_download_with_files(tmp_path):
    with pytest.raises(DataError, match="files, tfds"):
        load_cifar10("http", tmp_path)
    with pytest.raises(DataError, match="tfds"):
        load_cifar10("files", tmp_path, download=True)


def test_tfds_splits_are_checked_and_keep_their_nhwc_layout(monkeypatch):
    rng = np.random.default_rng(3)
    splits = {
        split: {
            "image": rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8),
            "label": rng.integers(0, 10, n).astype(np.int64),
        }
        for split, n in (("train", 5), ("test", 2))
    }
    calls = []
    module = types.ModuleType("tensorflow_datasets")
    module.load = lambda name, split, **kwargs: calls.append(name) or [splits[s] for s in split]
    module.as_numpy = lambda tree: tree
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", module)
    dataset = load_cifar10("tfds")
    assert calls == ["cifar10"]
    np.testing.assert_array_equal(dataset.train_images, splits["train"]["image"])
    np.testing.assert_array_equal(dataset.test_labels, splits["test"]["label"])
    assert dataset.test_labels.dtype == np.int32

    splits["test"]["image"] = splits["test"]["image"][..., :1]
    with pytest.raises(DataError, match=r"tfds cifar10 test split.*expected \(N, 32, 32, 3\)"):
        load_cifar10("tfds")


# --- class subsets (CIFAR-5, CIFAR-2) -----------------------------------------------------------


def labelled_dataset() -> ImageDataset:
    """Image i of each split is filled with the value i, so that kept images can be traced."""
    train_labels = np.array([0, 7, 2, 7, 5, 2, 9], np.int32)
    test_labels = np.array([2, 3, 7], np.int32)

    def images(count: int) -> np.ndarray:
        return np.broadcast_to(
            np.arange(count, dtype=np.uint8)[:, None, None, None], (count, 2, 2, 3)
        )

    return ImageDataset("tiny", images(7), train_labels, images(3), test_labels, num_classes=10)


def test_subset_classes_keeps_those_labels_renumbered_in_the_given_order():
    subset = subset_classes(labelled_dataset(), (7, 2))
    assert subset.num_classes == 2 and subset.name == "tiny-classes-7-2"
    assert subset.train_labels.tolist() == [0, 1, 0, 1]  # 7 -> 0, 2 -> 1
    assert subset.train_images[:, 0, 0, 0].tolist() == [1, 2, 3, 5]
    assert subset.test_labels.tolist() == [1, 0]
    assert subset.test_images[:, 0, 0, 0].tolist() == [0, 2]
    assert subset.train_labels.dtype == np.int32
    assert not subset.train_images.flags.writeable and not subset.test_labels.flags.writeable


@pytest.mark.parametrize(
    ("classes", "message"),
    [((2,), "at least 2"), ((2, 7, 2), "distinct"), ((2, 10), r"\[10\] are outside"),
     ((-1, 2), "outside"), ((2.5, 7), "integer")],
)  # fmt: skip
def test_subset_classes_rejects_bad_classes(classes, message):
    with pytest.raises(ConfigError, match=message):
        subset_classes(labelled_dataset(), classes)


def test_subset_classes_with_no_test_image_of_the_classes_is_a_data_error():
    with pytest.raises(DataError, match="test split of tiny holds no image"):
        subset_classes(labelled_dataset(), (5, 9))


# --- the real copy ------------------------------------------------------------------------------


def real_data_dir() -> Path | None:
    """The first of $L2LGD_DATA_DIR and ../shared/data that holds CIFAR-10."""
    candidates = [os.environ.get(DATA_DIR_ENV), SHARED_DATA]
    for folder in (Path(c) for c in candidates if c):
        for base in (folder / "cifar10", folder):
            if (base / "cifar-10-batches-bin").is_dir() or (
                base / "cifar-10-binary.tar.gz"
            ).is_file():
                return folder
    return None


@pytest.mark.skipif(
    real_data_dir() is None, reason=f"no CIFAR-10 in ${DATA_DIR_ENV} or {SHARED_DATA}"
)
def test_real_cifar10_loads_with_balanced_labels_and_natural_images():
    dataset = load_cifar10("files", real_data_dir())
    # The shared copy is a class-balanced half of the training set; the original has 50,000.
    assert len(dataset.train_images) in (25_000, 50_000)
    assert dataset.test_images.shape == (10_000, 32, 32, 3)
    for labels in (dataset.train_labels, dataset.test_labels):
        assert labels.min() == 0 and labels.max() == 9
        counts = np.bincount(labels, minlength=10)
        assert np.all(counts == len(labels) // 10)
    # In NHWC natural images, horizontally adjacent pixels of a channel are strongly correlated;
    # a channel-major record read as HWC would mix channels and positions (0.93 against 0.75
    # on the shared copy).
    sample = dataset.test_images[:1000].astype(np.float64)
    correlation = np.corrcoef(sample[:, :, :-1].ravel(), sample[:, :, 1:].ravel())[0, 1]
    assert correlation > 0.88
