"""Train your own flax model on MNIST with a learned optimizer and with Adam, in a plain optax loop.

    python examples/flax_mnist.py --data-dir ../shared/data --out runs/example

The learned optimizer is one line, `l2lgd.load_optimizer("mnist")` (a shipped optimizer; a run
folder or weights file works too); from there on it is an ordinary `optax.GradientTransformation`.
Adam's learning rate is tuned on a small grid by the final training loss, as the paper tunes its
baselines. Writes RESULTS.md, results.json and loss.png (mean training loss per step over seeds).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

import l2lgd
from l2lgd.data import ImageDataset, load_mnist


@dataclass(frozen=True)
class ExampleConfig:
    """What to train, for how long, and against which Adam learning rates."""

    learned: str = "mnist"
    hidden_sizes: tuple[int, ...] = (20,)
    init: str = "small"
    num_steps: int = 100
    batch_size: int = 128
    seeds: tuple[int, ...] = (101, 102, 103, 104, 105)
    adam_learning_rates: tuple[float, ...] = (1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1)


# small: weights and biases ~ N(0, 0.01^2), the initialization the shipped MNIST optimizer was
# meta-trained with; flax: flax's defaults (LeCun-normal kernels, zero biases).
INITS = ("small", "flax")


class Classifier(nn.Module):
    """A user's model: a sigmoid MLP, logits out."""

    hidden_sizes: tuple[int, ...]
    num_classes: int = 10
    init_scheme: str = "small"  # not `init`, which would hide nn.Module.init

    @nn.compact
    def __call__(self, images: jax.Array) -> jax.Array:
        if self.init_scheme == "small":
            dense = partial(nn.Dense, kernel_init=nn.initializers.normal(0.01))
            dense = partial(dense, bias_init=nn.initializers.normal(0.01))
        else:
            dense = nn.Dense
        hidden = images.reshape(images.shape[0], -1).astype(jnp.float32) / 255.0
        for size in self.hidden_sizes:
            hidden = nn.sigmoid(dense(size)(hidden))
        return dense(self.num_classes)(hidden)


def cross_entropy(model: nn.Module, params: Any, images: jax.Array, labels: jax.Array) -> jax.Array:
    logits = model.apply({"params": params}, images)
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def train(
    model: nn.Module,
    optimizer: optax.GradientTransformation,
    dataset: ImageDataset,
    config: ExampleConfig,
    seed: int,
) -> tuple[np.ndarray, Any]:
    """The ordinary optax loop: returns the minibatch loss before each step, and the final params."""

    @jax.jit
    def train_step(params, opt_state, images, labels):
        loss, grads = jax.value_and_grad(lambda p: cross_entropy(model, p, images, labels))(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    key = jax.random.key(seed)
    params = model.init(key, jnp.zeros((1, *dataset.train_images.shape[1:])))["params"]
    opt_state = optimizer.init(params)
    batches = np.random.default_rng(seed)
    losses = []
    for _ in range(config.num_steps):
        index = batches.integers(0, len(dataset.train_labels), config.batch_size)
        params, opt_state, loss = train_step(
            params, opt_state, dataset.train_images[index], dataset.train_labels[index]
        )
        losses.append(float(loss))
    return np.asarray(losses), params


def final_metrics(model: nn.Module, params: Any, dataset: ImageDataset) -> dict[str, float]:
    """Loss on the whole training split, and loss and accuracy on the test split."""
    test_logits = model.apply({"params": params}, dataset.test_images)
    return {
        "train_loss": float(
            cross_entropy(model, params, dataset.train_images, dataset.train_labels)
        ),
        "test_loss": float(cross_entropy(model, params, dataset.test_images, dataset.test_labels)),
        "test_accuracy": float(np.mean(np.argmax(test_logits, -1) == dataset.test_labels)),
    }


def run_optimizer(
    model: nn.Module, optimizer: optax.GradientTransformation, dataset: ImageDataset, config
) -> dict[str, Any]:
    """One optimizer on every seed: per-step mean loss, and mean final metrics."""
    runs = [train(model, optimizer, dataset, config, seed) for seed in config.seeds]
    curves = np.stack([losses for losses, _ in runs])
    metrics = [final_metrics(model, params, dataset) for _, params in runs]
    return {
        "mean_curve": curves.mean(axis=0).tolist(),
        **{name: float(np.mean([m[name] for m in metrics])) for name in metrics[0]},
    }


def train_and_evaluate(config: ExampleConfig, dataset: ImageDataset, workdir: Path) -> dict:
    """Trains the model with the learned optimizer and with tuned Adam; writes the results."""
    model = Classifier(config.hidden_sizes, dataset.num_classes, config.init)
    results = {
        "learned": run_optimizer(model, l2lgd.load_optimizer(config.learned), dataset, config)
    }
    adam = {
        lr: run_optimizer(model, optax.adam(lr), dataset, config)
        for lr in config.adam_learning_rates
    }
    best_lr = min(adam, key=lambda lr: adam[lr]["train_loss"])
    results["adam"] = {"learning_rate": best_lr, **adam[best_lr]}
    results["adam_grid"] = {str(lr): adam[lr]["train_loss"] for lr in adam}
    write_results(workdir, config, results)
    return results


def write_results(workdir: Path, config: ExampleConfig, results: dict) -> None:
    """results.json, a Markdown table and the loss figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "results.json").write_text(json.dumps({"config": vars(config), **results}, indent=1))
    rows = [
        f"| {label} | {r['train_loss']:.4g} | {r['test_loss']:.4g} | {r['test_accuracy']:.4f} |"
        for label, r in (
            (f"learned ({config.learned})", results["learned"]),
            (f"Adam (lr {results['adam']['learning_rate']:g})", results["adam"]),
        )
    ]
    (workdir / "RESULTS.md").write_text(
        f"# flax MLP {config.hidden_sizes} ({config.init} init) on MNIST, {config.num_steps} steps, "
        f"mean of {len(config.seeds)} seeds\n\n"
        "| optimizer | final train loss | test loss | test accuracy |\n|---|---|---|---|\n"
        + "\n".join(rows)
        + "\n"
    )
    figure, axes = plt.subplots(figsize=(6, 4))
    axes.plot(results["learned"]["mean_curve"], label=f"learned ({config.learned})")
    axes.plot(results["adam"]["mean_curve"], label=f"Adam, lr {results['adam']['learning_rate']:g}")
    title = f"flax MLP {config.hidden_sizes} on MNIST, {config.init} init"
    axes.set(xlabel="step", ylabel="minibatch loss", yscale="log", title=title)
    axes.legend()
    figure.tight_layout()
    figure.savefig(workdir / "loss.png", dpi=120)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data-dir", help="folder with the MNIST IDX files (default $L2LGD_DATA_DIR)"
    )
    parser.add_argument("--learned", default="mnist", help="pretrained name, run folder or file")
    parser.add_argument("--hidden", type=int, nargs="+", default=[20], help="hidden layer sizes")
    parser.add_argument(
        "--init",
        choices=INITS,
        default="small",
        help="small: N(0, 0.01^2) as in meta-training; flax: flax's defaults",
    )
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--out", type=Path, default=Path("runs/example"))
    args = parser.parse_args()
    config = ExampleConfig(args.learned, tuple(args.hidden), args.init, args.steps)
    results = train_and_evaluate(config, load_mnist("files", args.data_dir), args.out)
    print((args.out / "RESULTS.md").read_text())
    print(f"Adam grid (final train loss by learning rate): {results['adam_grid']}")
    print(f"figure: {args.out / 'loss.png'}")


if __name__ == "__main__":
    main()
