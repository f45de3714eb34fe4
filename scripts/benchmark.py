"""Throughput of meta-training and evaluation, in coordinate-steps per second and % of matmul peak.

coordinate-steps = optimizee coordinates x optimizee steps (x problems); compile time excluded;
the median of several timed repeats. The matmul peak is measured here: the FLOP/s of a large
float32 matmul on the same device. Meta-training's matmul FLOPs are counted in its jaxpr (every
dot_general, times the length of each scan around it), so "% of peak" says how close a
meta-iteration comes to a program that only multiplies matrices. Writes a JSON file.

    python scripts/benchmark.py --config configs/quadratic.yaml --out runs/bench.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.flatten_util import ravel_pytree

from l2lgd.config import load_config
from l2lgd.evaluate import learned_curves
from l2lgd.meta.unroll import init_meta_state, make_meta_iteration
from l2lgd.optimizers.learned import init_learned_weights
from l2lgd.tasks import make_task, sample_batch


def timed_repeats(run, repeats: int) -> list[float]:
    """Wall seconds of each of `repeats` calls of `run` (which must block until done)."""
    times = []
    for index in range(repeats):
        start = time.perf_counter()
        run(index)
        times.append(time.perf_counter() - start)
    return times


def matmul_peak_flops(repeats: int, size: int = 2048) -> dict:
    """FLOP/s of a (size x size) @ (size x size) float32 matmul: the device's practical peak."""
    a = jax.random.normal(jax.random.key(0), (size, size), jnp.float32)
    matmul = jax.jit(lambda x, y: x @ y)
    matmul(a, a).block_until_ready()
    times = timed_repeats(lambda _: matmul(a, a).block_until_ready(), repeats)
    return {
        "size": size,
        "median_s": statistics.median(times),
        "flops": 2 * size**3 / statistics.median(times),
    }


def matmul_flops(function, *args) -> int:
    """FLOPs of every dot_general `function(*args)` runs: counted in its jaxpr, each inner
    scan's body times its length (XLA's own cost analysis counts a loop body once)."""
    return _jaxpr_matmul_flops(jax.make_jaxpr(function)(*args).jaxpr)


def _jaxpr_matmul_flops(jaxpr) -> int:
    total = 0
    for equation in jaxpr.eqns:
        if equation.primitive.name == "dot_general":
            (contracting, _), _ = equation.params["dimension_numbers"]
            lhs_shape = equation.invars[0].aval.shape
            total += (
                2
                * int(np.prod(equation.outvars[0].aval.shape))
                * int(np.prod([lhs_shape[axis] for axis in contracting]))
            )
        repeats = equation.params.get("length", 1) if equation.primitive.name == "scan" else 1
        for inner in _inner_jaxprs(equation.params.values()):
            total += repeats * _jaxpr_matmul_flops(inner)
    return total


def _inner_jaxprs(values):
    for value in values:
        if isinstance(value, jax.extend.core.ClosedJaxpr):
            yield value.jaxpr
        elif isinstance(value, jax.extend.core.Jaxpr):
            yield value
        elif isinstance(value, tuple | list):
            yield from _inner_jaxprs(value)


def benchmark_meta_training(config, repeats: int) -> dict:
    """Seconds per meta-iteration, coordinate-steps/s and matmul FLOPs of meta-training."""
    task = make_task(config.task)
    meta_iteration = make_meta_iteration(config.optimizer, config.meta)
    weights = init_learned_weights(jax.random.key(0), config.optimizer)
    state = {"meta": init_meta_state(weights, config.meta)}

    def run(index: int) -> None:
        state["meta"], losses = meta_iteration(state["meta"], task, jax.random.key(index))
        losses.block_until_ready()

    start = time.perf_counter()
    run(-1)  # compile
    compile_s = time.perf_counter() - start
    times = timed_repeats(run, repeats)
    coordinates = num_coordinates(task, config.meta.num_problems)
    work = coordinates * config.meta.num_steps
    flops = matmul_flops(meta_iteration, state["meta"], task, jax.random.key(0))
    summary = _summary(times, work, compile_s, coordinates=coordinates, steps=config.meta.num_steps)
    return summary | {"matmul_flops": flops, "matmul_flops_per_s": flops / summary["median_s"]}


def benchmark_evaluation(config, repeats: int) -> dict:
    """Coordinate-steps/s of evaluating the learned optimizer (forward only)."""
    task = make_task(config.task)
    weights = init_learned_weights(jax.random.key(0), config.optimizer)
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


class PlainLSTMOptimizer(nn.Module):
    """The reference: flax's OptimizedLSTMCell x 2 and a Dense output, coordinates as rows."""

    hidden_size: int = 20

    @nn.compact
    def __call__(self, grads, state):
        inputs = grads[:, None]
        new_state = []
        for layer, carry in enumerate(state):
            carry, inputs = nn.OptimizedLSTMCell(self.hidden_size, name=f"cell_{layer}")(
                carry, inputs
            )
            new_state.append(carry)
        return nn.Dense(1)(inputs)[:, 0], tuple(new_state)


def benchmark_plain_reference(config, repeats: int) -> dict:
    """A plain jit + scan meta-training step for comparison: per-problem vmap, no remat.

    It computes the same kind of meta-gradient (truncated unrolls, optimizee gradient held
    constant, Adam on the weights) in the most direct way, so the ratio to it measures what the
    layout and rematerialization choices of l2lgd buy.
    """
    task = make_task(config.task)
    meta = config.meta
    net = PlainLSTMOptimizer(config.optimizer.hidden_size)
    dim = config.task.dim
    zeros = jnp.zeros((dim, config.optimizer.hidden_size))
    state0 = tuple((zeros, zeros) for _ in range(config.optimizer.num_layers))
    weights = net.init(jax.random.key(0), jnp.zeros(dim), state0)
    adam = optax.adam(meta.learning_rate)

    def unroll_loss(weights, params, lstm_state, problems):
        def step(carry, _):
            params, lstm_state = carry
            loss, grads = jax.vmap(jax.value_and_grad(task.loss))(params, problems, None)
            grads = jax.lax.stop_gradient(grads)
            updates, lstm_state = jax.vmap(net.apply, in_axes=(None, 0, 0))(
                weights, grads, lstm_state
            )
            return (params + updates, lstm_state), loss.mean()

        (params, lstm_state), losses = jax.lax.scan(
            step, (params, lstm_state), None, length=meta.unroll
        )
        return losses.sum(), (params, lstm_state)

    @jax.jit
    def meta_iteration(weights, opt_state, key):
        params, problems = sample_batch(task, key, meta.num_problems)
        lstm_state = jax.tree.map(
            lambda x: jnp.broadcast_to(x, (meta.num_problems, *x.shape)), state0
        )
        for _ in range(meta.num_steps // meta.unroll):
            grads, (params, lstm_state) = jax.grad(unroll_loss, has_aux=True)(
                weights, params, lstm_state, problems
            )
            updates, opt_state = adam.update(grads, opt_state)
            weights = optax.apply_updates(weights, updates)
        return weights, opt_state

    state = {"weights": weights, "opt": adam.init(weights)}

    def run(index: int) -> None:
        state["weights"], state["opt"] = meta_iteration(
            state["weights"], state["opt"], jax.random.key(index)
        )
        jax.block_until_ready(state["weights"])

    start = time.perf_counter()
    run(-1)
    compile_s = time.perf_counter() - start
    times = timed_repeats(run, repeats)
    coordinates = num_coordinates(task, meta.num_problems)
    return _summary(times, coordinates * meta.num_steps, compile_s, coordinates=coordinates)


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


def write_result(result: dict, path: str) -> Path:
    """Writes a benchmark's result as indented JSON at `path` (making its folder) and returns it."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--config", default="configs/quadratic.yaml")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--out", default="runs/bench.json")
    parser.add_argument(
        "--set", action="append", default=[], help="config override, e.g. eval.num_problems=5"
    )
    args = parser.parse_args()
    config = load_config(args.config, args.set)
    result = {
        "config": args.config,
        "overrides": args.set,
        "devices": [str(device) for device in jax.devices()],
        "machine": platform.processor() or platform.machine(),
        "jax": jax.__version__,
        "matmul_peak": matmul_peak_flops(args.repeats),
        "meta_training": benchmark_meta_training(config, args.repeats),
        "evaluation": benchmark_evaluation(config, args.repeats),
    }
    if config.task.name == "quadratic":
        result["plain_reference_meta_training"] = benchmark_plain_reference(config, args.repeats)
        result["meta_training_speedup_over_plain"] = (
            result["meta_training"]["coordinate_steps_per_s"]
            / result["plain_reference_meta_training"]["coordinate_steps_per_s"]
        )
    peak, meta = result["matmul_peak"]["flops"], result["meta_training"]
    meta["percent_of_matmul_peak"] = 100 * meta["matmul_flops_per_s"] / peak
    out = write_result(result, args.out)
    for name in ("meta_training", "evaluation", "plain_reference_meta_training"):
        if name not in result:
            continue
        entry = result[name]
        print(
            f"{name}: {entry['coordinate_steps_per_s'] / 1e6:.3f} M coordinate-steps/s "
            f"(median {entry['median_s'] * 1e3:.1f} ms per call of {len(entry['seconds'])}, "
            f"spread {np.ptp(entry['seconds']) * 1e3:.1f} ms; compile {entry['compile_s']:.1f} s)"
        )
    print(
        f"matmul peak {peak / 1e9:.1f} GFLOP/s; meta-training {meta['matmul_flops'] / 1e9:.2f} "
        f"GFLOP per iteration at {meta['matmul_flops_per_s'] / 1e9:.2f} GFLOP/s = "
        f"{meta['percent_of_matmul_peak']:.1f}% of peak"
    )
    if "meta_training_speedup_over_plain" in result:
        print(
            f"meta-training speed-up over the plain reference: {result['meta_training_speedup_over_plain']:.2f}x"
        )
    print(f"written: {out}")


if __name__ == "__main__":
    main()
