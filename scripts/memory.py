"""Peak memory of one meta-gradient vs unroll length, for each rematerialization policy.

For each unroll length T and policy in meta.remat, compiles the meta-gradient of one truncated
unroll of T steps (l2lgd.meta.unroll.meta_loss) and reads XLA's buffer assignment: the peak of
the bytes the program holds at once (arguments + outputs + temporaries), which is what a device
needs. Also times the gradient (median of --repeats runs) to show what recomputation costs.
Writes a JSON file and prints a Markdown table.

    python scripts/memory.py --config configs/mnist.yaml --unrolls 20 100 400
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time

import jax
from benchmark import timed_repeats, write_result

from l2lgd.config import REMAT_POLICIES, load_config
from l2lgd.meta.unroll import meta_loss
from l2lgd.optimizers.learned import init_learned_weights, learned_optimizer
from l2lgd.rollout import init_optimizee_state
from l2lgd.tasks import make_task, sample_batch

MIB = 2**20


def peak_bytes(compiled: jax.stages.Compiled) -> int:
    """The bytes a compiled program holds at once: arguments + outputs (less the buffers they
    share by donation) + temporaries, from XLA's buffer assignment."""
    stats = compiled.memory_analysis()
    return (
        stats.argument_size_in_bytes
        + stats.output_size_in_bytes
        - stats.alias_size_in_bytes
        + stats.temp_size_in_bytes
    )


def measure(config, unroll: int, remat: str, repeats: int) -> dict:
    """Peak bytes (XLA's buffer assignment) and median seconds of one meta-gradient."""
    meta = dataclasses.replace(config.meta, unroll=unroll, num_steps=unroll, remat=remat)
    task = make_task(config.task)
    weights = init_learned_weights(jax.random.key(0), config.optimizer)
    params, problems = sample_batch(task, jax.random.key(1), meta.num_problems)
    state = init_optimizee_state(learned_optimizer(weights, config.optimizer), params)

    @jax.jit
    def meta_gradient(weights, state, problems, key):
        grad_fn = jax.value_and_grad(meta_loss, has_aux=True)
        return grad_fn(weights, task, config.optimizer, meta, state, problems, key)

    arguments = (weights, state, problems, jax.random.key(2))
    start = time.perf_counter()
    compiled = meta_gradient.lower(*arguments).compile()
    compile_s = time.perf_counter() - start
    times = timed_repeats(lambda _: jax.block_until_ready(compiled(*arguments)), repeats)
    return {
        "unroll": unroll,
        "remat": remat,
        "peak_bytes": peak_bytes(compiled),
        "temp_bytes": compiled.memory_analysis().temp_size_in_bytes,
        "compile_s": round(compile_s, 2),
        "median_s": statistics.median(times),
        "seconds": times,
    }


def markdown_table(rows: list[dict], policies: list[str], unrolls: list[int]) -> str:
    """Peak MiB (and ms per step) with T down and policies across."""
    by_key = {(row["unroll"], row["remat"]): row for row in rows}
    lines = [
        "| unroll T | " + " | ".join(f"{policy}: peak MiB (ms/step)" for policy in policies) + " |",
        "|---" * (len(policies) + 1) + "|",
    ]
    for unroll in unrolls:
        cells = [
            f"{by_key[unroll, policy]['peak_bytes'] / MIB:.1f} "
            f"({by_key[unroll, policy]['median_s'] / unroll * 1e3:.2f})"
            for policy in policies
        ]
        lines.append(f"| {unroll} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--config", default="configs/mnist.yaml")
    parser.add_argument("--unrolls", type=int, nargs="+", default=[20, 100, 400])
    parser.add_argument("--policies", nargs="+", default=list(REMAT_POLICIES))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default="runs/memory.json")
    parser.add_argument("--set", action="append", default=[], help="config override")
    args = parser.parse_args()
    config = load_config(args.config, args.set)
    rows = []
    for unroll in args.unrolls:
        for policy in args.policies:
            rows.append(measure(config, unroll, policy, args.repeats))
            print(json.dumps({k: rows[-1][k] for k in ("unroll", "remat", "peak_bytes")}))
    result = {
        "config": args.config,
        "overrides": args.set,
        "device": str(jax.devices()[0]),
        "jax": jax.__version__,
        "rows": rows,
    }
    out = write_result(result, args.out)
    print(markdown_table(rows, args.policies, args.unrolls))
    print(f"written: {out}")


if __name__ == "__main__":
    main()
