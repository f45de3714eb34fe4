"""Styled images (the paper's Figure 9): content, style and what each optimizer made of them.

Every optimizer starts from the same content images (problems drawn from one key), runs the
same number of steps, and its final images are shown side by side with the content and style.
"""

from __future__ import annotations

import json
from pathlib import Path

import jax
import numpy as np
import optax

from l2lgd.config import Config
from l2lgd.errors import L2LError
from l2lgd.evaluate import FixedOptimizer, evaluation_run
from l2lgd.outputs import claimed_output_folder
from l2lgd.rollout import sampled_start
from l2lgd.seeds import TEST_STREAM, stream_key
from l2lgd.specs import labelled_transformations
from l2lgd.tasks import StyleTransferTask, make_task

FIGURE_FILE = "stylized.png"
RESULTS_FILE = "stylized.json"


def stylize(
    task: StyleTransferTask,
    optimizers: dict[str, optax.GradientTransformation],
    key: jax.Array,
    num_problems: int,
    num_steps: int,
) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Runs every optimizer for `num_steps` steps on the same `num_problems` content images.

    Args:
      task: the Neural Art task.
      optimizers: label -> transformation for one problem (the rollout treats each content image
        alone).
      key: the problems (content images), as in `l2lgd.rollout.optimize_sampled_problems`.
      num_problems: how many content images.
      num_steps: optimizer steps.

    Returns:
      The content images (n, S, S, 3), each optimizer's final images (n, S, S, 3), and each
      optimizer's final losses (n,).
    """
    params, _, _ = sampled_start(task, key, num_problems)
    contents, images, losses = np.asarray(params), {}, {}
    for label, optimizer in optimizers.items():
        run = evaluation_run(task, FixedOptimizer(optimizer), None, key, num_problems, num_steps)
        images[label], losses[label] = np.asarray(run.final_params), np.asarray(run.curves[-1])
    return contents, images, losses


def write_stylized(
    out_dir: Path,
    task: StyleTransferTask,
    contents: np.ndarray,
    images: dict[str, np.ndarray],
    losses: dict[str, np.ndarray],
    title: str,
) -> Path:
    """Writes the figure (one row per content image: content | style | each result) and the
    final losses as JSON; returns the figure's path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    columns = ["content", "style", *images]
    rows = len(contents)
    figure, axes = plt.subplots(rows, len(columns), figsize=(2.2 * len(columns), 2.3 * rows + 0.6))
    axes = np.asarray(axes).reshape(rows, len(columns))
    style = np.asarray(task.style.image)
    for row in range(rows):
        panels = [contents[row], style, *(images[label][row] for label in images)]
        for column, (name, panel) in enumerate(zip(columns, panels, strict=True)):
            axis = axes[row, column]
            axis.imshow(np.clip(panel, 0.0, 1.0) if panel.dtype != np.uint8 else panel)
            axis.set_xticks([])
            axis.set_yticks([])
            if name in losses:
                axis.set_title(f"{name}\nloss {losses[name][row]:.3g}", fontsize=7)
            elif row == 0:
                axis.set_title(name, fontsize=8)
    figure.suptitle(title, fontsize=8)
    figure.tight_layout()
    path = out_dir / FIGURE_FILE
    figure.savefig(path, dpi=130)
    plt.close(figure)
    record = {
        "title": title,
        "final_losses": {label: values.tolist() for label, values in losses.items()},
    }
    (out_dir / RESULTS_FILE).write_text(json.dumps(record, indent=1))
    return path


def stylize_into(
    config: Config, specs: list[str], count: int, out_dir: Path, force: bool = False
) -> tuple[Path, dict[str, np.ndarray]]:
    """`l2l stylize`: each optimizer's styled images of `count` test content images, written as
    a figure and stylized.json into `out_dir` (claimed before any work).

    Returns:
      The figure's path and each optimizer's final losses (count,).
    """
    if count < 1:
        raise L2LError(f"--count must be at least 1, got {count}")
    if config.task.name != "style":
        raise L2LError(f"stylize needs the style task, not {config.task.name}")
    transformations = labelled_transformations(specs)
    with claimed_output_folder(out_dir, force) as folder:
        task = make_task(config.task)
        key = stream_key(config.eval.seed, TEST_STREAM)
        steps = config.eval.num_steps
        contents, images, losses = stylize(task, transformations, key, count, steps)
        size = config.task.image_size
        title = (
            f"{size}x{size}, style {config.task.style_image}, {steps} steps, "
            f"test seed {config.eval.seed}; {task.vgg.source}"
        )
        with folder.replacing():
            return write_stylized(out_dir, task, contents, images, losses, title), losses
