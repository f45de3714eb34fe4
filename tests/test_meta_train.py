"""Meta-training: it learns, it resumes exactly, it stops cleanly on divergence, it logs metrics."""

import json
import math

import jax
import numpy as np
import pytest
from conftest import TINY_OVERRIDES

from l2lgd import runs
from l2lgd.checkpoint import load_tree, load_weights
from l2lgd.compare import learning_rate_grid
from l2lgd.config import Config, config_to_dict, with_overrides
from l2lgd.errors import CheckpointError, DivergenceError, L2LError
from l2lgd.evaluate import baseline_curves
from l2lgd.meta.train import meta_train
from l2lgd.meta.unroll import init_meta_state, make_meta_iteration
from l2lgd.optimizers.learned import init_learned_weights
from l2lgd.seeds import VALIDATION_STREAM, stream_key
from l2lgd.tasks import make_task

pytestmark = pytest.mark.usefixtures("compilation_cache")

# The tiny config (so its programs are compiled once for the whole suite), trained long enough to
# learn: 100 iterations of a few milliseconds each.
ITERATIONS, VALIDATE_EVERY = 100, 10
TRAINED = with_overrides(
    Config(),
    [*TINY_OVERRIDES, f"meta.iterations={ITERATIONS}", f"meta.validate_every={VALIDATE_EVERY}"],
)


class Killed(Exception):
    """Stands for the process being killed in the middle of a run."""


def _strict_json(line: str) -> dict:
    def reject(constant: str) -> None:
        raise ValueError(f"{constant} is not JSON")

    return json.loads(line, parse_constant=reject)


def _weights_leaves(path):
    return jax.tree.leaves(load_weights(path)[0])


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, compilation_cache):
    """One uninterrupted run of TRAINED: (run folder, returned progress, on_iteration records)."""
    run_dir = tmp_path_factory.mktemp("trained") / "run"
    runs.create_run_dir(run_dir, TRAINED)
    records = []
    progress = meta_train(TRAINED, run_dir, on_iteration=records.append)
    return run_dir, progress, records


def test_meta_training_beats_the_untrained_lstm_and_tuned_sgd(trained_run):
    run_dir, progress, _ = trained_run
    validation = {
        r["iteration"]: r["validation_loss"]
        for r in runs.read_metrics(run_dir)
        if "validation_loss" in r
    }
    untrained, final = validation[0], validation[ITERATIONS]
    assert final < 0.15 * untrained
    assert progress.best_validation_loss == min(validation.values())

    # SGD on the very problems validation uses, at the best rate of the grid `compare` tunes on.
    sgd = baseline_curves(
        make_task(TRAINED.task),
        "sgd",
        learning_rate_grid(TRAINED.eval),
        stream_key(TRAINED.seed, VALIDATION_STREAM),
        TRAINED.meta.num_validation_problems,
        TRAINED.meta.num_steps,
    )
    # Same problems and starting points: the untrained LSTM (zero output) never moves from them.
    np.testing.assert_allclose(sgd[:, 0].mean(axis=-1), untrained, rtol=1e-5)
    sgd_finals = sgd[:, -1].mean(axis=-1)
    best_sgd = np.min(sgd_finals[np.isfinite(sgd_finals)])
    assert final < 0.6 * best_sgd


def test_metrics_records_and_checkpoints_match_the_run(trained_run):
    run_dir, progress, callback_records = trained_run
    lines = (run_dir / runs.METRICS_FILE).read_text().splitlines()
    records = [_strict_json(line) for line in lines]

    assert [r["iteration"] for r in records] == list(range(ITERATIONS + 1))
    validated = [r["iteration"] for r in records if "validation_loss" in r]
    assert validated == list(range(0, ITERATIONS + 1, VALIDATE_EVERY))
    assert "meta_loss" not in records[0]  # iteration 0 validates the initial weights only
    for record in records[1:]:
        assert math.isfinite(record["meta_loss"]) and record["meta_loss"] > 0
    for record in records:
        if "validation_loss" in record:
            assert math.isfinite(record["validation_loss"])
    assert not any("warning" in r for r in records)  # it learns: nothing to warn about

    # on_iteration sees every trained iteration with the same numbers, plus progress fields;
    # the first also carries the untrained weights' validation loss, so the display shows it.
    assert [r["iteration"] for r in callback_records] == list(range(1, ITERATIONS + 1))
    first_validation = records[1].get("validation_loss", records[0]["validation_loss"])
    assert callback_records[0]["validation_loss"] == first_validation
    for seen, logged in zip(callback_records, records[1:], strict=True):
        assert seen["meta_loss"] == logged["meta_loss"]
    for seen, logged in zip(callback_records[1:], records[2:], strict=True):
        assert seen.get("validation_loss") == logged.get("validation_loss")
    assert callback_records[-1]["eta_s"] == 0

    best = min((r for r in records if "validation_loss" in r), key=lambda r: r["validation_loss"])
    assert (progress.iteration, progress.best_iteration) == (ITERATIONS, best["iteration"])
    _, config, best_provenance = load_weights(runs.best_weights_path(run_dir))
    assert config == TRAINED.optimizer
    assert best_provenance["iteration"] == best["iteration"]
    assert best_provenance["validation_loss"] == best["validation_loss"]
    assert best_provenance["config"] == config_to_dict(TRAINED)
    assert load_weights(runs.latest_weights_path(run_dir))[2]["iteration"] == ITERATIONS
    assert load_tree(runs.training_state_path(run_dir))["iteration"] == ITERATIONS


def test_resumed_run_ends_with_the_same_weights_and_metrics(trained_run, tmp_path):
    uninterrupted, _, _ = trained_run
    kill_at = 25  # between the checkpoints of iterations 20 and 30
    run_dir = tmp_path / "run"
    runs.create_run_dir(run_dir, TRAINED)

    def kill(record):
        if record["iteration"] == kill_at:
            raise Killed

    with pytest.raises(Killed):
        meta_train(TRAINED, run_dir, on_iteration=kill)
    assert load_tree(runs.training_state_path(run_dir))["iteration"] == 20
    assert runs.read_metrics(run_dir)[-1]["iteration"] == kill_at

    progress = meta_train(TRAINED, run_dir, resume=True)

    assert progress.iteration == ITERATIONS
    for name in ("latest.msgpack", "best.msgpack"):
        resumed = _weights_leaves(run_dir / "checkpoints" / name)
        expected = _weights_leaves(uninterrupted / "checkpoints" / name)
        for got, want in zip(resumed, expected, strict=True):
            np.testing.assert_array_equal(got, want)
    # Iterations 21..25 were redone: logged once, with the numbers the uninterrupted run logged.
    assert runs.read_metrics(run_dir) == runs.read_metrics(uninterrupted)


def test_resume_without_a_checkpoint_raises_checkpoint_error(tiny_config, tmp_path):
    run_dir = tmp_path / "run"
    runs.create_run_dir(run_dir, tiny_config)
    with pytest.raises(CheckpointError, match="not found"):
        meta_train(tiny_config, run_dir, resume=True)


def test_resume_with_another_architecture_raises_checkpoint_error(trained_run, tmp_path):
    run_dir, _, _ = trained_run
    other = with_overrides(TRAINED, ["optimizer.hidden_size=7"])
    with pytest.raises(CheckpointError, match="does not match"):
        meta_train(other, run_dir, resume=True)


def test_fine_tuning_starts_from_the_named_run_best_weights(trained_run, tmp_path):
    source, progress, _ = trained_run
    config = with_overrides(TRAINED, [f"meta.init_from={source}", "meta.iterations=1"])
    run_dir = tmp_path / "run"
    runs.create_run_dir(run_dir, config)
    meta_train(config, run_dir)
    # Same seed, so the same validation problems: iteration 0 scores the source's best weights.
    first = runs.read_metrics(run_dir)[0]
    assert first["iteration"] == 0
    assert first["validation_loss"] == pytest.approx(progress.best_validation_loss, rel=1e-6)


def test_fine_tuning_from_another_architecture_names_the_difference(trained_run, tmp_path):
    source, _, _ = trained_run
    config = with_overrides(TRAINED, [f"meta.init_from={source}", "optimizer.hidden_size=7"])
    runs.create_run_dir(tmp_path / "run", config)
    with pytest.raises(L2LError, match="different optimizer: hidden_size"):
        meta_train(config, tmp_path / "run")


# The LSTM's output is bounded, so only an absurd output scale with a large meta step overflows:
# the first Adam step gives finite losses, the next ones overflow float32.
DIVERGING = ["optimizer.output_scale=1.0e+18", "meta.learning_rate=0.5", "meta.iterations=20"]


@pytest.mark.parametrize("validate_every", [5, 1])
def test_divergence_stops_the_run_and_keeps_finite_checkpoints(
    tiny_config, tmp_path, validate_every
):
    config = with_overrides(tiny_config, [*DIVERGING, f"meta.validate_every={validate_every}"])
    run_dir = tmp_path / "run"
    runs.create_run_dir(run_dir, config)
    with pytest.raises(DivergenceError, match="became non-finite") as error:
        meta_train(config, run_dir)

    # The host reads a meta-loss one iteration late, but the error still names the first
    # non-finite iteration, right after the last one on record.
    diverged_at = runs.read_metrics(run_dir)[-1]["iteration"] + 1
    assert f"at iteration {diverged_at};" in str(error.value)
    assert diverged_at < config.meta.iterations
    for path in (runs.best_weights_path(run_dir), runs.latest_weights_path(run_dir)):
        weights, _, provenance = load_weights(path)
        assert provenance["iteration"] < diverged_at
        for leaf in jax.tree.leaves(weights):
            assert np.isfinite(leaf).all(), f"{path.name} holds non-finite weights"
    state = load_tree(runs.training_state_path(run_dir))
    for leaf in jax.tree.leaves(state["meta_state"]):
        assert np.isfinite(leaf).all(), "training_state.msgpack holds non-finite values"
    for line in (run_dir / runs.METRICS_FILE).read_text().splitlines():
        _strict_json(line)


@pytest.mark.parametrize(
    "variant",
    [
        ["optimizer.kind=lstm_gac", "optimizer.gac_cells=4"],
        ["optimizer.kind=ntm_bfgs", "optimizer.hidden_size=8"],
        ["optimizer.kind=ntm_lbfgs", "optimizer.hidden_size=8", "optimizer.ntm_window=5"],
    ],
    ids=["lstm_gac", "ntm_bfgs", "ntm_lbfgs"],
)
def test_each_variant_gives_every_weight_a_gradient_and_lowers_the_meta_loss(variant):
    config = with_overrides(
        Config(),
        [
            "optimizer.gac_cells=2",
            "meta.num_problems=8",
            "meta.num_steps=20",
            "meta.unroll=10",
            "meta.learning_rate=0.01",
            *variant,
        ],
    )
    task = make_task(config.task)
    meta_iteration = make_meta_iteration(config.optimizer, config.meta)
    state = init_meta_state(init_learned_weights(jax.random.key(0), config.optimizer), config.meta)
    first = jax.tree.map(np.array, state.weights)  # the meta-iteration donates its input
    losses = []
    for index in range(30):
        state, unroll_losses = meta_iteration(state, task, jax.random.key(100 + index % 3))
        losses.append(float(np.mean(unroll_losses)))
    moved = jax.tree.map(lambda a, b: float(np.abs(a - b).max()), state.weights, first)
    assert min(jax.tree.leaves(moved)) > 0
    assert np.mean(losses[-3:]) < 0.8 * np.mean(losses[:3])
