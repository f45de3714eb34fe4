"""Throughput of one learned-optimizer update in a user's training step, against Adam.

One jitted step (`opt.update` + `optax.apply_updates`, parameters and state donated) on a flat
float32 leaf and on a many-leaf model (a ResNet-like tree of conv kernels and norm vectors) of
2^14 to 2^24 parameters: the learned optimizer as `l2lgd.load_optimizer` gives it (cache-sized
blocks of coordinates), the same all at once (`block=None`, the update before blocks) and
`optax.adam`, interleaved round by round, medians over rounds. Also the optimizer state's bytes per parameter of each learned kind.

    python scripts/optimizer_throughput.py --out runs/throughput.json
    python scripts/optimizer_throughput.py --log2-sizes 14 16 18 20 --rounds 5
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from l2lgd.config import LSTMConfig, LSTMGACConfig, NTMConfig
from l2lgd.optimizers import init_learned_weights, learned_optimizer
from l2lgd.sources import COORDINATE_BLOCK, load_optimizer

BEFORE = "learned, all at once"


def flat_model(size: int) -> dict[str, jax.ShapeDtypeStruct]:
    """One float32 leaf of `size` parameters."""
    return {"w": jax.ShapeDtypeStruct((size,), jnp.float32)}


def resnet_like(size: int) -> dict[str, jax.ShapeDtypeStruct]:
    """About `size` parameters as a ResNet-18-like tree: 4 stages of 4 3x3 conv kernels of
    widths c, 2c, 4c, 8c, each with a scale and an offset vector (48 leaves, c chosen to fit)."""
    widths = [w for w in (1, 2, 4, 8) for _ in range(4)]
    per_c2 = sum(9 * w * w for w in widths)  # kernels dominate: 9 * w_in * w_out c^2
    c = max(1, round(math.sqrt(size / per_c2)))
    tree = {}
    for i, w in enumerate(widths):
        width = w * c
        tree[f"conv_{i}"] = {
            "kernel": jax.ShapeDtypeStruct((3, 3, width, width), jnp.float32),
            "scale": jax.ShapeDtypeStruct((width,), jnp.float32),
            "offset": jax.ShapeDtypeStruct((width,), jnp.float32),
        }
    return tree


def make_step(optimizer: optax.GradientTransformation) -> Callable[..., Any]:
    """The jitted training step's optimizer part; parameters and state are donated."""

    def step(params: Any, state: Any, grads: Any) -> tuple[Any, Any]:
        updates, state = optimizer.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    return jax.jit(step, donate_argnums=(0, 1))


def time_steps(optimizer: optax.GradientTransformation, shapes: Any, steps: int) -> float:
    """Median seconds of one step, after a compiling first step."""
    key = iter(jax.random.split(jax.random.key(0), 2 * len(jax.tree.leaves(shapes))))
    params = jax.tree.map(lambda s: 0.01 * jax.random.normal(next(key), s.shape), shapes)
    grads = jax.tree.map(lambda s: 1e-3 * jax.random.normal(next(key), s.shape), shapes)
    state = jax.tree.map(jnp.copy, optimizer.init(params))  # init may share one zeros buffer
    step = make_step(optimizer)
    params, state = jax.block_until_ready(step(params, state, grads))
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        params, state = jax.block_until_ready(step(params, state, grads))
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def state_bytes_per_parameter(optimizer: optax.GradientTransformation, size: int) -> float:
    """Bytes of optimizer state per parameter, from the state's shapes (nothing allocated)."""
    state = jax.eval_shape(optimizer.init, {"w": jax.ShapeDtypeStruct((size,), jnp.float32)})
    return sum(leaf.size * leaf.dtype.itemsize for leaf in jax.tree.leaves(state)) / size


def memory_table(size: int = 2**16) -> dict[str, float]:
    """State bytes per parameter of each learned kind (random weights) and of Adam."""
    kinds = {
        "LSTM (2x20)": LSTMConfig(),
        "LSTM+GAC (2x20, 5 cells)": LSTMGACConfig(),
        "NTM-L-BFGS": NTMConfig(kind="ntm_lbfgs"),
    }
    table = {
        label: state_bytes_per_parameter(
            learned_optimizer(init_learned_weights(jax.random.key(0), config), config), size
        )
        for label, config in kinds.items()
    }
    table["Adam"] = state_bytes_per_parameter(optax.adam(1e-3), size)
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--optimizer", default="mnist", help="a shipped name, run folder or file")
    parser.add_argument("--log2-sizes", type=int, nargs="+", default=[14, 16, 18, 20, 22, 24])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=5, help="timed steps per round")
    parser.add_argument(
        "--block", type=int, default=COORDINATE_BLOCK, help="coordinates per block of the update"
    )
    parser.add_argument(
        "--all-at-once-up-to",
        type=int,
        default=22,
        help="largest log2 size to time the all-at-once update on (its temporaries take "
        "about 1 kB per parameter)",
    )
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    contenders = {
        "learned": lambda: load_optimizer(args.optimizer, block=args.block),
        BEFORE: lambda: load_optimizer(args.optimizer, block=None),
        "adam": lambda: optax.adam(1e-3),
    }
    rows = []
    for log2 in args.log2_sizes:
        for model_name, model in (("flat", flat_model), ("many-leaf", resnet_like)):
            shapes = model(2**log2)
            size = sum(s.size for s in jax.tree.leaves(shapes))
            names = [n for n in contenders if n != BEFORE or log2 <= args.all_at_once_up_to]
            seconds: dict[str, list[float]] = {n: [] for n in names}
            for _ in range(args.rounds):
                for name in names:
                    seconds[name].append(time_steps(contenders[name](), shapes, args.steps))
            median = {n: float(np.median(t)) for n, t in seconds.items()}
            row = {
                "model": model_name,
                "log2_size": log2,
                "parameters": size,
                "leaves": len(jax.tree.leaves(shapes)),
                "ms": {n: 1000 * t for n, t in median.items()},
                "M_params_per_s": {n: size / t / 1e6 for n, t in median.items()},
                "learned_over_adam": median["learned"] / median["adam"],
            }
            if BEFORE in median:
                row["speedup_over_all_at_once"] = median[BEFORE] / median["learned"]
            rows.append(row)
            print(
                f"{model_name:9s} 2^{log2} ({size} params, {row['leaves']} leaves): "
                + ", ".join(
                    f"{n} {1000 * t:.2f} ms ({size / t / 1e6:.2f} M/s)" for n, t in median.items()
                )
                + f"; learned/adam {row['learned_over_adam']:.1f}x"
                + (
                    f"; blocks vs all at once {row['speedup_over_all_at_once']:.2f}x"
                    if BEFORE in median
                    else ""
                ),
                flush=True,
            )
    memory = memory_table()
    print(
        "optimizer state, bytes per parameter: "
        + ", ".join(f"{k} {v:g}" for k, v in memory.items())
    )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        record = {
            "optimizer": args.optimizer,
            "devices": str(jax.devices()),
            "rows": rows,
            "state_bytes_per_parameter": memory,
        }
        args.out.write_text(json.dumps(record, indent=1))
        print(f"written: {args.out}")


if __name__ == "__main__":
    main()
