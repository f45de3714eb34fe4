"""Checkpoint files: round trips, atomic writes, checksums, and a CheckpointError for every
unreadable file."""

import dataclasses
import hashlib
import os
from pathlib import Path

import jax
import numpy as np
import pytest
from flax import serialization

from l2lgd.checkpoint import (
    CHECKSUM_MAGIC,
    WEIGHTS_FORMAT,
    load_tree,
    load_weights,
    save_tree,
    save_weights,
)
from l2lgd.config import LSTMConfig, config_to_dict
from l2lgd.errors import CheckpointError
from l2lgd.optimizers.learned import init_learned_weights


def _tree() -> dict:
    return {
        "weights": {
            "kernel": jax.numpy.arange(12, dtype=jax.numpy.float32).reshape(3, 4),
            "bias": np.array([-1.5, 0.0, 2.5], np.float32),
        },
        "moments": {"count": np.array(7, np.int32), "ints": np.arange(4, dtype=np.int64)},
        "iteration": 41,
        "best_validation_loss": 0.125,
        "name": "quadratic",
        "nested": {"deeper": {"label": "LSTM (run)", "value": -3}},
    }


def _assert_trees_equal(restored: dict, expected: dict) -> None:
    assert jax.tree.structure(restored) == jax.tree.structure(expected)
    for got, want in zip(jax.tree.leaves(restored), jax.tree.leaves(expected), strict=True):
        if isinstance(want, (np.ndarray, jax.Array)):
            assert np.asarray(got).dtype == np.asarray(want).dtype
            np.testing.assert_array_equal(got, np.asarray(want))
        else:
            assert type(got) is type(want)
            assert got == want


def _leftover_temp_files(folder: Path) -> list[str]:
    return [path.name for path in folder.iterdir() if path.name.endswith(".tmp")]


def test_save_tree_load_tree_round_trip(tmp_path):
    path = tmp_path / "sub" / "tree.msgpack"  # the parent folder is created on demand
    save_tree(path, _tree())
    _assert_trees_equal(load_tree(path), _tree())


def test_save_tree_leaves_only_the_target_file(tmp_path):
    path = tmp_path / "tree.msgpack"
    save_tree(path, _tree())
    save_tree(path, {**_tree(), "iteration": 42})  # overwriting goes through a temp file too
    assert [p.name for p in tmp_path.iterdir()] == ["tree.msgpack"]
    assert load_tree(path)["iteration"] == 42


def test_failed_write_keeps_the_old_file_and_no_temp_file(tmp_path, monkeypatch):
    path = tmp_path / "tree.msgpack"
    save_tree(path, _tree())
    old_bytes = path.read_bytes()

    def broken_fsync(fd):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="disk full"):
        save_tree(path, {**_tree(), "iteration": 99})
    assert path.read_bytes() == old_bytes
    assert _leftover_temp_files(tmp_path) == []
    assert load_tree(path)["iteration"] == 41


def _truncated_checkpoint(path: Path) -> bytes:
    save_tree(path, _tree())
    data = path.read_bytes()
    return data[: len(data) // 2]


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"\x05",  # a valid msgpack integer, not a mapping
        b"\x93\x01\x02\x03",  # a valid msgpack list
        b"\xc1",  # a byte msgpack never uses
        b"not a checkpoint at all\n",
        np.random.default_rng(0).bytes(64),
        np.random.default_rng(1).bytes(4096),
        "truncated",
    ],
    ids=[
        "empty",
        "int",
        "list",
        "reserved-byte",
        "text",
        "garbage-64",
        "garbage-4096",
        "truncated",
    ],
)
def test_unreadable_files_raise_checkpoint_error(tmp_path, content):
    path = tmp_path / "bad.msgpack"
    if content == "truncated":
        content = _truncated_checkpoint(tmp_path / "good.msgpack")
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match="bad.msgpack"):
        load_tree(path)
    with pytest.raises(CheckpointError, match="bad.msgpack"):
        load_weights(path)


def test_missing_file_raises_checkpoint_error(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_tree(tmp_path / "missing.msgpack")
    with pytest.raises(CheckpointError, match="not found"):
        load_weights(tmp_path / "missing.msgpack")
    with pytest.raises(CheckpointError, match="not found"):
        load_tree(tmp_path)  # a folder is not a checkpoint either


SMALL_LSTM = LSTMConfig(hidden_size=5, num_layers=2, preprocessing="log_sign", output_scale=0.1)


def test_save_weights_load_weights_round_trip(tmp_path):
    weights = init_learned_weights(jax.random.key(3), SMALL_LSTM)
    provenance = {"iteration": 12, "validation_loss": 0.5, "code_version": "0.1.0+gabc1234"}
    path = tmp_path / "best.msgpack"
    save_weights(path, weights, SMALL_LSTM, provenance)

    restored, config, restored_provenance = load_weights(path)
    assert config == SMALL_LSTM
    assert restored_provenance == provenance
    assert jax.tree.structure(restored) == jax.tree.structure(weights)
    for got, want in zip(jax.tree.leaves(restored), jax.tree.leaves(weights), strict=True):
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got, np.asarray(want))


def test_weights_from_another_format_raise_checkpoint_error(tmp_path):
    weights = init_learned_weights(jax.random.key(0), SMALL_LSTM)
    state_dict = {"weights": weights, "optimizer": config_to_dict(SMALL_LSTM)}
    for name, tree in [
        ("no-format", state_dict),
        ("other-format", {**state_dict, "format": "some-other-tool"}),
        ("no-weights", {"format": WEIGHTS_FORMAT, "optimizer": config_to_dict(SMALL_LSTM)}),
        ("plain-tree", _tree()),
    ]:
        path = tmp_path / f"{name}.msgpack"
        save_tree(path, tree)
        with pytest.raises(CheckpointError, match="not a learned-optimizer weights file"):
            load_weights(path)


@pytest.mark.parametrize(
    "stored_config",
    [
        dataclasses.replace(SMALL_LSTM, hidden_size=6),  # every LSTM matrix has another shape
        dataclasses.replace(SMALL_LSTM, num_layers=3),  # another tree structure
        dataclasses.replace(SMALL_LSTM, preprocessing="none"),  # one input feature, not two
    ],
    ids=["hidden-size", "num-layers", "preprocessing"],
)
def test_weights_not_matching_their_config_raise_checkpoint_error(tmp_path, stored_config):
    weights = init_learned_weights(jax.random.key(0), SMALL_LSTM)
    path = tmp_path / "mismatch.msgpack"
    save_weights(path, weights, stored_config, provenance={})
    with pytest.raises(CheckpointError, match="do not match"):
        load_weights(path)


def test_invalid_stored_optimizer_config_raises_checkpoint_error(tmp_path):
    weights = init_learned_weights(jax.random.key(0), SMALL_LSTM)
    path = tmp_path / "bad-config.msgpack"
    save_weights(path, weights, dataclasses.replace(SMALL_LSTM, hidden_size=0), provenance={})
    with pytest.raises(CheckpointError, match="invalid optimizer config"):
        load_weights(path)


@pytest.mark.parametrize(
    "broken",
    [
        {"optimizer": None},  # the section is missing
        {"weights": "not weights"},
        {"weights": {"lstm_0": "not weights"}},
    ],
    ids=["no-optimizer-section", "weights-a-string", "weight-leaf-a-string"],
)
def test_weights_file_with_malformed_contents_raises_checkpoint_error(tmp_path, broken):
    weights = init_learned_weights(jax.random.key(0), SMALL_LSTM)
    tree = {
        "format": WEIGHTS_FORMAT,
        "version": 1,
        "optimizer": config_to_dict(SMALL_LSTM),
        "provenance": {},
        "weights": weights,
    }
    tree = {key: value for key, value in {**tree, **broken}.items() if value is not None}
    path = tmp_path / "malformed.msgpack"
    save_tree(path, tree)
    with pytest.raises(CheckpointError, match="malformed.msgpack"):
        load_weights(path)


HEADER_SIZE = len(CHECKSUM_MAGIC) + 32  # the magic line, then a sha256 digest


def test_saved_file_is_the_checksum_header_then_the_msgpack_payload(tmp_path):
    path = tmp_path / "tree.msgpack"
    save_tree(path, _tree())
    data = path.read_bytes()
    payload = data[HEADER_SIZE:]
    assert data[: len(CHECKSUM_MAGIC)] == b"L2LGD-SHA256\n"
    assert data[len(CHECKSUM_MAGIC) : HEADER_SIZE] == hashlib.sha256(payload).digest()
    _assert_trees_equal(serialization.msgpack_restore(payload), _tree())


def _saved_weights(path: Path) -> None:
    weights = init_learned_weights(jax.random.key(0), SMALL_LSTM)
    save_weights(path, weights, SMALL_LSTM, provenance={"iteration": 3})


@pytest.mark.parametrize("where", ["digest", "payload-start", "payload-middle", "payload-end"])
def test_random_bytes_inside_a_weights_file_fail_the_checksum(tmp_path, where):
    path = tmp_path / "weights.msgpack"
    _saved_weights(path)
    data = bytearray(path.read_bytes())
    offset = {
        "digest": len(CHECKSUM_MAGIC),
        "payload-start": HEADER_SIZE,
        "payload-middle": len(data) // 2,
        "payload-end": len(data) - 64,
    }[where]
    data[offset : offset + 64] = np.random.default_rng(offset).bytes(64)
    assert bytes(data) != path.read_bytes()
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"weights\.msgpack is corrupt: checksum mismatch"):
        load_weights(path)


def test_one_flipped_bit_fails_the_checksum(tmp_path):
    """A flip that leaves valid msgpack (here inside a float) would load as wrong weights."""
    path = tmp_path / "weights.msgpack"
    _saved_weights(path)
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x01  # the mantissa of the last stored float32
    serialization.msgpack_restore(bytes(data[HEADER_SIZE:]))  # without the digest: no error
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="checksum mismatch"):
        load_weights(path)
    data[-3] ^= 0x01
    path.write_bytes(bytes(data))
    assert load_weights(path)[2] == {"iteration": 3}


@pytest.mark.parametrize("extra", [b"\x00", b"\x05", b"trailing garbage"])
@pytest.mark.parametrize("legacy", [False, True], ids=["checksummed", "legacy"])
def test_bytes_after_the_payload_raise_checkpoint_error(tmp_path, extra, legacy):
    path = tmp_path / "extra.msgpack"
    save_tree(path, _tree())
    data = path.read_bytes()[HEADER_SIZE:] if legacy else path.read_bytes()
    path.write_bytes(data + extra)
    with pytest.raises(CheckpointError, match="extra.msgpack"):
        load_tree(path)


def test_legacy_files_without_a_checksum_still_load(tmp_path):
    """Files written before checksums existed are the bare msgpack payload."""
    weights = init_learned_weights(jax.random.key(1), SMALL_LSTM)
    tree = {
        "format": WEIGHTS_FORMAT,
        "version": 1,
        "optimizer": config_to_dict(SMALL_LSTM),
        "provenance": {"iteration": 5},
        "weights": serialization.to_state_dict(jax.tree.map(np.asarray, weights)),
    }
    path = tmp_path / "legacy.msgpack"
    path.write_bytes(serialization.msgpack_serialize(tree))
    restored, config, provenance = load_weights(path)
    assert (config, provenance) == (SMALL_LSTM, {"iteration": 5})
    for got, want in zip(jax.tree.leaves(restored), jax.tree.leaves(weights), strict=True):
        np.testing.assert_array_equal(got, np.asarray(want))
