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
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from l2lgd.data import ImageDataset, load_mnist
from l2lgd.torch import LearnedOptimizer
from l2lgd.user_loops import mean_or_inf, plot_loss_by_step_and_time, tune_on_growing_grid


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
    return {"losses": np.asarray(losses), "times": np.asarray(times), "train_loss": final}


def tune_adam(config: ExampleConfig, dataset: ImageDataset) -> tuple[float, dict[float, float]]:
    """Adam's best learning rate by the mean final training loss on the tuning seeds."""

    def score(lr: float) -> float:
        return mean_or_inf(
            [
                train(config, dataset, lambda m: torch.optim.Adam(m.parameters(), lr=lr), s)[
                    "train_loss"
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
    results = {}
    for label, make_optimizer in optimizers.items():
        runs = [train(config, dataset, make_optimizer, seed) for seed in config.seeds]
        finals = [r["train_loss"] for r in runs]
        results[label] = {
            "mean_curve": np.mean([r["losses"] for r in runs], axis=0).tolist(),
            "mean_times": np.mean([r["times"] for r in runs], axis=0).tolist(),
            "final_train_losses": finals,
            "train_loss": float(np.mean(finals)),
            "ms_per_step": 1000
            * float(np.median([r["times"][-1] for r in runs]))
            / config.num_steps,
        }
    summary = {
        "config": asdict(config),
        "adam_grid": {str(lr): loss for lr, loss in grid.items()},
        "adam_best_is_interior": min(grid) < best_lr < max(grid),
        "results": results,
    }
    write_results(workdir, summary)
    return summary


def write_results(workdir: Path, summary: dict) -> None:
    """results.json, a Markdown table and the loss figure (against steps and wall time)."""
    config = summary["config"]
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "results.json").write_text(json.dumps(summary, indent=1))
    rows = [
        f"| {label} | {r['train_loss']:.4g} | {r['ms_per_step']:.2f} |"
        for label, r in summary["results"].items()
    ]
    title = (
        f"torch MLP (784-{config['hidden_size']}-10, sigmoid, {config['init']} init) on MNIST, "
        f"{config['num_steps']} steps, mean of {len(config['seeds'])} seeds"
    )
    (workdir / "RESULTS.md").write_text(
        f"# {title}\n\n| optimizer | final train loss | ms per step |\n|---|---|---|\n"
        + "\n".join(rows)
        + f"\n\nAdam's grid (mean final train loss on tuning seeds {config['tuning_seeds']}): "
        + ", ".join(f"{lr}: {loss:.4g}" for lr, loss in summary["adam_grid"].items())
        + f"; best rate interior: {summary['adam_best_is_interior']}\n"
    )
    plot_loss_by_step_and_time(summary["results"], title, workdir / "loss.png", log_loss=True)


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
