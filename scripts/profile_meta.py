"""Where a meta-iteration's time goes: the optimizee's part against the LSTM's part.

Times three jitted programs of the same shapes as one meta-iteration of a config (median of
--repeats): the whole meta-iteration; the optimizee alone (its loss and gradient every step,
and the backward pass through the loss that the meta-gradient needs, with a fixed update rule);
and the LSTM alone (every step on gradients drawn at random, its meta-gradient through the
state). Each part's matmul FLOPs are counted as in scripts/benchmark.py, so each line says how
near that part runs to the measured matmul peak. Optionally writes a jax.profiler trace
(TensorBoard / Perfetto) of the whole meta-iteration.

    python scripts/profile_meta.py --config configs/mnist.yaml
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import optax

from l2lgd.config import load_config
from l2lgd.meta.unroll import init_meta_state, make_meta_iteration
from l2lgd.optimizers.learned import init_learned_weights, learned_optimizer
from l2lgd.rollout import OptimizeeState, rollout, vectorized
from l2lgd.tasks import make_task, sample_batch

sys.path.insert(0, str(Path(__file__).parent))
from benchmark import (  # noqa: E402
    matmul_flops,
    matmul_peak_flops,
    timed_repeats,
    write_result,
)


def median_seconds(run, repeats: int) -> float:
    """Median wall time of `run()` (which blocks), after one untimed call that compiles."""
    run()
    return statistics.median(timed_repeats(lambda _: run(), repeats))


def chained(function, arguments):
    """A blocking call of `function` that feeds its first output back as its first argument
    (the meta-iteration donates its state, so each call must get the previous call's)."""
    current = list(arguments)

    def run() -> None:
        output = function(*current)
        current[0] = output[0] if isinstance(output, tuple) else output
        jax.block_until_ready(output)

    return run


def whole_iteration(config):
    task = make_task(config.task)
    meta_iteration = make_meta_iteration(config.optimizer, config.meta)
    weights = init_learned_weights(jax.random.key(0), config.optimizer)
    state = init_meta_state(weights, config.meta)
    return meta_iteration, (state, task, jax.random.key(1))


def optimizee_only(config):
    """Meta-training's optimizee work with SGD (differentiable in its learning rate) in place
    of the LSTM: every step's loss and gradient, and the backward pass through the losses."""
    task, meta = make_task(config.task), config.meta

    def unroll_loss(learning_rate, params, problems, key):
        optimizer = optax.scale(-learning_rate)
        start = OptimizeeState(params, optimizer.init(params))
        end, losses = rollout(task, optimizer, start, problems, key, meta.unroll, remat=meta.remat)
        return losses.sum(), end.params

    @jax.jit
    def iteration(learning_rate, key):
        params, problems = sample_batch(task, key, meta.num_problems)
        for index in range(meta.num_steps // meta.unroll):
            grad, params = jax.grad(unroll_loss, has_aux=True)(
                learning_rate, params, problems, jax.random.fold_in(key, index)
            )
            learning_rate = learning_rate - 1e-6 * grad
        return learning_rate

    return iteration, (jnp.float32(0.01), jax.random.key(1))


def lstm_only(config):
    """Meta-training's LSTM work on random gradients of the optimizee's size: every step's
    update, and the meta-gradient through the LSTM state (no optimizee)."""
    task, meta = make_task(config.task), config.meta
    params, _ = sample_batch(task, jax.random.key(0), meta.num_problems)
    weights = init_learned_weights(jax.random.key(0), config.optimizer)

    def unroll_loss(weights, params, opt_state, key):
        optimizer = vectorized(learned_optimizer(weights, config.optimizer))

        @functools.partial(jax.checkpoint, policy=jax.checkpoint_policies.dots_saveable)
        def step(carry, step_key):
            params, opt_state = carry
            grads = jax.tree.map(
                lambda leaf: jax.random.normal(step_key, leaf.shape, leaf.dtype), params
            )
            updates, opt_state = optimizer.update(grads, opt_state, params)
            params = optax.apply_updates(params, updates)
            return (params, opt_state), sum(jnp.sum(leaf) for leaf in jax.tree.leaves(params))

        (params, opt_state), sums = jax.lax.scan(
            step, (params, opt_state), jax.random.split(key, meta.unroll)
        )
        return sums.sum(), (params, opt_state)

    @jax.jit
    def iteration(weights, key):
        opt_state = vectorized(learned_optimizer(weights, config.optimizer)).init(params)
        state = params
        for index in range(meta.num_steps // meta.unroll):
            grads, (state, opt_state) = jax.grad(unroll_loss, has_aux=True)(
                weights, state, opt_state, jax.random.fold_in(key, index)
            )
            weights = jax.tree.map(lambda w, g: w - 1e-6 * g, weights, grads)
        return weights

    return iteration, (weights, jax.random.key(1))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--config", default="configs/mnist.yaml")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--trace", default=None, help="folder for a jax.profiler trace")
    parser.add_argument("--out", default="runs/profile.json")
    parser.add_argument("--set", action="append", default=[], help="config override")
    args = parser.parse_args()
    config = load_config(args.config, args.set)
    peak = matmul_peak_flops(args.repeats)["flops"]
    result = {"config": args.config, "overrides": args.set, "matmul_peak_flops": peak}
    for name, build in [
        ("whole", whole_iteration),
        ("optimizee_only", optimizee_only),
        ("lstm_only", lstm_only),
    ]:
        function, arguments = build(config)
        flops = matmul_flops(function, *arguments)
        seconds = median_seconds(chained(function, arguments), args.repeats)
        result[name] = {"median_s": seconds, "matmul_flops": flops}
        print(
            f"{name}: {seconds * 1e3:.1f} ms, {flops / 1e9:.2f} GFLOP of matmuls, "
            f"{100 * flops / seconds / peak:.1f}% of the {peak / 1e9:.0f} GFLOP/s matmul peak"
        )
    if args.trace:
        run = chained(*whole_iteration(config))
        run()
        with jax.profiler.trace(args.trace):
            run()
        print(f"trace: {args.trace}")
    print(f"written: {write_result(result, args.out)}")


if __name__ == "__main__":
    main()
