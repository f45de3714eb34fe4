"""Cost of optimizer variants against the plain LSTM: seconds per meta-iteration and peak memory.

Builds one meta-iteration per variant (the base config plus that variant's overrides), times
them interleaved (so that the machine's load hits all alike) and reports medians and each
variant's ratio to the first; peak memory is XLA's buffer assignment of the compiled
meta-iteration (arguments + outputs + temporaries). Writes a JSON file.

    python scripts/bench_variants.py --config configs/quadratic.yaml \\
        --variant lstm= --variant lstm_gac=optimizer.kind=lstm_gac
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
from benchmark import write_result
from memory import MIB, peak_bytes

from l2lgd.config import load_config
from l2lgd.meta.unroll import init_meta_state, make_meta_iteration
from l2lgd.optimizers.learned import init_learned_weights
from l2lgd.tasks import make_task


def parse_variant(text: str) -> tuple[str, list[str]]:
    """ "NAME=key=value,key=value" -> (NAME, overrides); "NAME=" is the base config."""
    name, _, overrides = text.partition("=")
    return name, [item for item in overrides.split(",") if item]


def build(config) -> dict:
    """A variant's compiled meta-iteration, its initial state and its peak memory."""
    task = make_task(config.task)
    meta_iteration = make_meta_iteration(config.optimizer, config.meta)
    weights = init_learned_weights(jax.random.key(0), config.optimizer)
    state = init_meta_state(weights, config.meta)
    compiled = meta_iteration.lower(state, task, jax.random.key(0)).compile()
    state, losses = compiled(state, task, jax.random.key(0))  # one untimed warm-up call
    jax.block_until_ready(losses)
    return {
        "step": lambda state, key: compiled(state, task, key),
        "state": state,
        "peak_bytes": peak_bytes(compiled),
        "seconds": [],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--config", default="configs/quadratic.yaml")
    parser.add_argument("--variant", action="append", required=True, help="NAME=overrides")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--out", default="runs/bench_variants.json")
    args = parser.parse_args()
    variants = dict(parse_variant(text) for text in args.variant)
    runs = {name: build(load_config(args.config, sets)) for name, sets in variants.items()}
    for index in range(args.repeats):
        for run in runs.values():
            start = time.perf_counter()
            run["state"], losses = run["step"](run["state"], jax.random.key(index + 1))
            jax.block_until_ready(losses)
            run["seconds"].append(time.perf_counter() - start)
    first = next(iter(runs.values()))
    result = {"config": args.config, "variants": variants, "device": str(jax.devices()[0])}
    for name, run in runs.items():
        ratios = [mine / base for mine, base in zip(run["seconds"], first["seconds"], strict=True)]
        result[name] = {
            "median_s": statistics.median(run["seconds"]),
            "time_ratio_to_first": statistics.median(ratios),
            "peak_bytes": run["peak_bytes"],
            "memory_ratio_to_first": run["peak_bytes"] / first["peak_bytes"],
            "seconds": run["seconds"],
        }
        print(
            f"{name}: {result[name]['median_s'] * 1e3:.1f} ms per meta-iteration "
            f"(x{result[name]['time_ratio_to_first']:.2f}), peak {run['peak_bytes'] / MIB:.1f} "
            f"MiB (x{result[name]['memory_ratio_to_first']:.2f})"
        )
    print(f"written: {write_result(result, args.out)}")


if __name__ == "__main__":
    main()
