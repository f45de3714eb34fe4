"""Throughput of meta-training and evaluation, in coordinate-steps per second.

coordinate-steps = optimizee coordinates x optimizee steps (x problems); compile time excluded;
the median of several timed repeats. Writes a JSON file.

    python scripts/benchmark.py --config configs/quadratic.yaml --out runs/bench.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import jax
import numpy as np
from jax.flatten_util import ravel_pytree

from l2lgd.config import load_config
from l2lgd.evaluate import learned_curves
from l2lgd.meta.unroll import init_meta_state, make_meta_iteration
from l2lgd.optimizers.lstm import init_lstm_weights
from l2lgd.tasks import make_task, sample_batch


def timed_repeats(run, repeats: int) -> list[float]:
    """Wall seconds of each of `repeats` calls of `run` (which must block until done)."""
    times = []
    for index in range(repeats):
        start = time.perf_counter()
        run(index)
        times.append(time.perf_counter() - start)
    return times


def benchmark_meta_training(config, repeats: int) -> dict:
    """Seconds per meta-iteration and coordinate-steps/s of meta-training."""
    task = make_task(config.task)
    meta_iteration = make_meta_iteration(task, config.optimizer, config.meta)
    weights = init_lstm_weights(jax.random.key(0), config.optimizer)
    state = {"meta": init_meta_state(weights, config.meta)}

    def run(index: int) -> None:
        state["meta"], losses = meta_iteration(state["meta"], jax.random.key(index))
        losses.block_until_ready()

    start = time.perf_counter()
    run(-1)  # compile
    compile_s = time.perf_counter() - start
    times = timed_repeats(run, repeats)
    coordinates = num_coordinates(task, config.meta.num_problems)
    work = coordinates * config.meta.num_steps
    return _summary(times, work, compile_s, coordinates=coordinates, steps=config.meta.num_steps)


def benchmark_evaluation(config, repeats: int) -> dict:
    """Coordinate-steps/s of evaluating the learned optimizer (forward only)."""
    task = make_task(config.task)
    weights = init_lstm_weights(jax.random.key(0), config.optimizer)
    num_problems, num_steps = config.eval.num_problems, config.eval.num_steps

    def run(index: int) -> None:
        learned_curves(
            task, weights, config.optimizer, jax.random.key(index), num_problems, num_steps
        )

    start = time.perf_counter()
    run(-1)
    compile_s = time.perf_counter() - start
    times = timed_repeats(run, repeats)
    coordinates = num_coordinates(task, num_problems)
    return _summary(
        times, coordinates * num_steps, compile_s, coordinates=coordinates, steps=num_steps
    )


def num_coordinates(task, num_problems: int) -> int:
    """Parameters per problem times problems."""
    params, _ = sample_batch(task, jax.random.key(0), 1)
    return ravel_pytree(params)[0].size * num_problems


def _summary(times: list[float], work: int, compile_s: float, **extra) -> dict:
    median = statistics.median(times)
    return {
        **extra,
        "compile_s": round(compile_s, 3),
        "median_s": median,
        "seconds": times,
        "coordinate_steps_per_s": work / median,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--config", default="configs/quadratic.yaml")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--out", default="runs/bench.json")
    args = parser.parse_args()
    config = load_config(args.config)
    result = {
        "config": args.config,
        "devices": [str(device) for device in jax.devices()],
        "machine": platform.processor() or platform.machine(),
        "jax": jax.__version__,
        "meta_training": benchmark_meta_training(config, args.repeats),
        "evaluation": benchmark_evaluation(config, args.repeats),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    for name in ("meta_training", "evaluation"):
        entry = result[name]
        print(
            f"{name}: {entry['coordinate_steps_per_s'] / 1e6:.3f} M coordinate-steps/s "
            f"(median {entry['median_s'] * 1e3:.1f} ms of {len(entry['seconds'])}, "
            f"spread {np.ptp(entry['seconds']) * 1e3:.1f} ms; compile {entry['compile_s']:.1f} s)"
        )
    print(f"written: {out}")


if __name__ == "__main__":
    main()
