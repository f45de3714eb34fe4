"""Grouped learned optimizers: every parameter reaches exactly one LSTM, the one of its group.

The parameters are those of a tiny CIFAR CNN (8x8x3 images) with a leading batch-of-problems
axis, as the rollout carries them.
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
import pytest

from l2lgd.checkpoint import load_weights, save_weights
from l2lgd.config import PARAMETER_GROUPS, LSTMConfig, MetaConfig
from l2lgd.data import ImageDataset
from l2lgd.errors import CheckpointError, ConfigError
from l2lgd.meta.unroll import meta_loss
from l2lgd.optimizers.groups import (
    CIFAR_GROUPS,
    GROUP_RULES,
    GroupedArchitecture,
    group_labels,
    path_name,
)
from l2lgd.optimizers.learned import init_learned_weights, learned_architecture, learned_optimizer
from l2lgd.rollout import init_optimizee_state
from l2lgd.tasks import sample_batch
from l2lgd.tasks.cnn import CNNTask

RTOL, ATOL = 1e-5, 1e-6
NUM_PROBLEMS = 2
CONV_KERNELS = {"conv_0/kernel", "conv_1/kernel"}
CONFIGS = {
    "conv": LSTMConfig(hidden_size=6, preprocessing="log_sign", output_scale=0.1),
    "fc": LSTMConfig(hidden_size=4, num_layers=1, output_scale=0.5),
}
ARCHITECTURES = {group: learned_architecture(config) for group, config in CONFIGS.items()}
GROUPED = GroupedArchitecture(CIFAR_GROUPS, tuple(ARCHITECTURES.items()))


def assert_trees_allclose(actual, expected, rtol=RTOL, atol=ATOL):
    assert jax.tree.structure(actual) == jax.tree.structure(expected)
    for a, e in zip(jax.tree.leaves(actual), jax.tree.leaves(expected), strict=True):
        assert a.shape == e.shape
        np.testing.assert_allclose(a, e, rtol=rtol, atol=atol)


@pytest.fixture(scope="module")
def params():
    """A batch of tiny-CNN parameters: leaves of shape (NUM_PROBLEMS, ...)."""
    images = np.zeros((4, 8, 8, 3), np.uint8)
    labels = np.zeros(4, np.int32)
    dataset = ImageDataset("zeros", images, labels, images, labels, num_classes=3)
    task = CNNTask(dataset, conv_channels=(2, 3), fc_size=4)
    batch, _ = jax.jit(sample_batch, static_argnums=(0, 2))(task, jax.random.key(0), NUM_PROBLEMS)
    return batch


@pytest.fixture(scope="module")
def weights():
    """Random LSTM weights per group (the output layer too, which starts at zero)."""
    rng = np.random.default_rng(1)
    return {
        group: jax.tree.map(
            lambda w: w + 0.5 * rng.normal(size=w.shape).astype(np.float32),
            init_learned_weights(jax.random.key(i), config),
        )
        for i, (group, config) in enumerate(CONFIGS.items())
    }


def leaf_paths(tree) -> list[str]:
    return [path_name(path) for path, _ in jax.tree.leaves_with_path(tree)]


def test_cifar_groups_take_flax_default_conv_names_too():
    model = {"Conv_0": {"kernel": 0, "bias": 0}, "Dense_0": {"kernel": 0}, "Conv_1": {"kernel": 0}}
    assert group_labels(model, CIFAR_GROUPS) == {
        "Conv_0": {"kernel": "conv", "bias": "fc"},
        "Dense_0": {"kernel": "fc"},
        "Conv_1": {"kernel": "conv"},
    }


def random_grads(params, seed: int):
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda p: rng.normal(size=p.shape).astype(np.float32), params)


def test_cifar_groups_send_conv_kernels_to_conv_and_the_rest_to_fc(params):
    labels = group_labels(params, CIFAR_GROUPS)
    assert jax.tree.structure(labels) == jax.tree.structure(params)
    by_path = dict(zip(leaf_paths(params), jax.tree.leaves(labels), strict=True))
    assert len(by_path) == 14  # 2 conv + fc + logits (kernel, bias); 3 batch norms (scale, offset)
    assert {path for path, group in by_path.items() if group == "conv"} == CONV_KERNELS
    assert {path for path, group in by_path.items() if group == "fc"} == set(by_path) - CONV_KERNELS
    assert {"conv_0/bias", "bn_conv_0/scale", "bn_fc/offset", "logits/kernel"} <= set(by_path)


def test_first_matching_rule_wins_and_batched_leaves_get_their_path_labels(params):
    one_problem = jax.tree.map(lambda leaf: leaf[0], params)
    rules = (("kernels", r".*kernel"), ("conv", r"conv_\d+/.*"), ("rest", r".*"))
    labels = group_labels(params, rules)
    assert labels == group_labels(one_problem, rules)
    assert labels["conv_0"] == {"kernel": "kernels", "bias": "conv"}
    assert labels["bn_fc"] == {"scale": "rest", "offset": "rest"}


def test_every_coordinate_has_exactly_one_lstm_state(params, weights):
    optimizer = GROUPED.transformation(weights)
    state = optimizer.init(params)
    widths = {
        group: inner.inner_state.lstm_state[0][0].shape[-1]
        for group, inner in state.inner_states.items()
    }
    sizes = {path_name(path): leaf.size for path, leaf in jax.tree.leaves_with_path(params)}
    conv_size = sum(sizes[path] for path in CONV_KERNELS)
    assert widths == {"conv": conv_size, "fc": sum(sizes.values()) - conv_size}
    assert widths["conv"] == NUM_PROBLEMS * (5 * 5 * 3 * 2 + 5 * 5 * 2 * 3)


def test_grouped_optimizer_equals_each_groups_optimizer_on_its_leaves_alone(params, weights):
    """Three jitted steps of the grouped optimizer against each group's own optimizer run
    on a tree that holds only that group's leaves (the others None, so not raveled)."""
    grouped = GROUPED.transformation(weights)
    labels = group_labels(params, CIFAR_GROUPS)

    def only(group: str, tree):
        return jax.tree.map(lambda leaf, label: leaf if label == group else None, tree, labels)

    separate = {g: learned_optimizer(weights[g], CONFIGS[g]) for g in CONFIGS}
    grouped_state = grouped.init(params)
    separate_states = {g: separate[g].init(only(g, params)) for g in CONFIGS}
    grouped_update = jax.jit(grouped.update)
    for step in range(3):
        grads = random_grads(params, seed=10 + step)
        updates, grouped_state = grouped_update(grads, grouped_state, params)
        expected = {}
        for group, optimizer in separate.items():
            part, separate_states[group] = optimizer.update(
                only(group, grads), separate_states[group]
            )
            expected[group] = part
        merged = jax.tree.map(
            lambda label, conv, fc: {"conv": conv, "fc": fc}[label],
            labels,
            expected["conv"],
            expected["fc"],
            is_leaf=lambda x: x is None,
        )
        assert_trees_allclose(updates, merged)
    for group in CONFIGS:
        assert_trees_allclose(grouped_state.inner_states[group].inner_state, separate_states[group])

    # The routing matters: one shared LSTM (the conv one) proposes other updates for the fc leaves.
    shared = learned_optimizer(weights["conv"], CONFIGS["conv"])
    shared_updates, _ = shared.update(grads, shared.init(params))
    fc_difference = np.abs(shared_updates["fc"]["kernel"] - updates["fc"]["kernel"]).max()
    assert fc_difference > 1e-3


def test_a_leaf_that_matches_no_rule_is_a_clear_error(params, weights):
    rules = (("conv", r"conv_\d+/kernel"),)
    with pytest.raises(ConfigError, match=r"'bn_conv_0/offset' matches no group rule.*catch-all"):
        group_labels(params, rules)
    with pytest.raises(ConfigError, match="matches no group rule"):
        only_conv = GroupedArchitecture(rules, (("conv", ARCHITECTURES["conv"]),))
        only_conv.transformation({"conv": weights["conv"]}).init(params)


def test_groups_of_weights_architectures_and_rules_must_agree(weights):
    with pytest.raises(ConfigError, match=r"architectures: \['conv'\]; rules: \['conv', 'fc'\]"):
        GroupedArchitecture(CIFAR_GROUPS, (("conv", ARCHITECTURES["conv"]),))
    with pytest.raises(ConfigError, match=r"rules: \['conv', 'other'\]"):
        GroupedArchitecture((("conv", "conv.*"), ("other", ".*")), GROUPED.members)
    with pytest.raises(ConfigError, match=r"weights: \['conv'\]; architectures: \['conv', 'fc'\]"):
        GROUPED.transformation({"conv": weights["conv"]})
    with pytest.raises(ConfigError, match="invalid regex"):
        group_labels({"a": np.zeros(1)}, (("conv", "conv_("),))
    with pytest.raises(ConfigError, match="empty"):
        group_labels({"a": np.zeros(1)}, ())


def test_a_group_without_leaves_costs_nothing(weights):
    """An MLP has no conv kernels: the conv LSTM gets no coordinates and changes nothing."""
    mlp_params = {"Dense_0": {"kernel": np.ones((2, 3, 4), np.float32)}}
    optimizer = GROUPED.transformation(weights)
    state = optimizer.init(mlp_params)
    assert state.inner_states["conv"].inner_state.lstm_state[0][0].shape == (6, 0)
    updates, _ = optimizer.update(random_grads(mlp_params, 3), state)
    fc_only = learned_optimizer(weights["fc"], CONFIGS["fc"])
    expected, _ = fc_only.update(random_grads(mlp_params, 3), fc_only.init(mlp_params))
    assert_trees_allclose(updates, expected)


# --- The config route: optimizer.groups -------------------------------------------------------


def test_every_config_choice_has_a_rule_set():
    assert set(GROUP_RULES) == set(PARAMETER_GROUPS) - {"none"}


def test_learned_optimizer_dispatches_on_the_config_groups(params, weights):
    config = LSTMConfig(hidden_size=6, preprocessing="log_sign", groups="conv_fc")
    grouped_weights = init_learned_weights(jax.random.key(3), config)
    assert set(grouped_weights) == {"conv", "fc"}
    assert not np.allclose(  # each group has its own initial weights
        grouped_weights["conv"]["lstm_0"]["kernel"], grouped_weights["fc"]["lstm_0"]["kernel"]
    )
    grads = random_grads(params, 4)
    via_config = learned_optimizer(grouped_weights, config)
    single_architecture = learned_architecture(dataclasses.replace(config, groups="none"))
    direct = GroupedArchitecture(
        CIFAR_GROUPS, (("conv", single_architecture), ("fc", single_architecture))
    ).transformation(grouped_weights)
    actual, _ = via_config.update(grads, via_config.init(params))
    expected, _ = direct.update(grads, direct.init(params))
    assert_trees_allclose(actual, expected, rtol=0, atol=0)

    single = LSTMConfig(hidden_size=6)
    single_weights = init_learned_weights(jax.random.key(3), single)
    actual, _ = learned_optimizer(single_weights, single).update(
        grads, learned_optimizer(single_weights, single).init(params)
    )
    lstm = learned_architecture(single).transformation(single_weights)
    expected, _ = lstm.update(grads, lstm.init(params))
    assert_trees_allclose(actual, expected, rtol=0, atol=0)


def test_grouped_weights_round_trip_through_a_checkpoint(tmp_path, weights):
    config = LSTMConfig(hidden_size=6, groups="conv_fc")
    saved = init_learned_weights(jax.random.key(5), config)
    save_weights(tmp_path / "w.msgpack", saved, config, {"note": "test"})
    loaded, loaded_config, _ = load_weights(tmp_path / "w.msgpack")
    assert loaded_config == config
    assert_trees_allclose(loaded, saved, rtol=0, atol=0)
    with pytest.raises(CheckpointError, match="shapes"):  # grouped weights, single-LSTM config
        save_weights(tmp_path / "bad.msgpack", saved, LSTMConfig(hidden_size=6), {})
        load_weights(tmp_path / "bad.msgpack")


def test_the_meta_gradient_reaches_both_lstms_of_a_cnn():
    """Meta-training's loss through a grouped optimizer: each LSTM's weights get a gradient."""
    images = np.random.default_rng(0).integers(0, 255, (32, 8, 8, 3)).astype(np.uint8)
    labels = np.arange(32, dtype=np.int32) % 3
    task = CNNTask(
        ImageDataset("noise", images, labels, images, labels, 3), (2, 3), fc_size=4, batch_size=8
    )
    config = LSTMConfig(hidden_size=4, preprocessing="log_sign", output_scale=0.1)
    config = dataclasses.replace(config, groups="conv_fc")
    weights = jax.tree.map(
        lambda w: w + 0.1, init_learned_weights(jax.random.key(0), config)
    )  # a non-zero output layer, so that the updates depend on the weights
    meta_config = MetaConfig(num_problems=2, num_steps=4, unroll=4)
    params, problems = sample_batch(task, jax.random.key(1), 2)
    state = init_optimizee_state(learned_optimizer(weights, config), params)

    grads, _ = jax.grad(meta_loss, has_aux=True)(
        weights, task, config, meta_config, state, problems, jax.random.key(2)
    )
    for group in ("conv", "fc"):
        norm = np.sqrt(sum(np.sum(np.square(g)) for g in jax.tree.leaves(grads[group])))
        assert np.isfinite(norm) and norm > 0, group
