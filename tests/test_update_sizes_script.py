"""scripts/update_sizes.py's hybrid optimizer against the two plain optimizers it combines."""

import importlib.util
from pathlib import Path

import jax.numpy as jnp
import optax

SPEC = importlib.util.spec_from_file_location(
    "update_sizes", Path(__file__).parents[1] / "scripts" / "update_sizes.py"
)
update_sizes = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(update_sizes)


def test_conv_by_baseline_takes_the_baselines_updates_on_conv_kernels_only():
    params = {
        "conv_0": {"kernel": jnp.ones((3, 3, 1, 2)), "bias": jnp.ones(2)},
        "dense": {"kernel": jnp.ones((4, 3))},
    }
    grads = {
        "conv_0": {"kernel": jnp.full((3, 3, 1, 2), 2.0), "bias": jnp.full(2, 3.0)},
        "dense": {"kernel": jnp.full((4, 3), 5.0)},
    }
    # stand-ins for the learned optimizer (SGD at 1) and the baseline (momentum at 0.1)
    hybrid = update_sizes.conv_by_baseline(optax.sgd(1.0), optax.sgd(0.1, momentum=0.9))
    state = hybrid.init(params)
    for _ in range(2):
        updates, state = hybrid.update(grads, state, params)
    # momentum's second step: -0.1 * (g + 0.9 g) on the conv kernel; SGD's -g elsewhere
    assert jnp.allclose(updates["conv_0"]["kernel"], -0.1 * 1.9 * 2.0)
    assert jnp.allclose(updates["conv_0"]["bias"], -3.0)
    assert jnp.allclose(updates["dense"]["kernel"], -5.0)
