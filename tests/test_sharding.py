"""Splitting the problem batch over several devices changes no result."""

import json
import os
import subprocess
import sys

SCRIPT = """
import json, jax
from l2lgd.config import Config, with_overrides
from l2lgd.evaluate import learned_curves
from l2lgd.meta.unroll import init_meta_state, make_meta_iteration
from l2lgd.optimizers.lstm import init_lstm_weights
from l2lgd.tasks import make_task
config = with_overrides(Config(), ["meta.num_problems=8", "meta.num_steps=10", "meta.unroll=5"])
task = make_task(config.task)
weights = init_lstm_weights(jax.random.key(0), config.optimizer)
state = init_meta_state(weights, config.meta)
state, losses = make_meta_iteration(task, config.optimizer, config.meta)(state, jax.random.key(1))
curves = learned_curves(task, state.weights, config.optimizer, jax.random.key(2), 8, 10)
print(json.dumps({"devices": len(jax.devices()), "losses": losses.tolist(),
                  "final": curves[-1].tolist()}))
"""


def run_with_cpu_devices(count: int) -> dict:
    env = {**os.environ, "JAX_NUM_CPU_DEVICES": str(count), "JAX_PLATFORMS": "cpu"}
    output = subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, check=True
    ).stdout
    return json.loads(output.strip().splitlines()[-1])


def test_two_devices_give_the_single_device_results():
    single, double = run_with_cpu_devices(1), run_with_cpu_devices(2)
    assert (single["devices"], double["devices"]) == (1, 2)
    for key in ("losses", "final"):
        for a, b in zip(single[key], double[key], strict=True):
            assert abs(a - b) <= 1e-4 * max(1.0, abs(a)), (key, a, b)
