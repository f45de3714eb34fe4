"""Nothing lost, nothing silently wrong: damaged checkpoints, kills between writes, torn metrics,
and a run that never improves on its untrained weights."""

import hashlib
import json
import os
from pathlib import Path

import jax
import numpy as np
import pytest
from conftest import TINY_OVERRIDES

from l2lgd import pretrained, runs
from l2lgd.checkpoint import CHECKSUM_MAGIC, load_tree, load_weights
from l2lgd.config import Config, with_overrides
from l2lgd.errors import CheckpointError, RunDirError
from l2lgd.meta import train
from l2lgd.meta.train import meta_train
from l2lgd.plot import plot_meta_training

pytestmark = pytest.mark.usefixtures("compilation_cache")

# Validations (and training states) at iterations 0, 3, 6 and 9.
CONFIG = with_overrides(Config(), [*TINY_OVERRIDES, "meta.iterations=9"])
KILL_AT = 7  # the latest training state is then iteration 6's, the previous one iteration 3's


class Killed(Exception):
    """Stands for the process being killed in the middle of a run."""


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, compilation_cache):
    """A run folder of CONFIG trained without interruption."""
    run_dir = tmp_path_factory.mktemp("integrity") / "run"
    runs.create_run_dir(run_dir, CONFIG)
    warnings = []
    meta_train(CONFIG, run_dir, on_warning=warnings.append)
    assert warnings == []  # it learns: no warning about the untrained weights
    return run_dir


def _kill_after(iteration):
    """An `on_iteration` that stands for a kill right after `iteration`."""

    def kill(record):
        if record["iteration"] == iteration:
            raise Killed

    return kill


def _killed_run(run_dir):
    """A run of CONFIG killed after iteration KILL_AT (between two checkpoints)."""
    runs.create_run_dir(run_dir, CONFIG)
    with pytest.raises(Killed):
        meta_train(CONFIG, run_dir, on_iteration=_kill_after(KILL_AT))
    return run_dir


def _overwrite_with_random_bytes(path, count, seed):
    data = bytearray(path.read_bytes())
    offset = len(data) // 2
    data[offset : offset + count] = np.random.default_rng(seed).bytes(count)
    assert bytes(data) != path.read_bytes()
    path.write_bytes(bytes(data))


def _assert_same_run(run_dir, expected_dir):
    """Same metrics (each iteration once, in order) and bit-identical best and latest weights."""
    assert runs.read_metrics(run_dir) == runs.read_metrics(expected_dir)
    assert [r["iteration"] for r in runs.read_metrics(run_dir)] == list(range(10))
    for path in (runs.best_weights_path, runs.latest_weights_path):
        got = jax.tree.leaves(load_weights(path(run_dir))[0])
        want = jax.tree.leaves(load_weights(path(expected_dir))[0])
        for a, b in zip(got, want, strict=True):
            np.testing.assert_array_equal(a, b)


def test_each_save_keeps_the_previous_training_state(uninterrupted):
    assert load_tree(runs.training_state_path(uninterrupted))["iteration"] == 9
    assert load_tree(runs.previous_training_state_path(uninterrupted))["iteration"] == 6


def test_resume_falls_back_from_a_corrupt_training_state_and_says_so(uninterrupted, tmp_path):
    run_dir = _killed_run(tmp_path / "run")
    latest = runs.training_state_path(run_dir)
    _overwrite_with_random_bytes(latest, 200, seed=0)

    warnings = []
    with pytest.raises(Killed):  # killed again, after the resumed run saved iteration 6
        meta_train(
            CONFIG, run_dir, resume=True, on_iteration=_kill_after(7), on_warning=warnings.append
        )

    assert len(warnings) == 1
    assert warnings[0].endswith(
        "training_state.msgpack is corrupt: checksum mismatch; "
        "resumed from training_state.previous.msgpack at iteration 3"
    )
    assert str(latest) in warnings[0]
    # The damaged file did not become the fallback when the resumed run saved its next state.
    assert load_tree(latest)["iteration"] == 6
    assert load_tree(runs.previous_training_state_path(run_dir))["iteration"] == 3

    progress = meta_train(CONFIG, run_dir, resume=True, on_warning=warnings.append)
    assert len(warnings) == 1  # both states intact now: an ordinary resume
    assert progress.iteration == 9
    _assert_same_run(run_dir, uninterrupted)


def _run_killed_in(monkeypatch, run_dir: Path, function: str, when) -> None:
    """Meta-trains a fresh run that is killed as `train.<function>` is called with arguments
    for which `when(...)` holds (the call does not happen)."""
    runs.create_run_dir(run_dir, CONFIG)
    original = getattr(train, function)

    def killed(*args):
        if when(*args):
            raise Killed
        original(*args)

    monkeypatch.setattr(train, function, killed)
    with pytest.raises(Killed):
        meta_train(CONFIG, run_dir)
    monkeypatch.undo()


def test_kill_between_the_metrics_and_the_training_state_loses_nothing(
    uninterrupted, tmp_path, monkeypatch
):
    run_dir = tmp_path / "run"
    _run_killed_in(
        monkeypatch,
        run_dir,
        "save_training_state",
        lambda run, state, progress: progress.iteration == 6,
    )
    assert runs.read_metrics(run_dir)[-1]["iteration"] == 6  # the record is written already
    assert "validation_loss" in runs.read_metrics(run_dir)[-1]
    assert load_tree(runs.training_state_path(run_dir))["iteration"] == 3

    warnings = []
    meta_train(CONFIG, run_dir, resume=True, on_warning=warnings.append)
    assert warnings == []  # the latest state is intact: an ordinary resume
    _assert_same_run(run_dir, uninterrupted)


def test_kill_while_replacing_the_training_state_leaves_the_latest_in_place(
    uninterrupted, tmp_path, monkeypatch
):
    """Killed after the previous state was written, before the new latest one: a latest state
    exists at every moment (a second writer or `--force` checks for it), and resume is ordinary."""
    run_dir = tmp_path / "run"
    _run_killed_in(
        monkeypatch,
        run_dir,
        "save_tree",
        lambda path, tree: path.name == "training_state.msgpack" and tree["iteration"] == 6,
    )
    assert load_tree(runs.training_state_path(run_dir))["iteration"] == 3

    warnings = []
    meta_train(CONFIG, run_dir, resume=True, on_warning=warnings.append)
    assert warnings == []
    _assert_same_run(run_dir, uninterrupted)


def test_a_missing_latest_training_state_resumes_from_the_previous(tmp_path):
    run_dir = _killed_run(tmp_path / "run")
    runs.training_state_path(run_dir).unlink()

    warnings = []
    progress = meta_train(CONFIG, run_dir, resume=True, on_warning=warnings.append)
    assert len(warnings) == 1
    assert "checkpoint not found" in warnings[0]
    assert warnings[0].endswith("resumed from training_state.previous.msgpack at iteration 3")
    assert progress.iteration == 9


def test_resume_with_both_training_states_corrupt_names_both(tmp_path):
    run_dir = _killed_run(tmp_path / "run")
    for seed, path in enumerate(
        (runs.training_state_path(run_dir), runs.previous_training_state_path(run_dir))
    ):
        _overwrite_with_random_bytes(path, 200, seed)
    with pytest.raises(CheckpointError) as error:
        meta_train(CONFIG, run_dir, resume=True)
    message = str(error.value)
    assert "training_state.msgpack is corrupt" in message
    assert "training_state.previous.msgpack is corrupt" in message
    assert "\n" not in message


def test_random_bytes_inside_a_weights_file_are_an_error_naming_it(uninterrupted, tmp_path):
    path = tmp_path / "best.msgpack"
    path.write_bytes(runs.best_weights_path(uninterrupted).read_bytes())
    _overwrite_with_random_bytes(path, 64, seed=1)
    with pytest.raises(CheckpointError, match=f"{path} is corrupt: checksum mismatch"):
        load_weights(path)


@pytest.mark.parametrize("name", pretrained.pretrained_names())
def test_every_shipped_weights_file_carries_a_valid_checksum(name):
    data = pretrained.pretrained_path(name).read_bytes()
    assert data.startswith(CHECKSUM_MAGIC)
    digest = data[len(CHECKSUM_MAGIC) : len(CHECKSUM_MAGIC) + 32]
    assert hashlib.sha256(data[len(CHECKSUM_MAGIC) + 32 :]).digest() == digest


def _write_metrics(run_dir, lines):
    (run_dir / runs.METRICS_FILE).write_text("".join(line + "\n" for line in lines))


RECORDS = [{"iteration": i, "meta_loss": 1.0 / (i + 1)} for i in range(4)]


def test_a_torn_last_metrics_line_is_dropped(tmp_path):
    torn = json.dumps({"iteration": 4, "meta_loss": 0.2})[:-7]
    (tmp_path / runs.METRICS_FILE).write_text(
        "".join(json.dumps(r) + "\n" for r in RECORDS) + torn  # killed mid-append: no newline
    )
    assert runs.read_metrics(tmp_path) == RECORDS
    runs.truncate_metrics(tmp_path, 2)  # what a resume does: the torn line goes too
    assert (tmp_path / runs.METRICS_FILE).read_text().splitlines() == [
        json.dumps(r) for r in RECORDS[:3]
    ]


def test_a_bad_metrics_line_before_the_last_is_an_error(tmp_path):
    lines = [json.dumps(r) for r in RECORDS]
    _write_metrics(tmp_path, [lines[0], '{"iteration": 1, "meta_lo', *lines[2:]])
    with pytest.raises(RunDirError, match=rf"{runs.METRICS_FILE} line 2 is not valid JSON"):
        runs.read_metrics(tmp_path)


def test_truncate_metrics_keeps_the_old_file_when_interrupted(tmp_path, monkeypatch):
    _write_metrics(tmp_path, [json.dumps(r) for r in RECORDS])
    before = (tmp_path / runs.METRICS_FILE).read_bytes()

    def killed(source, target):
        raise Killed

    monkeypatch.setattr(os, "replace", killed)
    with pytest.raises(Killed):
        runs.truncate_metrics(tmp_path, 1)
    monkeypatch.undo()
    assert (tmp_path / runs.METRICS_FILE).read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == [runs.METRICS_FILE]  # no temp file left
    runs.truncate_metrics(tmp_path, 1)
    assert runs.read_metrics(tmp_path) == RECORDS[:2]


def test_a_run_that_never_improves_says_so_and_records_it(tiny_config, tmp_path, capsys):
    config = with_overrides(tiny_config, ["meta.learning_rate=1000"])
    run_dir = tmp_path / "run"
    runs.create_run_dir(run_dir, config)

    progress = meta_train(config, run_dir)  # warnings go to stderr by default

    assert (progress.iteration, progress.best_iteration) == (6, 0)
    records = runs.read_metrics(run_dir)
    untrained = records[0]["validation_loss"]
    assert all(r["validation_loss"] > untrained for r in records[1:] if "validation_loss" in r)
    warned = {r["iteration"]: r["warning"] for r in records if "warning" in r}
    assert list(warned) == [3, 6]  # each validation after the first, nothing in between
    assert warned[3] == (
        f"validation loss has not improved on the untrained weights ({untrained:.4g} at "
        "iteration 0) after 3 iterations; meta.learning_rate may be too high"
    )
    assert warned[6].startswith("meta-training never improved on the untrained weights")
    assert "best.msgpack holds the untrained optimizer" in warned[6]
    assert records[-1]["warning"] == warned[6]
    assert capsys.readouterr().err.splitlines() == [
        f"warning: {warned[3]}",
        f"warning: {warned[6]}",
    ]
    assert load_weights(runs.best_weights_path(run_dir))[2]["iteration"] == 0
    assert all(path.stat().st_size > 0 for path in plot_meta_training(run_dir))
