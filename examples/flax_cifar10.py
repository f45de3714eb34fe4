"""Train your own flax CNN on CIFAR-10 with the shipped CIFAR optimizer and with tuned Adam.

    python examples/flax_cifar10.py --data-dir ../shared/data --out runs/cifar_example

The model is a user's, not the paper's: two 3x3 conv layers of 32 channels with ReLU and max
pooling, a 64-unit dense layer, flax's default initialization and names. The shipped `cifar10`
optimizer has one LSTM for conv kernels ("Conv_N/kernel") and one for everything else, and
`l2lgd.load_optimizer("cifar10")` routes each leaf by its path. Adam's learning rate is tuned on
separate tuning seeds (grown while the best rate is on an edge). Writes RESULTS.md, results.json
and loss.png: the minibatch loss against steps and against wall-clock time, since a learned
update costs more than Adam's.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

import l2lgd
from l2lgd.data import ImageDataset, load_cifar10
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

    learned: str = "cifar10"
    channels: int = 32
    hidden: int = 64
    num_steps: int = 300
    batch_size: int = 64
    seeds: tuple[int, ...] = (101, 102, 103)
    tuning_seeds: tuple[int, ...] = (201, 202)
    adam_learning_rates: tuple[float, ...] = (3e-4, 1e-3, 3e-3, 1e-2)
    max_grid_growth: int = 3


class UserCNN(nn.Module):
    """A small CNN with flax's default names (Conv_0, Conv_1, Dense_0, Dense_1)."""

    channels: int
    hidden: int
    num_classes: int = 10

    @nn.compact
    def __call__(self, images: jax.Array) -> jax.Array:
        x = images.astype(jnp.float32) / 255.0
        for _ in range(2):
            x = nn.relu(nn.Conv(self.channels, (3, 3))(x))
            x = nn.max_pool(x, (2, 2), (2, 2))
        x = nn.relu(nn.Dense(self.hidden)(x.reshape(x.shape[0], -1)))
        return nn.Dense(self.num_classes)(x)


def train(
    config: ExampleConfig,
    dataset: ImageDataset,
    optimizer: optax.GradientTransformation,
    seed: int,
) -> dict[str, Any]:
    """The ordinary optax loop: minibatch loss and wall time at each step (compilation excluded)."""
    model = UserCNN(config.channels, config.hidden, dataset.num_classes)

    def loss_fn(params: Any, images: jax.Array, labels: jax.Array) -> jax.Array:
        logits = model.apply({"params": params}, images)
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

    @jax.jit
    def train_step(params, opt_state, images, labels):
        loss, grads = jax.value_and_grad(loss_fn)(params, images, labels)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    params = model.init(jax.random.key(seed), dataset.train_images[:1])["params"]
    opt_state = optimizer.init(params)
    batches = np.random.default_rng(seed)
    indices = [
        batches.integers(0, len(dataset.train_labels), config.batch_size)
        for _ in range(config.num_steps)
    ]
    # The first step compiles; it is timed apart.
    first = indices[0]
    params, opt_state, loss = train_step(
        params, opt_state, dataset.train_images[first], dataset.train_labels[first]
    )
    losses, times, start = [float(loss)], [0.0], time.perf_counter()
    for index in indices[1:]:
        params, opt_state, loss = train_step(
            params, opt_state, dataset.train_images[index], dataset.train_labels[index]
        )
        losses.append(float(loss))  # waits for the step: the times are real
        times.append(time.perf_counter() - start)
    final = float(np.mean(losses[-20:]))
    return {"losses": np.asarray(losses), "times": np.asarray(times), "final": final}


def tune_adam(config: ExampleConfig, dataset: ImageDataset) -> tuple[float, dict[float, float]]:
    """Adam's best rate by the mean final loss (last 20 minibatches) on the tuning seeds."""

    def score(lr: float) -> float:
        return mean_or_inf(
            [train(config, dataset, optax.adam(lr), s)["final"] for s in config.tuning_seeds]
        )

    return tune_on_growing_grid(score, config.adam_learning_rates, config.max_grid_growth)


def run_example(config: ExampleConfig, dataset: ImageDataset, workdir: Path) -> dict:
    """Tunes Adam, trains with both optimizers on every seed, writes the results."""
    best_lr, grid = tune_adam(config, dataset)
    optimizers = {
        f"learned ({config.learned})": l2lgd.load_optimizer(config.learned),
        f"Adam (lr {best_lr:.3g})": optax.adam(best_lr),
    }
    results = {
        label: summarize_seeds(
            [train(config, dataset, optimizer, seed) for seed in config.seeds],
            config.num_steps - 1,
        )
        for label, optimizer in optimizers.items()
    }
    summary = example_summary(config, grid, best_lr, results)
    title = (
        f"flax CNN (2 conv x {config.channels}, dense {config.hidden}) on CIFAR-10, "
        f"{config.num_steps} steps of {config.batch_size}, mean of {len(config.seeds)} seeds"
    )
    loss_header = "final loss (mean of last 20 minibatches)"
    write_example_results(workdir, summary, title, loss_header, log_loss=False)
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data-dir", help="folder with CIFAR-10's binary files (default $L2LGD_DATA_DIR)"
    )
    parser.add_argument("--learned", default="cifar10", help="pretrained name, run folder or file")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--out", type=Path, default=Path("runs/cifar_example"))
    args = parser.parse_args()
    config = ExampleConfig(learned=args.learned, num_steps=args.steps)
    run_example(config, load_cifar10("files", args.data_dir), args.out)
    print((args.out / "RESULTS.md").read_text())
    print(f"figure: {args.out / 'loss.png'}")


if __name__ == "__main__":
    main()
