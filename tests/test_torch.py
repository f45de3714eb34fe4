"""l2lgd.torch.LearnedOptimizer against the JAX transformation: same weights, same trajectory."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import load_example, synthetic_dataset

from l2lgd.checkpoint import save_weights
from l2lgd.config import LSTMConfig, LSTMGACConfig, NTMConfig
from l2lgd.errors import L2LError
from l2lgd.optimizers.learned import init_learned_weights, learned_optimizer

torch = pytest.importorskip("torch", reason="the torch extra is not installed")
from l2lgd.torch import LearnedOptimizer  # noqa: E402

STEPS = 20
SHAPES = {"a": (5, 3), "b": (7,), "c": (2, 2, 4)}
"""Leading axes differ, so the JAX transformation lays coordinates out leaf after leaf."""


def _random_weights(config, seed=0):
    """Initial weights with a random (not zero) output layer, so that every step moves."""
    weights = init_learned_weights(jax.random.key(seed), config)

    def perturb(tree, key):
        out = dict(tree["output"])
        out["kernel"] = 0.5 * jax.random.normal(key, out["kernel"].shape)
        out["bias"] = jnp.full_like(out["bias"], 0.1)
        return {**tree, "output": out}

    if config.groups == "none":
        return perturb(weights, jax.random.key(seed + 1))
    return {g: perturb(w, jax.random.key(seed + i + 1)) for i, (g, w) in enumerate(weights.items())}


def _problem(seed=0):
    """Initial parameters and the per-coordinate scales of a quadratic loss whose gradients span
    both branches of the log/sign preprocessing (some below e^-10)."""
    rng = np.random.default_rng(seed)
    params = {k: rng.normal(size=s).astype(np.float32) for k, s in SHAPES.items()}
    scales = {k: (10.0 ** rng.uniform(-7, 1, size=s)).astype(np.float32) for k, s in SHAPES.items()}
    return params, scales


def _jax_run(weights, config, params, scales):
    opt = learned_optimizer(weights, config)
    params = jax.tree.map(jnp.asarray, params)
    state = opt.init(params)
    for _ in range(STEPS):
        grads = jax.tree.map(lambda p, s: s * p, params, scales)
        updates, state = opt.update(grads, state)
        params = optax.apply_updates(params, updates)
    return params, state


def _torch_run(path, params, scales, groups=None):
    tensors = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    if groups is None:
        opt = LearnedOptimizer([tensors[k] for k in sorted(tensors)], path)
    else:
        opt = LearnedOptimizer(
            [{"params": [tensors[k] for k in keys], "lstm": g} for g, keys in groups.items()], path
        )
    for _ in range(STEPS):
        opt.zero_grad()
        loss = sum((0.5 * torch.tensor(scales[k]) * t**2).sum() for k, t in tensors.items())
        loss.backward()
        opt.step()
    return {k: t.detach().numpy() for k, t in tensors.items()}, opt, tensors


@pytest.mark.parametrize(
    "config",
    [
        LSTMConfig(preprocessing="log_sign", output_scale=0.1),
        LSTMGACConfig(gac_cells=5),
        LSTMConfig(preprocessing="normalized", momentum_decays=(0.5, 0.9), output_scale=0.1),
        LSTMGACConfig(preprocessing="normalized", gac_cells=5, output_scale=0.1),
        LSTMConfig(preprocessing="normalized", log_rms_feature=True, output_scale=0.1),
    ],
    ids=["lstm_log_sign", "gac", "lstm_normalized", "gac_normalized", "lstm_log_rms"],
)
def test_torch_matches_jax_over_20_steps(config, tmp_path):
    weights = _random_weights(config)
    path = tmp_path / "opt.msgpack"
    save_weights(path, weights, config, {})
    params, scales = _problem()

    jax_params, jax_state = _jax_run(weights, config, params, scales)
    torch_params, opt, tensors = _torch_run(path, params, scales)

    for k in SHAPES:
        assert not np.allclose(torch_params[k], params[k])  # the optimizer moved them
        np.testing.assert_allclose(torch_params[k], jax_params[k], rtol=1e-5, atol=1e-6)
    # JAX's state: per layer (hidden, cell) of shape (hidden, coordinates), leaf after leaf in
    # sorted key order, as the torch parameters were given.
    jax_lstm = np.stack([np.stack(layer) for layer in jax_state.lstm_state])
    torch_lstm = torch.cat([opt.state[tensors[k]]["lstm_state"] for k in sorted(SHAPES)], dim=-1)
    np.testing.assert_allclose(torch_lstm.numpy(), jax_lstm, rtol=1e-5, atol=1e-6)
    if config.preprocessing == "normalized":
        torch_moments = torch.cat([opt.state[tensors[k]]["moments"] for k in sorted(SHAPES)], -1)
        np.testing.assert_allclose(torch_moments.numpy(), jax_state.moments, rtol=1e-5, atol=0)


def test_torch_groups_match_jax_multi_transform(tmp_path):
    config = LSTMConfig(preprocessing="log_sign", output_scale=0.1, groups="kernel_bias")
    weights = _random_weights(config)
    path = tmp_path / "opt.msgpack"
    save_weights(path, weights, config, {})
    params, scales = _problem(1)
    tree = {"dense": {"kernel": params["a"], "bias": params["b"]}, "conv": {"kernel": params["c"]}}
    tree_scales = {
        "dense": {"kernel": scales["a"], "bias": scales["b"]},
        "conv": {"kernel": scales["c"]},
    }

    jax_params, _ = _jax_run(weights, config, tree, tree_scales)
    torch_params, _, _ = _torch_run(
        path, params, scales, groups={"kernel": ["a", "c"], "other": ["b"]}
    )

    np.testing.assert_allclose(
        torch_params["a"], jax_params["dense"]["kernel"], rtol=1e-5, atol=1e-6
    )
    np.testing.assert_allclose(torch_params["b"], jax_params["dense"]["bias"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        torch_params["c"], jax_params["conv"]["kernel"], rtol=1e-5, atol=1e-6
    )


def test_state_dict_round_trip_continues_the_same_trajectory(tmp_path):
    config = LSTMConfig(preprocessing="log_sign", output_scale=0.1)
    path = tmp_path / "opt.msgpack"
    save_weights(path, _random_weights(config), config, {})
    params, scales = _problem(2)

    def steps(opt, tensors, count):
        for _ in range(count):
            opt.zero_grad()
            sum((0.5 * torch.tensor(scales[k]) * t**2).sum() for k, t in tensors.items()).backward()
            opt.step()

    straight = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    opt = LearnedOptimizer(list(straight.values()), path)
    steps(opt, straight, 10)

    first = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    opt_a = LearnedOptimizer(list(first.values()), path)
    steps(opt_a, first, 5)
    saved = opt_a.state_dict()
    opt_b = LearnedOptimizer(list(first.values()), path)
    opt_b.load_state_dict(saved)
    steps(opt_b, first, 5)

    for k in SHAPES:
        np.testing.assert_array_equal(first[k].detach().numpy(), straight[k].detach().numpy())


def test_shipped_cifar10_needs_named_lstm_groups():
    param = torch.zeros(3, requires_grad=True)
    with pytest.raises(L2LError, match="'lstm' naming one of them"):
        LearnedOptimizer([param], "cifar10")
    LearnedOptimizer([{"params": [param], "lstm": "conv"}], "cifar10")


def test_ntm_kinds_are_refused_with_a_clear_error(tmp_path):
    config = NTMConfig(kind="ntm_lbfgs")
    path = tmp_path / "ntm.msgpack"
    save_weights(path, init_learned_weights(jax.random.key(0), config), config, {})
    with pytest.raises(L2LError, match="not supported in PyTorch"):
        LearnedOptimizer([torch.zeros(2, requires_grad=True)], path)


def test_torch_example_runs_end_to_end_on_a_shrunken_config(tmp_path):
    example = load_example("torch_mnist")
    config = example.ExampleConfig(
        hidden_size=8,
        num_steps=20,
        batch_size=32,
        seeds=(1, 2),
        tuning_seeds=(3,),
        adam_learning_rates=(0.01, 0.1, 1.0),
        max_grid_growth=1,
    )
    summary = example.run_example(config, synthetic_dataset(), tmp_path)

    grid = {float(lr): loss for lr, loss in summary["adam_grid"].items()}
    assert len(grid) in (3, 4) and summary["adam_best_is_interior"] == (
        min(grid) < min(grid, key=grid.get) < max(grid)
    )
    learned = summary["results"]["learned (mnist)"]
    assert len(learned["mean_curve"]) == 20 and np.all(np.isfinite(learned["mean_curve"]))
    assert learned["final"] < np.log(2)  # below chance: the learned optimizer learns
    assert (tmp_path / "loss.png").read_bytes().startswith(b"\x89PNG")
    assert "| learned (mnist) |" in (tmp_path / "RESULTS.md").read_text()
