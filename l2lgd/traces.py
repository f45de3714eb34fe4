"""Update traces (the paper's Figures 10-13): the updates each optimizer proposes for a few
coordinates of one problem, step by step over one run.

Every optimizer starts from the same problem and initial parameters (drawn from one key), so
the traces differ only by the optimizer and the path it takes.
"""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.flatten_util import ravel_pytree

from l2lgd.atomic import write_atomically
from l2lgd.config import Config
from l2lgd.errors import L2LError
from l2lgd.outputs import claimed_output_folder
from l2lgd.rollout import sampled_start
from l2lgd.seeds import TEST_STREAM, stream_key
from l2lgd.specs import labelled_transformations
from l2lgd.tasks import Task, make_task, sample_batch

TRACES_FILE = "traces.json"


def update_traces(
    task: Task,
    optimizer: optax.GradientTransformation,
    key: jax.Array,
    num_steps: int,
    coordinates: np.ndarray,
) -> np.ndarray:
    """The updates `optimizer` adds to `coordinates` of one problem's flat parameter vector.

    Args:
      task: the problem family; one problem and its initialization are drawn from `key`.
      optimizer: any optax transformation (its updates are added to the parameters).
      key: the problem, the initialization and the minibatches.
      num_steps: steps of the run.
      coordinates: indices into the problem's flattened parameters (`ravel_pytree` order).

    Returns:
      Array (num_steps, len(coordinates)): row t is the update of step t.
    """
    params, problems, run_key = sampled_start(task, key, 1)
    params, problem = jax.tree.map(lambda leaf: leaf[0], (params, problems))
    return np.asarray(traced_run(task, optimizer, params, problem, run_key, num_steps))[
        :, np.asarray(coordinates)
    ]


@partial(jax.jit, static_argnames=("optimizer", "num_steps"))
def traced_run(
    task: Task,
    optimizer: optax.GradientTransformation,
    params: Any,
    problem: Any,
    key: jax.Array,
    num_steps: int,
) -> jax.Array:
    """Every step's flat update vector, (num_steps, parameters), in one scan: compiled once per
    optimizer and shape (a run records each update, which the evaluation program does not)."""

    def step(carry: tuple[Any, Any], index: jax.Array) -> tuple[tuple[Any, Any], jax.Array]:
        params, opt_state = carry
        grads = jax.grad(task.loss)(params, problem, jax.random.fold_in(key, index))
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), ravel_pytree(updates)[0]

    carry = (params, optimizer.init(params))
    return jax.lax.scan(step, carry, jnp.arange(num_steps))[1]


def chosen_coordinates(task: Task, count: int, key: jax.Array) -> np.ndarray:
    """`count` distinct coordinates of the task's flat parameter vector, drawn from `key`."""
    shapes = jax.eval_shape(lambda key: sample_batch(task, key, 1)[0], jax.random.key(0))
    size = sum(leaf.size for leaf in jax.tree.leaves(shapes))
    if not 1 <= count <= size:
        raise ValueError(f"can trace 1 to {size} coordinates of this task, not {count}")
    return np.sort(np.asarray(jax.random.choice(key, size, (count,), replace=False)))


def plot_update_traces(
    traces: dict[str, np.ndarray], coordinates: np.ndarray, path: Path, title: str
) -> Path:
    """One panel per coordinate, one line per optimizer: its update at every step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = min(len(coordinates), 4)
    rows = -(-len(coordinates) // columns)
    figure, axes = plt.subplots(
        rows, columns, figsize=(3.2 * columns, 2.4 * rows), squeeze=False, sharex=True
    )
    for panel, (axis, coordinate) in enumerate(zip(axes.flat, coordinates, strict=False)):
        for label, trace in traces.items():
            axis.plot(trace[:, panel], label=label, linewidth=1)
        axis.set_title(f"coordinate {coordinate}", fontsize=9)
        axis.axhline(0.0, color="grey", linewidth=0.5)
    for axis in list(axes.flat)[len(coordinates) :]:
        axis.set_visible(False)
    for axis in axes[-1]:
        axis.set_xlabel("step")
    axes[0][0].set_ylabel("update")
    axes[0][0].legend(fontsize=7)
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def trace_into(
    config: Config, specs: list[str], num_coordinates: int, out_dir: Path, force: bool = False
) -> Path:
    """`l2l trace`: each optimizer's updates of a few coordinates on one test problem, written
    as traces.json and a figure into `out_dir` (claimed before any work); returns the figure."""
    transformations = labelled_transformations(specs)
    with claimed_output_folder(out_dir, force) as folder:
        task = make_task(config.task)
        key = stream_key(config.eval.seed, TEST_STREAM)
        try:
            chosen = chosen_coordinates(task, num_coordinates, jax.random.fold_in(key, 1))
        except ValueError as error:
            raise L2LError(str(error)) from None
        traces = {
            label: update_traces(task, transformation, key, config.eval.num_steps, chosen)
            for label, transformation in transformations.items()
        }
        record = {
            "task": config.task.name,
            "test_seed": config.eval.seed,
            "coordinates": chosen.tolist(),
            "updates": {label: trace.tolist() for label, trace in traces.items()},
        }
        title = f"updates on one {config.task.name} test problem (test seed {config.eval.seed})"
        with folder.replacing():
            write_atomically(out_dir / TRACES_FILE, json.dumps(record).encode())
            return plot_update_traces(traces, chosen, out_dir / "traces.png", title)
