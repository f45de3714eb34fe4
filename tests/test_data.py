"""Data loading: the IDX reader, MNIST from files and from tfds, all without the network."""

from __future__ import annotations

import gzip
import hashlib
import socket
import struct
import sys
import threading
import time
import types
from pathlib import Path

import numpy as np
import pytest

from l2lgd.data import DATA_DIR_ENV, ImageDataset, load_mnist, resolve_data_dir, tfds_source
from l2lgd.data.idx import read_idx
from l2lgd.errors import DataError, L2LError

SHARED_MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"
TRAIN_IMAGES_SHA256 = "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db"
MNIST_NAMES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


def idx_bytes(array: np.ndarray, dtype_code: int = 0x08) -> bytes:
    """Encodes `array` as IDX, written out field by field from the format's description."""
    header = bytes([0, 0, dtype_code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_file(path: Path, data: bytes) -> Path:
    """Writes `data`, gzipped when the name ends in .gz."""
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


def write_mnist(
    folder: Path, gz: bool = True, n_train: int = 5, n_test: int = 3, **override: np.ndarray
) -> dict[str, np.ndarray]:
    """Writes a tiny MNIST in IDX files; `override` replaces one of the four arrays."""
    rng = np.random.default_rng(0)
    arrays = {
        "train_images": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train_labels": rng.integers(0, 10, n_train, dtype=np.uint8),
        "test_images": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "test_labels": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    arrays.update(override)
    folder.mkdir(parents=True, exist_ok=True)
    for key, name in MNIST_NAMES.items():
        write_file(folder / (name + (".gz" if gz else "")), idx_bytes(arrays[key]))
    return arrays


# --- the IDX reader ---------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_read_idx_round_trips_images_and_labels(tmp_path, suffix):
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (4, 3, 5), dtype=np.uint8)
    labels = rng.integers(0, 10, 4, dtype=np.uint8)
    read_images = read_idx(write_file(tmp_path / f"images{suffix}", idx_bytes(images)))
    read_labels = read_idx(write_file(tmp_path / f"labels{suffix}", idx_bytes(labels)))
    assert read_images.dtype == np.uint8 and read_images.shape == (4, 3, 5)
    np.testing.assert_array_equal(read_images, images)
    np.testing.assert_array_equal(read_labels, labels)


def test_read_idx_recognises_gzip_by_its_magic_bytes(tmp_path):
    labels = np.arange(7, dtype=np.uint8)
    path = tmp_path / "labels-without-suffix"
    path.write_bytes(gzip.compress(idx_bytes(labels)))
    np.testing.assert_array_equal(read_idx(path), labels)


GOOD = idx_bytes(np.arange(24, dtype=np.uint8).reshape(2, 3, 4))
MALFORMED = {
    "truncated payload": (GOOD[:-1], "truncated"),
    "extra bytes": (GOOD + b"\x00", "extra bytes"),
    "bad magic": (b"\x01\x00" + GOOD[2:], "magic"),
    "int32 dtype code": (GOOD[:2] + b"\x0c" + GOOD[3:], "dtype code 0x0c"),
    "truncated header": (GOOD[:9], "header"),
    "empty file": (b"", "too short"),
}


@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize("case", MALFORMED, ids=str)
def test_read_idx_rejects_malformed_files_naming_them(tmp_path, case, suffix):
    data, message = MALFORMED[case]
    path = write_file(tmp_path / f"bad-idx{suffix}", data)
    with pytest.raises(DataError, match=message) as caught:
        read_idx(path)
    assert path.name in str(caught.value)


@pytest.mark.parametrize(
    "corrupt",
    [
        lambda stream: stream[: len(stream) // 2],  # cut short
        lambda stream: stream[:12] + bytes(b ^ 0xFF for b in stream[12:-8]) + stream[-8:],
        lambda stream: stream[:-4] + b"\x00\x00\x00\x00",  # wrong length in the trailer
        lambda stream: b"not gzip at all",  # named .gz but plain bytes
    ],
    ids=["cut short", "flipped data", "bad trailer", "not gzip"],
)
def test_read_idx_rejects_a_corrupt_gzip_stream(tmp_path, corrupt):
    path = tmp_path / "images.gz"
    path.write_bytes(corrupt(gzip.compress(GOOD)))
    with pytest.raises(DataError, match="corrupt gzip") as caught:
        read_idx(path)
    assert path.name in str(caught.value)


def test_read_idx_reports_a_missing_file_as_a_data_error(tmp_path):
    with pytest.raises(DataError, match="absent-file"):
        read_idx(tmp_path / "absent-file")


# --- resolve_data_dir ------------------------------------------------------------------------


def test_resolve_data_dir_prefers_the_argument_then_the_environment(tmp_path, monkeypatch):
    explicit, from_env = tmp_path / "explicit", tmp_path / "env"
    explicit.mkdir()
    from_env.mkdir()
    monkeypatch.setenv(DATA_DIR_ENV, str(from_env))
    assert resolve_data_dir(explicit) == explicit
    assert resolve_data_dir(str(explicit)) == explicit
    assert resolve_data_dir(None) == from_env
    assert resolve_data_dir("") == from_env  # a config's blank data_dir means "not given"
    monkeypatch.delenv(DATA_DIR_ENV)
    with pytest.raises(DataError, match="--data-dir") as caught:
        resolve_data_dir(None)
    assert DATA_DIR_ENV in str(caught.value)


def test_resolve_data_dir_rejects_a_folder_that_does_not_exist(tmp_path, monkeypatch):
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    with pytest.raises(DataError, match="does not exist"):
        resolve_data_dir(tmp_path / "nowhere")
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path / "nowhere"))
    with pytest.raises(DataError, match=DATA_DIR_ENV):
        resolve_data_dir(None)


# --- MNIST from files ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("subfolder", "gz"), [("mnist", True), ("", False)], ids=["DIR/mnist gz", "DIR raw"]
)
def test_load_mnist_files_reads_a_tiny_mnist(tmp_path, subfolder, gz):
    arrays = write_mnist(tmp_path / subfolder, gz=gz)
    dataset = load_mnist("files", tmp_path)
    assert isinstance(dataset, ImageDataset)
    assert (dataset.name, dataset.num_classes) == ("mnist", 10)
    assert dataset.train_images.shape == (5, 28, 28) and dataset.test_images.shape == (3, 28, 28)
    assert dataset.train_images.dtype == np.uint8 and dataset.train_labels.dtype == np.int32
    for key in MNIST_NAMES:
        np.testing.assert_array_equal(getattr(dataset, key), arrays[key])
        assert not getattr(dataset, key).flags.writeable


def test_load_mnist_files_takes_the_folder_from_the_environment(tmp_path, monkeypatch):
    arrays = write_mnist(tmp_path / "mnist")
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path))
    np.testing.assert_array_equal(load_mnist().test_labels, arrays["test_labels"])


BAD_MNIST = {
    "fewer labels than images": ({"train_labels": np.zeros(4, np.uint8)}, "5 images but"),
    "27x27 images": ({"test_images": np.zeros((3, 27, 27), np.uint8)}, r"expected \(N, 28, 28\)"),
    "label 10": ({"train_labels": np.array([0, 1, 10, 2, 3], np.uint8)}, "label 10 at index 2"),
    "labels with 2 dims": ({"test_labels": np.zeros((3, 1), np.uint8)}, r"expected \(N,\)"),
}


@pytest.mark.parametrize("case", BAD_MNIST, ids=str)
def test_load_mnist_files_rejects_inconsistent_data(tmp_path, case):
    override, message = BAD_MNIST[case]
    write_mnist(tmp_path, **override)
    with pytest.raises(DataError, match=message):
        load_mnist("files", tmp_path)


def test_load_mnist_files_names_a_missing_file_and_how_to_provide_it(tmp_path):
    write_mnist(tmp_path / "mnist")
    (tmp_path / "mnist" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError) as caught:
        load_mnist("files", tmp_path)
    message = str(caught.value)
    assert "t10k-labels-idx1-ubyte" in message and str(tmp_path / "mnist") in message
    assert "--data-dir" in message and DATA_DIR_ENV in message and "\n" not in message


def test_load_mnist_files_reports_a_truncated_file_by_name(tmp_path):
    write_mnist(tmp_path, gz=False)
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-28])
    with pytest.raises(DataError, match="train-images-idx3-ubyte: truncated"):
        load_mnist("files", tmp_path)


def test_load_mnist_rejects_an_unknown_source_and_download_without_tfds(tmp_path):
    with pytest.raises(DataError, match="'files', 'tfds'|files, tfds"):
        load_mnist("kaggle", tmp_path)
    write_mnist(tmp_path)
    with pytest.raises(DataError, match="tfds"):
        load_mnist("files", tmp_path, download=True)


def test_data_error_is_a_user_error():
    assert issubclass(DataError, L2LError)


@pytest.mark.skipif(not SHARED_MNIST.is_dir(), reason=f"real MNIST not found at {SHARED_MNIST}")
def test_real_mnist_loads_with_the_canonical_bytes():
    with gzip.open(SHARED_MNIST / "train-images-idx3-ubyte.gz", "rb") as f:
        assert hashlib.sha256(f.read()).hexdigest() == TRAIN_IMAGES_SHA256
    dataset = load_mnist("files", SHARED_MNIST.parent)
    assert dataset.train_images.shape == (60000, 28, 28)
    assert dataset.test_images.shape == (10000, 28, 28)
    assert dataset.train_labels.shape == (60000,) and dataset.test_labels.shape == (10000,)
    assert dataset.train_images.dtype == np.uint8 and dataset.test_labels.dtype == np.int32
    for labels in (dataset.train_labels, dataset.test_labels):
        assert set(np.unique(labels)) == set(range(10))
    assert dataset.train_images.max() == 255 and dataset.train_images.min() == 0


# --- MNIST from tfds, never touching the network ---------------------------------------------


@pytest.fixture
def no_sockets(monkeypatch):
    """Makes any attempt to open a connection fail the test."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"a test tried to open a network connection: {args}")

    monkeypatch.setattr(socket, "create_connection", refuse)


def fake_tfds(monkeypatch, load) -> list[dict]:
    """Installs a stand-in tensorflow_datasets module; returns the list of its load calls."""
    calls: list[dict] = []

    def recording_load(name, **kwargs):
        calls.append({"name": name, **kwargs})
        return load(name, **kwargs)

    module = types.ModuleType("tensorflow_datasets")
    module.load = recording_load
    module.as_numpy = lambda tree: tree
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", module)
    return calls


def test_tfds_not_installed_says_how_to_install_or_use_files(monkeypatch, no_sockets):
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)  # makes the import fail
    with pytest.raises(DataError, match="not installed") as caught:
        load_mnist("tfds")
    assert "pip install 'l2lgd[tfds]'" in str(caught.value) and "--data-dir" in str(caught.value)


def test_tfds_download_offline_fails_fast_without_calling_tfds(monkeypatch, no_sockets):
    def load(name, **kwargs):
        raise AssertionError("tfds.load must not run when the download host is unreachable")

    calls = fake_tfds(monkeypatch, load)
    probes = []
    monkeypatch.setattr(
        tfds_source, "network_available", lambda *args: probes.append(args) or False
    )
    start = time.perf_counter()
    with pytest.raises(DataError, match="--data-dir"):
        load_mnist("tfds", download=True)
    assert time.perf_counter() - start < 2.0
    assert probes and not calls


def test_tfds_not_prepared_without_download_names_download_and_data_dir(
    monkeypatch, no_sockets, tmp_path
):
    def load(name, **kwargs):
        raise AssertionError(
            f"Dataset {name}: could not find data in {kwargs['data_dir']}. Please make sure to "
            "call dataset_builder.download_and_prepare(), or pass download=True to tfds.load()"
        )

    calls = fake_tfds(monkeypatch, load)
    with pytest.raises(DataError, match="could not find data") as caught:
        load_mnist("tfds", tmp_path, download=False)
    assert "download=True" in str(caught.value) and "--data-dir" in str(caught.value)
    assert calls[0]["download"] is False and calls[0]["data_dir"] == str(tmp_path)


def test_tfds_splits_become_the_files_layout(monkeypatch, no_sockets):
    rng = np.random.default_rng(2)
    splits = {
        "train": {
            "image": rng.integers(0, 256, (6, 28, 28, 1), dtype=np.uint8),
            "label": rng.integers(0, 10, 6).astype(np.int64),
        },
        "test": {
            "image": rng.integers(0, 256, (2, 28, 28, 1), dtype=np.uint8),
            "label": rng.integers(0, 10, 2).astype(np.int64),
        },
    }
    calls = fake_tfds(monkeypatch, lambda name, split, **kwargs: [splits[s] for s in split])
    dataset = load_mnist("tfds")
    assert calls[0]["split"] == ["train", "test"] and calls[0]["batch_size"] == -1
    assert calls[0]["download"] is False and calls[0]["data_dir"] is None
    assert dataset.train_images.shape == (6, 28, 28) and dataset.train_labels.dtype == np.int32
    np.testing.assert_array_equal(dataset.train_images, splits["train"]["image"][..., 0])
    np.testing.assert_array_equal(dataset.test_labels, splits["test"]["label"])


def test_tfds_without_download_keeps_tfds_off_its_bucket(monkeypatch, no_sockets):
    gcs_utils = types.ModuleType("tensorflow_datasets.core.utils.gcs_utils")
    gcs_utils._is_gcs_disabled = False
    for name in ("tensorflow_datasets.core", "tensorflow_datasets.core.utils"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, gcs_utils.__name__, gcs_utils)
    seen = []

    def load(name, **kwargs):
        seen.append(gcs_utils._is_gcs_disabled)
        raise AssertionError("not prepared")

    fake_tfds(monkeypatch, load)
    monkeypatch.setattr(tfds_source, "network_available", lambda *args: True)
    for download in (False, True):
        with pytest.raises(DataError):
            load_mnist("tfds", download=download)
    assert seen == [True, False]  # disabled only without download
    assert gcs_utils._is_gcs_disabled is False  # and restored afterwards


# --- network_available, with a fake socket layer ---------------------------------------------


def test_network_available_reports_connect_success_and_failure(monkeypatch):
    class Connection:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(socket, "create_connection", lambda address, timeout: Connection())
    assert tfds_source.network_available("example.invalid", 443, 1.0) is True

    def unreachable(address, timeout):
        raise OSError("Network is unreachable")

    monkeypatch.setattr(socket, "create_connection", unreachable)
    assert tfds_source.network_available("example.invalid", 443, 1.0) is False


def test_network_available_is_bounded_even_when_the_lookup_hangs(monkeypatch):
    release = threading.Event()

    def hanging_lookup(address, timeout):
        release.wait(10.0)  # a DNS lookup that ignores the socket timeout
        raise OSError("lookup timed out")

    monkeypatch.setattr(socket, "create_connection", hanging_lookup)
    start = time.perf_counter()
    try:
        assert tfds_source.network_available("example.invalid", 443, 0.2) is False
        assert time.perf_counter() - start < 1.0
    finally:
        release.set()


def test_download_endpoint_is_the_https_proxy_when_one_is_set(monkeypatch):
    for name in ("https_proxy", "HTTPS_PROXY", "no_proxy", "NO_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    assert tfds_source.download_endpoint() == ("storage.googleapis.com", 443)
    monkeypatch.setenv("https_proxy", "http://proxy.example:3128")
    assert tfds_source.download_endpoint() == ("proxy.example", 3128)
