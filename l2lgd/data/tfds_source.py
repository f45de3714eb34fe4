"""Whole data set splits from tensorflow-datasets, an optional extra that must never hang offline.

tfds needs TensorFlow, so it is imported only when asked for, never at module import. Offline,
tfds retries its downloads (and its reads of the gs://tfds-data bucket) for minutes before it
gives up; this module instead probes the download host with one short TCP connect before it lets
tfds download, and keeps tfds off the bucket entirely when it must not download.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import ModuleType

import numpy as np

from l2lgd.errors import DataError

# tfds fetches MNIST and CIFAR-10 from storage.googleapis.com (cvdf-datasets bucket for MNIST),
# and its prepared copies from the gs://tfds-data bucket behind the same host.
DOWNLOAD_HOST = "storage.googleapis.com"
DOWNLOAD_PORT = 443
PROBE_TIMEOUT_S = 3.0

INSTALL_HINT = (
    "pip install 'l2lgd[tfds]' to use tensorflow-datasets, or pass --data-dir DIR (or set "
    "L2LGD_DATA_DIR) with source 'files' to read the data set's own files"
)


def network_available(host: str, port: int, timeout: float) -> bool:
    """Whether a TCP connection to host:port opens within `timeout` seconds, DNS lookup included.

    `socket.create_connection`'s own timeout does not bound the name lookup, so the connect runs
    in a daemon thread that is abandoned when the time is up.
    """
    reached = threading.Event()

    def connect() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                reached.set()
        except OSError:
            pass  # unreachable: `reached` stays unset

    thread = threading.Thread(target=connect, name=f"probe {host}:{port}", daemon=True)
    thread.start()
    thread.join(timeout)
    return reached.is_set()


def download_endpoint() -> tuple[str, int]:
    """The host and port a download will connect to first: the HTTPS proxy if one is set."""
    proxy = urllib.request.getproxies().get("https")
    if proxy and not urllib.request.proxy_bypass(DOWNLOAD_HOST):
        parts = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        if parts.hostname:
            return parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)
    return DOWNLOAD_HOST, DOWNLOAD_PORT


def load_tfds_splits(
    name: str, splits: Sequence[str], data_dir: str | Path | None, download: bool
) -> list[dict[str, np.ndarray]]:
    """Loads whole splits of a tfds data set as dicts of numpy arrays, one batch per split.

    Args:
        name: the tfds data set name, e.g. "mnist".
        splits: the splits to load, e.g. ("train", "test").
        data_dir: tfds's folder of prepared data sets; None for tfds's default
            (~/tensorflow_datasets or $TFDS_DATA_DIR).
        download: whether tfds may download and prepare the data set if it is not there.

    Returns:
        One dict per split, feature name -> array over the whole split (e.g. "image", "label").

    Raises:
        DataError: tfds is not installed, the download host is unreachable, or tfds fails.
    """
    tfds = _import_tfds()
    if download:
        host, port = download_endpoint()
        if not network_available(host, port, PROBE_TIMEOUT_S):
            raise DataError(
                f"cannot reach {host}:{port} within {PROBE_TIMEOUT_S:g} s to download {name} "
                "with tensorflow-datasets (offline?); pass --data-dir DIR with the data set's "
                "own files instead"
            )
    try:
        # Without download there is nothing to fetch, so nothing may touch the network.
        with contextlib.nullcontext() if download else _gcs_bucket_disabled():
            loaded = tfds.load(
                name,
                split=list(splits),
                batch_size=-1,
                download=download,
                data_dir=None if data_dir is None else str(data_dir),
                try_gcs=False,
            )
            return list(tfds.as_numpy(loaded))
    except Exception as err:
        # tfds reports a data set that is not prepared, a failed download or a bad folder with
        # AssertionError, ValueError, OSError or TensorFlow errors depending on its version; all
        # of them mean the data is not there, which the user fixes as the message says.
        cause = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        hint = (
            "pass --data-dir DIR with the data set's own files instead"
            if download
            else "set download=True (task.download: true) to let tfds download and prepare it, "
            "or pass --data-dir DIR with the data set's own files"
        )
        raise DataError(f"tensorflow-datasets could not load {name} ({cause}); {hint}") from err


def _import_tfds() -> ModuleType:
    """Imports tensorflow_datasets, or says how to install it."""
    try:
        import tensorflow_datasets as tfds
    except ImportError as err:
        raise DataError(f"tensorflow-datasets is not installed: {INSTALL_HINT}") from err
    return tfds


@contextlib.contextmanager
def _gcs_bucket_disabled() -> Iterator[None]:
    """Keeps tfds from reading gs://tfds-data (metadata lookups retry for minutes offline).

    tfds has no public switch for this; it honours the module flag `gcs_utils._is_gcs_disabled`,
    which offline users of tfds set by hand. Left alone when that module or flag is missing.
    """
    try:
        from tensorflow_datasets.core.utils import gcs_utils
    except ImportError:
        gcs_utils = None
    if gcs_utils is None or not hasattr(gcs_utils, "_is_gcs_disabled"):
        yield
        return
    previous = gcs_utils._is_gcs_disabled
    gcs_utils._is_gcs_disabled = True
    try:
        yield
    finally:
        gcs_utils._is_gcs_disabled = previous
