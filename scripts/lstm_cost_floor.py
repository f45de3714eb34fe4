"""What the 2x20 LSTM update must cost per coordinate on this machine: a floor under its throughput.

Times, on the same number of coordinates and in the same cache-sized blocks as
`l2lgd.load_optimizer`'s update (`lax.map` over blocks of `COORDINATE_BLOCK`), the parts every
coordinate-step of the paper's 2-layer, 20-unit LSTM cannot avoid, each alone:
- its gate matmuls: (80 x 22) and (80 x 40) weights against the block's (inputs + hidden) columns;
- its nonlinearities: 3 sigmoids and 2 tanhs per unit and layer, 200 per coordinate;
and the whole update step (`scripts/optimizer_throughput.py`'s), interleaved round by round.
The matmuls' and nonlinearities' times add up to a lower bound for one step with XLA's CPU
kernels, so 1 / (their sum) bounds the throughput any block layout can reach.

    python scripts/lstm_cost_floor.py --log2-size 20 --rounds 5
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from bench_conv import median_seconds  # noqa: E402
from optimizer_throughput import flat_model, time_steps  # noqa: E402

from l2lgd.sources import COORDINATE_BLOCK, load_optimizer  # noqa: E402

HIDDEN = 20
INPUTS = 2  # the log/sign preprocessing's two features per coordinate


def blockwise(part: Callable[..., jax.Array]) -> Callable[..., jax.Array]:
    """`part(block, *weights)` mapped over the leading (blocks) axis with `lax.map`, reduced to
    one number; the weights are arguments, so XLA cannot fold them as constants."""
    return jax.jit(lambda x, *w: jax.lax.map(lambda block: part(block, *w).sum(), x).sum())


def gate_matmuls(columns: jax.Array, first: jax.Array, second: jax.Array) -> jax.Array:
    """Both layers' gate pre-activations: (4H x (inputs + H)) and (4H x 2H) against the block."""
    gates = jnp.concatenate([first @ columns[: INPUTS + HIDDEN], second @ columns])
    return jnp.max(gates, axis=0)


def nonlinearities(gates: jax.Array) -> jax.Array:
    """Both layers' 3H sigmoids (input, forget, output gates) and 2H tanhs (cell input, cell)."""
    sigmoids = jax.nn.sigmoid(gates[: 2 * 3 * HIDDEN])
    tanhs = jnp.tanh(gates[2 * 3 * HIDDEN :])
    return sigmoids.sum(0) + tanhs.sum(0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--optimizer", default="mnist")
    parser.add_argument("--log2-size", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per part and round")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    size = 2**args.log2_size
    blocks = max(1, size // COORDINATE_BLOCK)
    block = size // blocks
    keys = jax.random.split(jax.random.key(0), 4)
    columns = jax.random.normal(keys[0], (blocks, 2 * HIDDEN, block))
    first = jax.random.normal(keys[1], (4 * HIDDEN, INPUTS + HIDDEN))
    second = jax.random.normal(keys[2], (4 * HIDDEN, 2 * HIDDEN))
    gates = jax.random.normal(keys[3], (blocks, 2 * 5 * HIDDEN, block))
    parts = {
        "gate matmuls": (blockwise(gate_matmuls), (columns, first, second)),
        "nonlinearities": (blockwise(nonlinearities), (gates,)),
    }
    seconds: dict[str, list[float]] = {name: [] for name in [*parts, "whole update"]}
    for _ in range(args.rounds):
        for name, (fn, part_args) in parts.items():
            seconds[name].append(median_seconds(fn, part_args, args.repeats))
        seconds["whole update"].append(
            time_steps(load_optimizer(args.optimizer), flat_model(size), args.repeats)
        )
    ns = {name: 1e9 * float(np.median(t)) / size for name, t in seconds.items()}
    floor = ns["gate matmuls"] + ns["nonlinearities"]
    report = {
        "parameters": size,
        "ns_per_coordinate": ns,
        "floor_ns": floor,
        "ceiling_params_per_s": 1e9 / floor,
        "whole_update_params_per_s": 1e9 / ns["whole update"],
    }
    for name, value in ns.items():
        print(f"{name}: {value:.1f} ns per coordinate ({1e3 / value:.2f} M/s)")
    print(
        f"matmuls + nonlinearities: {floor:.1f} ns -> at most {1e3 / floor:.2f} M params/s; "
        f"the whole update reaches {1e3 / ns['whole update']:.2f} M/s "
        f"({floor / ns['whole update']:.0%} of its time is the floor)"
    )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
