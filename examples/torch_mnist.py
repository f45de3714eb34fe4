"""Train a PyTorch MLP on MNIST with the learned optimizer and with tuned torch.optim.Adam.

    pip install -e '.[torch]'
    python examples/torch_mnist.py --data-dir ../shared/data --out runs/torch_example

The learned optimizer is `l2lgd.torch.LearnedOptimizer(model.parameters(), "mnist")`: the shipped
MNIST optimizer's weights, computing what the JAX transformation computes. Adam's learning rate
is tuned on separate tuning seeds (by the mean final training loss; the grid grows while the best
rate is on its edge), then both run on the evaluation seeds. Writes RESULTS.md, results.json and
loss.png (mean minibatch loss per step, and against wall-clock time).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from l2lgd.data import ImageDataset, load_mnist
from l2lgd.torch import LearnedOptimizer
from l2lgd.user_loops import (
    example_summary,
    mean_or_inf,
    summarize_seeds,
    tune_on_growing_grid,
    write_example_results,
)


@dataclass(frozen=True)
class ExampleConfig:
    """What to train, for how long, on which seeds, and Adam's starting grid."""

    learned: str = "mnist"
    hidden_size: int = 20
    init: str = "small"
    num_steps: int = 100
    batch_size: int = 128
    seeds: tuple[int, ...] = (101, 102, 103, 104, 105)
    tuning_seeds: tuple[int, ...] = (201, 202, 203)
    adam_learning_rates: tuple[float, ...] = (1e-3, 3e-3, 1e-2, 3e-2, 1e-1)
    max_grid_growth: int = 4


# small: weights and biases ~ N(0, 0.01^2), as the shipped MNIST optimizer was meta-trained;
# torch: PyTorch's default nn.Linear initialization.
INITS = ("small", "torch")


def make_model(config: ExampleConfig, num_inputs: int, num_classes: int, seed: int) -> nn.Module:
    """A user's model: one sigmoid hidden layer, logits out."""
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Flatten(),
        nn.Linear(num_inputs, config.hidden_size),
        nn.Sigmoid(),
        nn.Linear(config.hidden_size, num_classes),
    )
    if config.init == "small":
        for param in model.parameters():
            nn.init.normal_(param, std=0.01)
    return model


def train(
    config: ExampleConfig,
    dataset: ImageDataset,
    make_optimizer: Callable[[nn.Module], torch.optim.Optimizer],
    seed: int,
) -> dict[str, np.ndarray | float]:
    """The ordinary torch loop: minibatch loss and wall time before each step, final train loss."""
    flat = dataset.train_images.reshape(len(dataset.train_images), -1)
    images = torch.tensor(flat, dtype=torch.float32) / 255.0
    labels = torch.from_numpy(dataset.train_labels.astype(np.int64))
    model = make_model(config, images.shape[1], dataset.num_classes, seed)
    optimizer = make_optimizer(model)
    batches = np.random.default_rng(seed)
    losses, times, start = [], [], time.perf_counter()
    for _ in range(config.num_steps):
        index = torch.from_numpy(batches.integers(0, len(labels), config.batch_size))
        loss = nn.functional.cross_entropy(model(images[index]), labels[index])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        times.append(time.perf_counter() - start)
    with torch.no_grad():
        final = nn.functional.cross_entropy(model(images), labels).item()
    return {"losses": np.asarray(losses), "times": np.asarray(times), "final": final}


def tune_adam(config: ExampleConfig, dataset: ImageDataset) -> tuple[float, dict[float, float]]:
    """Adam's best learning rate by the mean final training loss on the tuning seeds."""

    def score(lr: float) -> float:
        return mean_or_inf(
            [
                train(config, dataset, lambda m: torch.optim.Adam(m.parameters(), lr=lr), s)[
                    "final"
                ]
                for s in config.tuning_seeds
            ]
        )

    return tune_on_growing_grid(score, config.adam_learning_rates, config.max_grid_growth)


def run_example(config: ExampleConfig, dataset: ImageDataset, workdir: Path) -> dict:
    """Tunes Adam, trains with both optimizers on every seed, writes the results."""
    best_lr, grid = tune_adam(config, dataset)
    optimizers = {
        f"learned ({config.learned})": lambda model: LearnedOptimizer(
            model.parameters(), config.learned
        ),
        f"Adam (lr {best_lr:.3g})": lambda model: torch.optim.Adam(model.parameters(), lr=best_lr),
    }
    results = {
        label: summarize_seeds(
            [train(config, dataset, make_optimizer, seed) for seed in config.seeds],
            config.num_steps,
        )
        for label, make_optimizer in optimizers.items()
    }
    summary = example_summary(config, grid, best_lr, results)
    title = (
        f"torch MLP (784-{config.hidden_size}-10, sigmoid, {config.init} init) on MNIST, "
        f"{config.num_steps} steps, mean of {len(config.seeds)} seeds"
    )
    write_example_results(workdir, summary, title, "final train loss", log_loss=True)
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data-dir", help="folder with the MNIST IDX files (default $L2LGD_DATA_DIR)"
    )
    parser.add_argument("--learned", default="mnist", help="pretrained name, run folder or file")
    parser.add_argument("--init", choices=INITS, default="small")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--out", type=Path, default=Path("runs/torch_example"))
    args = parser.parse_args()
    config = ExampleConfig(learned=args.learned, init=args.init, num_steps=args.steps)
    run_example(config, load_mnist("files", args.data_dir), args.out)
    print((args.out / "RESULTS.md").read_text())
    print(f"figure: {args.out / 'loss.png'}")


if __name__ == "__main__":
    main()
