"""scripts/update_sizes.py's hybrid optimizer against the two plain optimizers it combines."""

import importlib.util
from pathlib import Path

import jax.numpy as jnp
import optax
import pytest

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


def test_largest_output_weights_reads_each_lstms_output_layer(tmp_path):
    import jax

    from l2lgd.checkpoint import save_weights
    from l2lgd.config import LSTMConfig
    from l2lgd.optimizers.learned import init_learned_weights

    config = LSTMConfig(groups="conv_fc")
    weights = init_learned_weights(jax.random.key(0), config)
    weights["conv"]["output"]["kernel"] = weights["conv"]["output"]["kernel"].at[3, 0].set(-0.02)
    weights["fc"]["output"]["kernel"] = weights["fc"]["output"]["kernel"].at[7, 0].set(0.5)
    path = tmp_path / "hybrid.msgpack"
    save_weights(path, weights, config, {})

    largest = update_sizes.largest_output_weights(f"{path}+conv=nag:0.01")
    assert largest == pytest.approx({"conv": 0.02, "fc": 0.5})
    assert update_sizes.largest_output_weights("nag:0.01") == {}
