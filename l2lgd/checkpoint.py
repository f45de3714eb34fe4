"""Checkpoints as msgpack files (flax.serialization), written atomically, read with clear errors.

File format: the line `L2LGD-SHA256`, the 32-byte sha256 digest of the payload, then the payload
(a msgpack map). The digest turns a flipped bit or a torn copy into a clear CheckpointError instead
of weights that load and are silently wrong. Files without the header (written before it existed)
are read as bare msgpack.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import jax
import numpy as np
from flax import serialization

from l2lgd.atomic import write_atomically
from l2lgd.config import OptimizerConfig, config_to_dict, optimizer_config_from_dict
from l2lgd.errors import CheckpointError, ConfigError
from l2lgd.optimizers.learned import init_learned_weights

WEIGHTS_FORMAT = "l2lgd-learned-optimizer"
WEIGHTS_VERSION = 1
CHECKSUM_MAGIC = b"L2LGD-SHA256\n"
DIGEST_SIZE = hashlib.sha256().digest_size


def save_tree(path: Path, tree: dict[str, Any]) -> None:
    """Writes `tree` to `path` atomically, with a checksum that `load_tree` verifies."""
    payload = serialization.msgpack_serialize(jax.tree.map(_to_numpy, tree))
    write_atomically(path, CHECKSUM_MAGIC + hashlib.sha256(payload).digest() + payload)


def _to_numpy(leaf: Any) -> Any:
    """Device arrays become numpy arrays; strings and Python numbers are stored as they are."""
    return np.asarray(leaf) if isinstance(leaf, jax.Array) else leaf


def load_tree(path: Path) -> dict[str, Any]:
    """Reads a tree written by `save_tree`; a missing or corrupt file is a CheckpointError."""
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    payload = _verified_payload(path, path.read_bytes())
    try:
        tree = serialization.msgpack_restore(payload)
    except Exception as error:  # msgpack raises several unrelated types on garbage input
        raise CheckpointError(
            f"checkpoint {path} is corrupt or not an l2lgd file ({error})"
        ) from None
    if not isinstance(tree, dict):
        raise CheckpointError(f"checkpoint {path} is not an l2lgd file")
    return tree


def _verified_payload(path: Path, data: bytes) -> bytes:
    """The msgpack payload of a file's bytes, checked against its digest when it has one."""
    if not data.startswith(CHECKSUM_MAGIC):
        return data  # a legacy file: msgpack itself still rejects most damage, and extra bytes
    digest = data[len(CHECKSUM_MAGIC) : len(CHECKSUM_MAGIC) + DIGEST_SIZE]
    payload = data[len(CHECKSUM_MAGIC) + DIGEST_SIZE :]
    if hashlib.sha256(payload).digest() != digest:
        raise CheckpointError(f"checkpoint {path} is corrupt: checksum mismatch")
    return payload


def save_weights(
    path: Path, weights: Any, config: OptimizerConfig, provenance: dict[str, Any]
) -> None:
    """Saves learned-optimizer weights with the architecture needed to use them, and provenance."""
    save_tree(
        path,
        {
            "format": WEIGHTS_FORMAT,
            "version": WEIGHTS_VERSION,
            "optimizer": config_to_dict(config),
            "provenance": provenance,
            "weights": serialization.to_state_dict(weights),
        },
    )


def load_weights(path: Path) -> tuple[dict[str, Any], OptimizerConfig, dict[str, Any]]:
    """Loads (weights, optimizer config, provenance) written by `save_weights`."""
    tree = load_tree(path)
    if tree.get("format") != WEIGHTS_FORMAT or "weights" not in tree:
        raise CheckpointError(f"{path} is not a learned-optimizer weights file")
    if tree.get("version") != WEIGHTS_VERSION:
        raise CheckpointError(
            f"{path} has weights-file version {tree.get('version')}; this l2lgd reads {WEIGHTS_VERSION}"
        )
    try:
        config = optimizer_config_from_dict(tree.get("optimizer"))
    except ConfigError as error:
        raise CheckpointError(f"{path} holds an invalid optimizer config: {error}") from None
    try:
        weights = jax.tree.map(lambda leaf: np.asarray(leaf, np.float32), tree["weights"])
    except (TypeError, ValueError):
        raise CheckpointError(f"{path}: weights are not arrays of numbers") from None
    expected = jax.eval_shape(lambda key: init_learned_weights(key, config), jax.random.key(0))
    if jax.tree.structure(weights) != jax.tree.structure(expected) or any(
        leaf.shape != spec.shape
        for leaf, spec in zip(jax.tree.leaves(weights), jax.tree.leaves(expected), strict=True)
    ):
        raise CheckpointError(f"{path}: weight shapes do not match its optimizer config")
    return weights, config, tree.get("provenance", {})
