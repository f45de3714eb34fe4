"""How big each optimizer's steps are over a long run: a diagnosis of where a learned optimizer stalls.

Runs each optimizer (a learned one by name, run folder or file; a baseline as NAME:LR; or a
learned optimizer whose conv kernels a baseline steps instead, LEARNED+conv=NAME:LR) on the
same held-out problems of a task for `--steps` steps and records, per step, the mean loss and the
root-mean-square update of each parameter group (for the CNN: conv kernels, and the rest) with
the RMS of those parameters, so that relative step sizes can be compared across optimizers.
Writes a JSON file and a figure.

    python scripts/update_sizes.py --config cifar10 --optimizer cifar10 --optimizer nag:0.01 \
        --steps 1000 --problems 4 --test-seed 20261207 --out runs/update_sizes
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from l2lgd.config import load_config
from l2lgd.optimizers import baseline, parse_baseline_spec
from l2lgd.optimizers.groups import CIFAR_GROUPS, group_labels
from l2lgd.seeds import TEST_STREAM, stream_key
from l2lgd.sources import load_learned, load_optimizer
from l2lgd.tasks import make_task, sample_batch


def make_optimizer(spec: str) -> optax.GradientTransformation:
    """A baseline "NAME:LR", a learned optimizer, or "LEARNED+conv=NAME:LR" (`conv_by_baseline`)."""
    if "+conv=" in spec:
        learned, conv = spec.split("+conv=")
        return conv_by_baseline(make_optimizer(learned), make_optimizer(conv))
    if is_baseline_spec(spec):
        name, learning_rate = parse_baseline_spec(spec)
        return baseline(name, learning_rate)
    return load_optimizer(spec, block=None)


def is_baseline_spec(spec: str) -> bool:
    """Whether `spec` names a baseline ("NAME:LR") rather than a learned optimizer's path or name."""
    return ":" in spec and not Path(spec).exists()


def largest_output_weights(spec: str) -> dict[str, float]:
    """Per LSTM of a learned `spec` (its part before "+conv="), the largest |weight| of its output
    layer: how far that LSTM left its zero-initialized output. Empty for a baseline."""
    learned = spec.split("+conv=")[0]
    if is_baseline_spec(learned):
        return {}
    weights = load_learned(learned).weights
    per_lstm = weights if "output" not in weights else {"all": weights}
    return {
        name: float(np.abs(np.asarray(lstm["output"]["kernel"])).max())
        for name, lstm in per_lstm.items()
    }


def conv_by_baseline(
    learned: optax.GradientTransformation, conv: optax.GradientTransformation
) -> optax.GradientTransformation:
    """`learned`'s updates everywhere but on the conv kernels, where `conv`'s are taken: tells
    whether a stall comes from the conv LSTM alone. Both run on every leaf; only the chosen
    update of each leaf is applied."""

    def init(params: Any) -> Any:
        return learned.init(params), conv.init(params)

    def update(grads: Any, state: Any, params: Any = None) -> tuple[Any, Any]:
        learned_updates, learned_state = learned.update(grads, state[0], params)
        conv_updates, conv_state = conv.update(grads, state[1], params)
        updates = jax.tree.map(
            lambda label, a, b: b if label == "conv" else a,
            group_labels(grads, CIFAR_GROUPS),
            learned_updates,
            conv_updates,
        )
        return updates, (learned_state, conv_state)

    return optax.GradientTransformation(init, update)


def group_rms(tree: Any, labels: Any, group: str) -> jax.Array:
    """Root mean square of the leaves of `tree` labelled `group`."""
    leaves = [
        x for x, g in zip(jax.tree.leaves(tree), jax.tree.leaves(labels), strict=True) if g == group
    ]
    total = sum(jnp.sum(jnp.square(x)) for x in leaves)
    return jnp.sqrt(total / sum(x.size for x in leaves))


def trajectory(task, optimizer, params, problem, key, steps: int, groups: list[str]):
    """Per step: loss, and per group the update RMS and the parameter RMS."""
    labels = group_labels(params, CIFAR_GROUPS)

    def step(carry, step_key):
        params, state = carry
        loss, grads = jax.value_and_grad(task.loss)(params, problem, step_key)
        updates, state = optimizer.update(grads, state, params)
        params = optax.apply_updates(params, updates)
        sizes = [group_rms(updates, labels, g) for g in groups]
        norms = [group_rms(params, labels, g) for g in groups]
        return (params, state), (loss, jnp.stack(sizes), jnp.stack(norms))

    _, (losses, sizes, norms) = jax.lax.scan(
        step, (params, optimizer.init(params)), jax.random.split(key, steps)
    )
    return losses, sizes, norms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="cifar10")
    parser.add_argument("--optimizer", action="append", required=True)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--problems", type=int, default=4)
    parser.add_argument("--test-seed", type=int, required=True)
    parser.add_argument("--out", type=Path, default=Path("runs/update_sizes"))
    args = parser.parse_args()

    task = make_task(load_config(args.config).task)
    problem_key, run_key = jax.random.split(stream_key(args.test_seed, TEST_STREAM))
    params, problems = sample_batch(task, problem_key, args.problems)
    groups = ["conv", "fc"]
    results = {}
    optimizers = {spec: make_optimizer(spec) for spec in args.optimizer}
    for spec in args.optimizer:
        run = jax.jit(
            jax.vmap(
                lambda p, q, k, opt=optimizers[spec]: trajectory(
                    task, opt, p, q, k, args.steps, groups
                )
            )
        )
        losses, sizes, norms = (
            np.asarray(x) for x in run(params, problems, jax.random.split(run_key, args.problems))
        )
        results[spec] = {
            "loss": losses.mean(0).tolist(),
            **{f"update_rms_{g}": sizes[:, :, i].mean(0).tolist() for i, g in enumerate(groups)},
            **{f"param_rms_{g}": norms[:, :, i].mean(0).tolist() for i, g in enumerate(groups)},
        }
        results[spec]["largest_output_weight"] = largest_output_weights(spec)
        marks = [s for s in (0, 99, 199, 499, args.steps - 1) if s < args.steps]
        print(
            f"{spec}: "
            + "; ".join(
                f"step {s + 1}: loss {losses[:, s].mean():.3f}, conv update/param "
                f"{sizes[:, s, 0].mean() / norms[:, s, 0].mean():.2e}, fc update/param "
                f"{sizes[:, s, 1].mean() / norms[:, s, 1].mean():.2e}"
                for s in marks
            )
            + f"; largest |output weight| per LSTM: {results[spec]['largest_output_weight']}",
            flush=True,
        )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "update_sizes.json").write_text(json.dumps(results))
    plot(results, groups, args.out / "update_sizes.png")
    print(f"written: {args.out}/update_sizes.json, update_sizes.png")


def plot(results: dict, groups: list[str], path: Path) -> None:
    """Loss, and each group's update RMS relative to its parameter RMS, against the step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 1 + len(groups), figsize=(5 * (1 + len(groups)), 4))
    for spec, r in results.items():
        axes[0].plot(r["loss"], label=spec)
        for ax, g in zip(axes[1:], groups, strict=True):
            ax.plot(np.asarray(r[f"update_rms_{g}"]) / np.asarray(r[f"param_rms_{g}"]), label=spec)
    axes[0].set(xlabel="step", ylabel="minibatch loss", title="loss")
    for ax, g in zip(axes[1:], groups, strict=True):
        ax.set(xlabel="step", ylabel="update RMS / parameter RMS", yscale="log", title=g)
    axes[0].legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


if __name__ == "__main__":
    main()
