"""What keeping the LSTM state in bfloat16 between steps does to a shipped optimizer's results.

Runs the optimizer with its state in float32 and in bfloat16 on the same held-out problems of
its own training task (test stream of `--test-seed`) and prints each one's mean final loss and
the paired ratio bfloat16 / float32 with a 95% bootstrap CI (scripts/paired_ratios.py).

    python scripts/state_dtype_effect.py --optimizer quadratic --problems 1000 --test-seed 20261205
    python scripts/state_dtype_effect.py --optimizer mnist --problems 100 --test-seed 20261205
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np
from paired_ratios import bootstrap_ratio_ci

from l2lgd.config import config_from_dict
from l2lgd.optimizers import learned_optimizer
from l2lgd.optimizers.architecture import StateStorage
from l2lgd.rollout import optimize_sampled_problems
from l2lgd.seeds import TEST_STREAM, stream_key
from l2lgd.sources import load_learned
from l2lgd.tasks import make_task


def final_losses(task, optimizer, key, problems: int, steps: int) -> np.ndarray:
    """Each problem's loss after `steps` steps."""
    run = jax.jit(lambda k: optimize_sampled_problems(task, optimizer, k, problems, steps)[1])
    return np.asarray(run(key))[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--optimizer", default="mnist", help="a shipped name, run folder or file")
    parser.add_argument("--problems", type=int, default=100)
    parser.add_argument("--test-seed", type=int, required=True)
    args = parser.parse_args()

    learned = load_learned(args.optimizer)
    config = config_from_dict(learned.provenance["config"])  # the task it was trained on
    task = make_task(config.task)
    key = stream_key(args.test_seed, TEST_STREAM)
    losses = {
        name: final_losses(
            task,
            learned_optimizer(learned.weights, learned.config, StateStorage(dtype=dtype)),
            key,
            args.problems,
            config.eval.num_steps,
        )
        for name, dtype in (("float32", None), ("bfloat16", jnp.bfloat16))
    }
    for name, values in losses.items():
        half = 1.96 * values.std(ddof=1) / np.sqrt(len(values))
        print(
            f"{name}: mean final loss {values.mean():.4g} [{values.mean() - half:.4g}, {values.mean() + half:.4g}]"
        )
    low, high = bootstrap_ratio_ci(losses["bfloat16"], losses["float32"], 10_000, 0)
    ratio = losses["bfloat16"].mean() / losses["float32"].mean()
    print(
        f"{args.optimizer}, {args.problems} problems, {config.eval.num_steps} steps, test seed "
        f"{args.test_seed}: bfloat16 / float32 = {ratio:.4f}, paired 95% CI [{low:.4f}, {high:.4f}]"
    )


if __name__ == "__main__":
    main()
