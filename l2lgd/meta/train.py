"""The meta-training loop: iterate, validate on held-out problems, keep the best weights, resume exactly.

Randomness: iteration i uses fold_in(train_key, i) and validation a fixed key, so a run resumed
from its latest checkpoint repeats exactly what the uninterrupted run would have done.

Nothing lost: each validation appends its metrics record before it writes the training state, and
the training state it replaces is kept; a resume whose latest state is damaged falls back to the
one before, and truncates the metrics to the iteration it resumes from.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import serialization

from l2lgd import interrupts, runs
from l2lgd.atomic import write_atomically
from l2lgd.checkpoint import load_tree, save_tree, save_weights
from l2lgd.config import Config, MetaConfig
from l2lgd.distributed import is_primary
from l2lgd.errors import CheckpointError, DivergenceError, L2LError
from l2lgd.meta.program import training_program
from l2lgd.meta.unroll import MetaState, init_meta_state
from l2lgd.optimizers.learned import init_learned_weights
from l2lgd.seeds import INIT_STREAM, TRAIN_STREAM, stream_key


@dataclass
class TrainingProgress:
    """Where a run stands; saved in the latest checkpoint so that a resumed run continues exactly."""

    iteration: int = 0
    best_validation_loss: float = math.inf
    best_iteration: int = -1


def meta_train(
    config: Config,
    run_dir: Path,
    resume: bool = False,
    on_iteration: Callable[[dict[str, Any]], None] | None = None,
    on_warning: Callable[[str], None] | None = None,
) -> TrainingProgress:
    """Meta-trains the LSTM optimizer and writes checkpoints and metrics into `run_dir`.

    In a multi-process run every process calls this with the same arguments; only process 0
    writes, and every process reads `run_dir` to resume.

    Args:
      config: the experiment.
      run_dir: an initialized run folder (see `runs.create_run_dir`).
      resume: continue from `checkpoints/training_state.msgpack` (or, if it is damaged, the one
        before it) instead of starting afresh.
      on_iteration: called after every iteration with that iteration's metrics (progress display).
      on_warning: called (on process 0 only) with a one-line message when the run resumed from
        the previous training state, or when validation has not improved on the untrained
        weights; by default the message is printed to stderr.

    Returns:
      The final progress: iterations done, best validation loss and where it was reached.

    Raises:
      DivergenceError: a NaN or inf meta-loss; the checkpoints on disk are the last good ones.
    """
    program = training_program(config)
    train_key = stream_key(config.seed, TRAIN_STREAM)
    initial_weights = starting_weights(config)
    meta_state = init_meta_state(initial_weights, config.meta)
    progress = TrainingProgress()
    warn = (on_warning or _print_warning) if is_primary() else _ignore_warning
    # The untrained weights' validation reaches the display with the first iteration's record.
    untrained_validation: dict[str, Any] = {}
    if resume:
        meta_state, progress, fallback_note = load_training_state(run_dir, meta_state)
        if is_primary():
            if fallback_note is not None:
                warn(fallback_note)
                # The damaged file must not become the fallback when the next state is saved.
                runs.training_state_path(run_dir).unlink(missing_ok=True)
            runs.truncate_metrics(run_dir, progress.iteration)
    else:
        scores = _validate_and_save(run_dir, config, meta_state, progress, program.validate, None)
        untrained_validation = {"validation_loss": scores["validation_loss"]}

    start = time.perf_counter()
    start_iteration = progress.iteration

    def report(record: dict[str, Any]) -> None:
        nonlocal untrained_validation
        record, untrained_validation = untrained_validation | record, {}
        if on_iteration is not None:
            done = record["iteration"] - start_iteration
            eta = (
                (time.perf_counter() - start)
                / done
                * (config.meta.iterations - record["iteration"])
            )
            on_iteration(
                record | {"best_validation_loss": progress.best_validation_loss, "eta_s": eta}
            )

    # The host reads an iteration's meta-loss only once the next one is queued, so that the
    # device never waits for it; a validation reads it at once, so nothing diverged is saved.
    unread: IterationHealth | None = None
    while progress.iteration < config.meta.iterations:
        meta_state, unroll_losses = program.iterate(
            meta_state, progress.iteration, jax.random.fold_in(train_key, progress.iteration)
        )
        progress.iteration += 1
        health = IterationHealth(
            progress.iteration, *iteration_health(unroll_losses, meta_state.weights)
        )
        if unread is not None:
            record = unread.checked_record(run_dir)
            if is_primary():
                runs.append_metrics(run_dir, record)
            report(record)
        unread = health
        if progress.iteration % config.meta.validate_every == 0 or (
            progress.iteration == config.meta.iterations
        ):
            record = unread.checked_record(run_dir)
            unread = None
            record |= _validate_and_save(
                run_dir, config, meta_state, progress, program.validate, record["meta_loss"]
            )
            if "warning" in record:
                warn(record["warning"])
            report(record)
    return progress


def starting_weights(config: Config) -> Any:
    """The LSTM weights a run starts from: those `meta.init_from` names, or a fresh draw.

    Raises:
      L2LError: the named weights belong to a different optimizer architecture.
    """
    if not config.meta.init_from:
        return init_learned_weights(stream_key(config.seed, INIT_STREAM), config.optimizer)
    from l2lgd.sources import load_learned  # sources reads run folders, which import this module

    learned = load_learned(config.meta.init_from)
    if learned.config != config.optimizer:
        differing = [
            f"{name} {getattr(learned.config, name, None)!r} (config: {value!r})"
            for name, value in vars(config.optimizer).items()
            if getattr(learned.config, name, None) != value
        ] or [f"kind {learned.config.kind!r} (config: {config.optimizer.kind!r})"]
        raise L2LError(
            f"meta.init_from {config.meta.init_from!r} has a different optimizer: "
            + ", ".join(differing)
        )
    return learned.weights


class IterationHealth(NamedTuple):
    """One meta-iteration's mean meta-loss and whether its new state is finite, still on the
    device until `checked_record` reads them."""

    iteration: int
    meta_loss: jax.Array
    finite: jax.Array

    def checked_record(self, run_dir: Path) -> dict[str, Any]:
        """The iteration's metrics record; waits for the device.

        Raises:
          DivergenceError: the meta-loss or the new meta state is not finite.
        """
        loss, finite = jax.device_get((self.meta_loss, self.finite))
        loss = float(loss)
        if not (math.isfinite(loss) and finite):
            raise DivergenceError(
                f"meta-loss or LSTM weights became non-finite (meta-loss {loss}) at iteration "
                f"{self.iteration}; the last good checkpoints are in {run_dir / 'checkpoints'} "
                "(try a lower meta.learning_rate or meta.grad_clip)"
            )
        return {"iteration": self.iteration, "meta_loss": loss}


def _print_warning(message: str) -> None:
    """The default `on_warning`: one line on stderr, beside the progress display."""
    print(f"warning: {message}", file=sys.stderr, flush=True)


def _ignore_warning(message: str) -> None:
    """`on_warning` of processes other than 0: process 0 speaks for the run."""


@jax.jit
def iteration_health(unroll_losses: jax.Array, weights: Any) -> tuple[jax.Array, jax.Array]:
    """The mean meta-loss of an iteration's unrolls, and whether its new LSTM weights are finite."""
    return jnp.mean(unroll_losses), all_finite(weights)


def all_finite(tree: Any) -> jax.Array:
    """Whether every entry of every array in `tree` is finite."""
    return jnp.all(jnp.stack([jnp.isfinite(leaf).all() for leaf in jax.tree.leaves(tree)]))


def _validate_and_save(
    run_dir: Path,
    config: Config,
    meta_state: MetaState,
    progress: TrainingProgress,
    validate: Callable[[Any], dict[str, Any]],
    meta_loss: float | None,
) -> dict[str, Any]:
    """Validates the current weights, saves best (if improved) and latest, logs the metrics.

    Every process validates (it is one sharded computation); only process 0 writes. The record
    carries a "warning" when validation has not improved on the untrained weights.
    """
    scores = validate(meta_state.weights)
    validation_loss = scores["validation_loss"]
    improved = validation_loss < progress.best_validation_loss
    if improved:
        progress.best_validation_loss = validation_loss
        progress.best_iteration = progress.iteration
    record: dict[str, Any] = {"iteration": progress.iteration, **scores}
    if meta_loss is not None:
        record["meta_loss"] = meta_loss
    if progress.iteration > 0 and progress.best_iteration == 0:
        record["warning"] = no_improvement_warning(progress, config.meta)
    provenance = runs.provenance(config, progress.iteration, validation_loss)
    if not is_primary():
        return record
    with interrupts.critical():  # a Ctrl-C stops the run before these writes or after them
        if improved:
            save_weights(
                runs.best_weights_path(run_dir), meta_state.weights, config.optimizer, provenance
            )
        save_weights(
            runs.latest_weights_path(run_dir), meta_state.weights, config.optimizer, provenance
        )
        # Metrics first: killed between the two, a resumed run truncates this record and redoes
        # it; the other way round the record would be lost.
        runs.append_metrics(run_dir, record, sync=True)
        save_training_state(run_dir, meta_state, progress)
    return record


def no_improvement_warning(progress: TrainingProgress, meta: MetaConfig) -> str:
    """Says that meta-training has not beaten its starting weights (untrained, or those of
    `meta.init_from`), the usual sign of a bad step."""
    start = f"weights of {meta.init_from}" if meta.init_from else "untrained weights"
    kept = f"weights of {meta.init_from}" if meta.init_from else "untrained optimizer"
    untrained = f"the {start} ({progress.best_validation_loss:.4g} at iteration 0)"
    if progress.iteration < meta.iterations:
        return (
            f"validation loss has not improved on {untrained} after {progress.iteration} "
            "iterations; meta.learning_rate may be too high"
        )
    return (
        f"meta-training never improved on {untrained} in {progress.iteration} iterations, so "
        f"best.msgpack holds the {kept}; meta.learning_rate may be too high"
    )


def save_training_state(run_dir: Path, meta_state: MetaState, progress: TrainingProgress) -> None:
    """Everything `--resume` needs: weights, meta-optimizer state and progress.

    The state it replaces is kept as the previous one, for `--resume` to fall back on.
    """
    latest = runs.training_state_path(run_dir)
    if latest.is_file():  # copied, not moved: a latest state exists at every moment
        write_atomically(runs.previous_training_state_path(run_dir), latest.read_bytes())
    save_tree(
        latest,
        {
            "meta_state": serialization.to_state_dict(meta_state),
            "iteration": progress.iteration,
            "best_validation_loss": progress.best_validation_loss,
            "best_iteration": progress.best_iteration,
        },
    )


def read_training_state(run_dir: Path) -> tuple[dict[str, Any], Path, CheckpointError | None]:
    """The newest readable training-state tree, its file, and why the latest was not (or None).

    Raises:
      CheckpointError: neither the latest training state nor the previous one can be read.
    """
    latest, previous = runs.training_state_path(run_dir), runs.previous_training_state_path(run_dir)
    try:
        return load_tree(latest), latest, None
    except CheckpointError as latest_error:
        try:
            return load_tree(previous), previous, latest_error
        except CheckpointError as previous_error:
            raise CheckpointError(
                f"no intact training state to resume from: {latest_error}; {previous_error}"
            ) from None


def load_training_state(
    run_dir: Path, template: MetaState
) -> tuple[MetaState, TrainingProgress, str | None]:
    """Restores what `save_training_state` wrote, checked against the shapes of `template`.

    Returns:
      The meta state, the progress, and a one-line note when the latest training state was
      missing or corrupt and the previous one was restored (else None).
    """
    tree, path, latest_error = read_training_state(run_dir)
    try:
        meta_state = serialization.from_state_dict(template, tree["meta_state"])
        progress = TrainingProgress(
            int(tree["iteration"]), float(tree["best_validation_loss"]), int(tree["best_iteration"])
        )
    except (KeyError, ValueError, TypeError) as error:
        raise CheckpointError(f"{path} does not match this run's config ({error})") from None
    for restored, expected in zip(
        jax.tree.leaves(meta_state), jax.tree.leaves(template), strict=True
    ):
        if np.shape(restored) != np.shape(expected):
            raise CheckpointError(f"{path} does not match this run's config (shapes differ)")
    note = None
    if latest_error is not None:
        note = f"{latest_error}; resumed from {path.name} at iteration {progress.iteration}"
    placed = jax.tree.map(
        lambda leaf, like: jax.device_put(leaf, like.sharding), meta_state, template
    )
    return placed, progress, note
