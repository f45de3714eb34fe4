"""Why the CIFAR CNN convolves with a matmul and pools with a reshape: flax's layers against ours.

    python scripts/bench_conv.py [--batch 32] [--steps 10] [--repeats 5]

Times `steps` SGD steps of the paper's CIFAR CNN (value and gradient of the loss on a fixed
minibatch) inside one `lax.scan`, as every rollout runs it, with flax's `nn.Conv` and with
`l2lgd.tasks.cnn.MatmulConv` (same parameters, same result), and with flax's `nn.max_pool` and
with `l2lgd.tasks.cnn.max_pool_2x2`; also one step outside any loop. Compile time excluded;
medians of `repeats` calls; each pair compared in one run, as a ratio.
"""

from __future__ import annotations

import argparse
import statistics
import time
from unittest import mock

import flax.linen as nn
import jax
import numpy as np

from l2lgd.data import ImageDataset
from l2lgd.tasks import cnn


def xla_conv(features, kernel_size, param_init, name):
    """`nn.Conv` with the arguments `CNN` gives `MatmulConv`."""
    return nn.Conv(
        features,
        kernel_size,
        padding="SAME",
        kernel_init=param_init,
        bias_init=param_init,
        name=name,
    )


def flax_max_pool(images):
    """`nn.max_pool` as `CNN` would call it."""
    return nn.max_pool(images, (2, 2), strides=(2, 2), padding="SAME")


def median_seconds(function, args, repeats: int) -> float:
    jax.block_until_ready(function(*args))  # compile
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(function(*args))
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def time_model(task: cnn.CNNTask, steps: int, repeats: int) -> dict[str, float]:
    params = task.init_params(jax.random.key(0), ())
    value_and_grad = jax.value_and_grad(task.loss)
    key = jax.random.key(1)

    @jax.jit
    def scanned(params):
        def step(params, _):
            _, grads = value_and_grad(params, (), key)
            return jax.tree.map(lambda p, g: p - 0.01 * g, params, grads), None

        return jax.lax.scan(step, params, None, length=steps)[0]

    one_step = jax.jit(lambda params: value_and_grad(params, (), key))
    return {
        "in_scan_s_per_step": median_seconds(scanned, (params,), repeats) / steps,
        "outside_s_per_step": median_seconds(one_step, (params,), repeats),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (1024, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, 1024).astype(np.int32)
    task = cnn.CNNTask(
        ImageDataset("noise", images, labels, images, labels, 10), batch_size=args.batch
    )
    ours = time_model(task, args.steps, args.repeats)
    with mock.patch.object(cnn, "MatmulConv", xla_conv):
        flax_conv = time_model(task, args.steps, args.repeats)
    with mock.patch.object(cnn, "max_pool_2x2", flax_max_pool):
        flax_pool = time_model(task, args.steps, args.repeats)
    print(f"device {jax.devices()[0]}, minibatch {args.batch}, median of {args.repeats}")
    for theirs, name, our_name in [
        (flax_conv, "nn.Conv", "MatmulConv"),
        (flax_pool, "nn.max_pool", "max_pool_2x2"),
    ]:
        for where in ("in_scan_s_per_step", "outside_s_per_step"):
            print(
                f"{where}: {name} {theirs[where] * 1e3:.1f} ms, {our_name} "
                f"{ours[where] * 1e3:.1f} ms, ratio {theirs[where] / ours[where]:.2f}"
            )


if __name__ == "__main__":
    main()
