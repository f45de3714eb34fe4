"""A strict reader for IDX files (the format MNIST is distributed in), gzipped or not.

An IDX file is a 4-byte magic number (0x00, 0x00, a dtype code, the number of dimensions), one
big-endian uint32 per dimension, then the values in C order. MNIST uses only unsigned bytes.
Every check here fails with a `DataError` naming the file, so that a truncated download is
reported where it is read, not as a reshape error deep inside a training step.
"""

from __future__ import annotations

import gzip
import math
import zlib
from pathlib import Path

import numpy as np

from l2lgd.errors import DataError

GZIP_MAGIC = b"\x1f\x8b"
UBYTE_CODE = 0x08
# The other codes the format defines, named only in error messages.
_DTYPE_NAMES = {
    0x08: "unsigned byte",
    0x09: "signed byte",
    0x0B: "int16",
    0x0C: "int32",
    0x0D: "float32",
    0x0E: "float64",
}


def read_idx(path: str | Path) -> np.ndarray:
    """Reads an IDX file of unsigned bytes into a read-only uint8 array of its declared shape.

    The file may be gzipped: recognised by its magic bytes or a `.gz` suffix.

    Args:
        path: the IDX file.

    Returns:
        A uint8 array whose shape is the one the header declares.

    Raises:
        DataError: the file is unreadable, not gzip although named `.gz`, a corrupt gzip stream,
            has a bad magic number, a dtype other than unsigned byte, or a payload whose size is
            not exactly the product of the declared dimensions.
    """
    path = Path(path)
    data = _read_bytes(path)
    if len(data) < 4:
        raise DataError(f"{path}: {len(data)} bytes, too short for an IDX header")
    zero0, zero1, dtype_code, ndim = data[0], data[1], data[2], data[3]
    if zero0 != 0 or zero1 != 0:
        raise DataError(
            f"{path}: not an IDX file (magic number {data[:4].hex()}, expected 0000 then a "
            "dtype code and the number of dimensions)"
        )
    if dtype_code != UBYTE_CODE:
        found = _DTYPE_NAMES.get(dtype_code, "unknown")
        raise DataError(
            f"{path}: IDX dtype code 0x{dtype_code:02x} ({found}), expected 0x08 (unsigned byte)"
        )
    if ndim == 0:
        raise DataError(f"{path}: IDX header declares 0 dimensions")
    header_size = 4 + 4 * ndim
    if len(data) < header_size:
        raise DataError(
            f"{path}: truncated IDX header ({len(data)} bytes, {ndim} dimensions need "
            f"{header_size})"
        )
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = math.prod(shape)
    payload = len(data) - header_size
    if payload != expected:
        problem = "truncated" if payload < expected else "has extra bytes"
        raise DataError(
            f"{path}: {problem}: header declares shape {shape} ({expected} bytes of data), "
            f"file holds {payload}"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header_size).reshape(shape)


def _read_bytes(path: Path) -> bytes:
    """Returns the file's bytes, decompressed when it is gzip."""
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise DataError(f"{path}: cannot read ({err.strerror or err})") from err
    if not (raw.startswith(GZIP_MAGIC) or path.suffix == ".gz"):
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as err:
        # gzip raises BadGzipFile (an OSError) for a bad header, EOFError for a stream cut short,
        # and zlib.error for corrupt compressed data.
        raise DataError(f"{path}: corrupt gzip stream ({err})") from err
