"""Optimizers: preprocessing, the coordinatewise LSTM against a NumPy LSTM, the optax wrapper, baselines."""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.flatten_util import ravel_pytree

from l2lgd.config import LSTMConfig, LSTMGACConfig, NTMConfig
from l2lgd.errors import ConfigError, L2LError
from l2lgd.optimizers import (
    BASELINE_NAMES,
    baseline,
    init_learned_weights,
    learned_architecture,
    learned_optimizer,
    log_sign_preprocess,
    lstm_update,
    parse_baseline_spec,
)
from l2lgd.optimizers.architecture import StateStorage
from l2lgd.optimizers.lstm import ravel_by_rows
from l2lgd.optimizers.preprocess import (
    normalized_features,
    num_features,
    preprocess,
    update_moments,
)
from l2lgd.rollout import vectorized

RTOL, ATOL = 1e-5, 1e-6


def assert_trees_allclose(actual, expected, rtol=RTOL, atol=ATOL):
    assert jax.tree.structure(actual) == jax.tree.structure(expected)
    for a, e in zip(jax.tree.leaves(actual), jax.tree.leaves(expected), strict=True):
        assert np.shape(a) == np.shape(e)
        np.testing.assert_allclose(a, e, rtol=rtol, atol=atol)


# --- Preprocessing -----------------------------------------------------------------------------


def numpy_log_sign(grad, p):
    """Appendix A of the paper, literally: (log|g|/p, sign g) if |g| >= e^-p, else (-1, e^p g)."""
    grad = np.asarray(grad, np.float64)
    large = np.abs(grad) >= np.exp(-p)
    with np.errstate(divide="ignore"):
        first = np.where(large, np.log(np.abs(grad)) / p, -1.0)
    second = np.where(large, np.sign(grad), np.exp(p) * grad)
    return np.stack([first, second], axis=-1)


@pytest.mark.parametrize("p", [1.0, 5.0, 10.0])
def test_log_sign_preprocess_matches_formula(p):
    t = np.exp(-p)
    grad = np.array(
        [3.0, -250.0, 2 * t, t, 0.5 * t, 1e-3 * t, 0.0, -0.5 * t, -t, -2 * t, -7.0, 1e-30],
        np.float32,
    )
    features = log_sign_preprocess(jnp.asarray(grad), p)
    expected = numpy_log_sign(grad, p)
    assert features.shape == (grad.size, 2)
    np.testing.assert_allclose(features, expected, rtol=1e-5, atol=1e-6)
    # Spot values, so that the reference itself is pinned down.
    np.testing.assert_allclose(features[0], [np.log(3.0) / p, 1.0], rtol=1e-6)
    np.testing.assert_allclose(features[4], [-1.0, 0.5], rtol=1e-5)  # below the threshold
    np.testing.assert_allclose(features[6], [-1.0, 0.0])  # zero
    np.testing.assert_allclose(features[8], [-1.0, -1.0], rtol=1e-5)  # at it: branches meet


def test_log_sign_preprocess_keeps_leading_shape_and_has_finite_gradient():
    grad = jnp.array([[0.0, 1e-9, -2.0], [4.0, -1e-6, 1e-3]])
    assert log_sign_preprocess(grad, 10.0).shape == (2, 3, 2)
    # d/dg: e^p on the small branch (also at g = 0, where the log branch is guarded), 1/(p g) above.
    dfeatures = jax.grad(lambda g: jnp.sum(log_sign_preprocess(g, 10.0)))(grad)
    g = np.asarray(grad, np.float64)
    with np.errstate(divide="ignore"):
        expected = np.where(np.abs(g) >= np.exp(-10.0), 1 / (10.0 * g), np.exp(10.0))
    np.testing.assert_allclose(dfeatures, expected, rtol=1e-5)


def test_preprocess_none_is_the_raw_gradient():
    grad = jnp.array([[1.5, -2.0, 0.0]])
    features = preprocess(grad, "none", 10.0)
    assert features.shape == (1, 3, 1)
    np.testing.assert_array_equal(features, np.asarray(grad)[..., None])


# --- The coordinatewise LSTM --------------------------------------------------------------------


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def numpy_lstm_step(weights, config, grads, state):
    """One step of the paper's optimizer, in float64, coordinates as rows.

    Per layer: gates = [input, hidden] @ kernel + bias, split into (i, f, g, o);
    c = sig(f + 1) c + sig(i) tanh(g); h = sig(o) tanh(c). Output: Dense(1) of the last h.
    `state` is a list of (h, c) per layer, each (coordinates, hidden_size).
    """
    w = jax.tree.map(lambda leaf: np.asarray(leaf, np.float64), weights)
    if config.preprocessing == "log_sign":
        layer_input = numpy_log_sign(grads, config.preprocessing_p)
    else:
        layer_input = np.asarray(grads, np.float64)[:, None]
    new_state = []
    for layer, (h, c) in enumerate(state):
        dense = w[f"lstm_{layer}"]
        gates = np.concatenate([layer_input, h], axis=1) @ dense["kernel"] + dense["bias"]
        i, f, g, o = np.split(gates, 4, axis=1)
        c = sigmoid(f + 1.0) * c + sigmoid(i) * np.tanh(g)
        h = sigmoid(o) * np.tanh(c)
        new_state.append((h, c))
        layer_input = h
    output = layer_input @ w["output"]["kernel"] + w["output"]["bias"]
    return config.output_scale * output[:, 0], new_state


def numpy_zero_state(config, num_coordinates):
    zeros = np.zeros((num_coordinates, config.hidden_size))
    return [(zeros, zeros) for _ in range(config.num_layers)]


@functools.cache
def random_weights(config, seed=0, scale=0.5):
    """LSTM weights in flax's layout with every entry random and non-zero.

    Drawn with NumPy (no jax.random compilation); init_learned_weights' output layer starts at zero.
    """
    rng = np.random.default_rng(seed)
    hidden, gates = config.hidden_size, 4 * config.hidden_size

    def dense(fan_in, fan_out):
        kernel = scale * rng.normal(size=(fan_in, fan_out))
        bias = scale * rng.normal(size=fan_out)
        return {"kernel": jnp.asarray(kernel, jnp.float32), "bias": jnp.asarray(bias, jnp.float32)}

    inputs = num_features(config.preprocessing, config.momentum_decays, config.log_rms_feature)
    weights = {"lstm_0": dense(inputs + hidden, gates)}
    for layer in range(1, config.num_layers):
        weights[f"lstm_{layer}"] = dense(2 * hidden, gates)
    weights["output"] = dense(hidden, 1)
    return weights


def random_gradients(seed, shape):
    """Gradients spanning many magnitudes, so both log_sign branches are taken."""
    rng = np.random.default_rng(seed)
    return (rng.normal(size=shape) * 10.0 ** rng.uniform(-6, 1, size=shape)).astype(np.float32)


LSTM_CONFIGS = [
    LSTMConfig(hidden_size=4, num_layers=2, preprocessing="log_sign"),
    LSTMConfig(hidden_size=4, num_layers=2, preprocessing="none", output_scale=2.0),
    LSTMConfig(
        hidden_size=3, num_layers=1, preprocessing="log_sign", preprocessing_p=5.0, output_scale=0.1
    ),
]
CONFIG = LSTM_CONFIGS[0]
NUM_COORDINATES = 7  # every LSTM test uses this many, so compiled primitives are reused


@pytest.mark.parametrize("config", LSTM_CONFIGS, ids=str)
def test_init_weights_have_the_layout_of_the_reference(config):
    # random_weights (and so the NumPy reference) assumes this layout; init_learned_weights makes it.
    initial = jax.eval_shape(lambda key: init_learned_weights(key, config), jax.random.key(0))
    assert jax.tree.map(np.shape, initial) == jax.tree.map(np.shape, random_weights(config))


@pytest.mark.parametrize("config", LSTM_CONFIGS, ids=str)
def test_lstm_update_matches_numpy_lstm_over_several_steps(config):
    weights = random_weights(config)
    num_coordinates = NUM_COORDINATES
    learned = learned_optimizer(weights, config)
    state = learned.init(jnp.zeros(num_coordinates)).lstm_state
    reference_state = numpy_zero_state(config, num_coordinates)
    architecture = learned_architecture(config)
    step = jax.jit(lambda grads, state: lstm_update(weights, architecture, grads, state))

    for t in range(4):
        grads = random_gradients(t, num_coordinates)
        updates, state = step(jnp.asarray(grads), state)
        expected, reference_state = numpy_lstm_step(weights, config, grads, reference_state)
        assert np.abs(expected).max() > 1e-3  # random weights: a real, non-trivial update
        np.testing.assert_allclose(updates, expected, rtol=1e-4, atol=1e-5)


def test_lstm_coordinates_are_independent():
    # Changing one coordinate's gradient changes that coordinate's update only.
    learned = learned_optimizer(random_weights(CONFIG), CONFIG)
    grads = jnp.asarray(random_gradients(0, NUM_COORDINATES))
    state = learned.init(grads)
    before, _ = learned.update(grads, state)
    after, _ = learned.update(grads.at[2].set(5.0), state)
    changed = ~np.isclose(before, after, rtol=RTOL, atol=ATOL)
    np.testing.assert_array_equal(changed, np.arange(NUM_COORDINATES) == 2)


# --- The learned optimizer as an optax transformation -------------------------------------------


def nested_params():
    """Leaves of different shapes (a scalar too), NUM_COORDINATES numbers in all."""
    return {"dense": {"kernel": jnp.ones((2, 2)), "bias": jnp.zeros(2)}, "scale": jnp.array(1.0)}


def nested_gradients(seed):
    leaves, treedef = jax.tree.flatten(nested_params())
    return jax.tree.unflatten(
        treedef,
        [jnp.asarray(random_gradients(seed + i, leaf.shape)) for i, leaf in enumerate(leaves)],
    )


def test_learned_optimizer_on_a_pytree_equals_lstm_update_on_the_flat_vector():
    weights = random_weights(CONFIG)
    learned = learned_optimizer(weights, CONFIG)
    params = nested_params()
    state = learned.init(params)
    flat_state = state.lstm_state

    for t in range(3):
        grads = nested_gradients(10 * t)
        updates, state = learned.update(grads, state, params)
        assert jax.tree.structure(updates) == jax.tree.structure(params)
        assert jax.tree.map(np.shape, updates) == jax.tree.map(np.shape, params)

        flat_grads, unravel = ravel_pytree(grads)
        flat_updates, flat_state = lstm_update(
            weights, learned_architecture(CONFIG), flat_grads, flat_state
        )
        assert_trees_allclose(updates, unravel(flat_updates))
        assert np.abs(flat_updates).max() > 1e-3
        params = optax.apply_updates(params, updates)


def test_bfloat16_state_halves_the_memory_and_follows_the_float32_trajectory():
    weights = random_weights(CONFIG)
    params = nested_params()
    exact, compact = (
        learned_optimizer(weights, CONFIG),
        learned_optimizer(weights, CONFIG, StateStorage(dtype=jnp.bfloat16)),
    )
    exact_state, compact_state = exact.init(params), compact.init(params)
    assert {leaf.dtype for leaf in jax.tree.leaves(compact_state)} == {jnp.dtype(jnp.bfloat16)}
    assert sum(x.nbytes for x in jax.tree.leaves(compact_state)) * 2 == sum(
        x.nbytes for x in jax.tree.leaves(exact_state)
    )
    for t in range(5):
        grads = nested_gradients(10 * t)
        exact_updates, exact_state = exact.update(grads, exact_state)
        compact_updates, compact_state = compact.update(grads, compact_state)
        assert {u.dtype for u in jax.tree.leaves(compact_updates)} == {jnp.dtype(jnp.float32)}
        # bfloat16 keeps 8 bits of mantissa: the state, and the updates it drives, agree to ~1%.
        assert_trees_allclose(compact_updates, exact_updates, rtol=0.05, atol=2e-3)
    assert not all(
        np.array_equal(a, b)
        for a, b in zip(
            jax.tree.leaves(compact_updates), jax.tree.leaves(exact_updates), strict=True
        )
    )


@pytest.mark.parametrize("size", [5 * 64 + 17, 4 * 64])
def test_blockwise_update_equals_the_all_at_once_update(size):
    """Blocks of 64 coordinates, the last one padded or not; the padding never leaks."""
    weights = random_weights(CONFIG)
    params = {"w": jnp.zeros((size,))}
    whole = learned_optimizer(weights, CONFIG)
    blocked = learned_optimizer(weights, CONFIG, StateStorage(block=64))
    whole_state, blocked_state = whole.init(params), blocked.init(params)
    blocks = -(-size // 64)
    assert {leaf.shape for leaf in jax.tree.leaves(blocked_state)} == {(blocks, 4, 64)}
    for t in range(3):
        grads = {"w": jnp.asarray(random_gradients(t, (size,)))}
        expected, whole_state = jax.jit(whole.update)(grads, whole_state)
        updates, blocked_state = jax.jit(blocked.update)(grads, blocked_state)
        assert np.abs(expected["w"]).max() > 1e-3
        assert_trees_allclose(updates, expected)
    for got, want in zip(
        jax.tree.leaves(blocked_state), jax.tree.leaves(whole_state.lstm_state), strict=True
    ):
        by_coordinate = np.asarray(got).transpose(1, 0, 2).reshape(4, blocks * 64)[:, :size]
        np.testing.assert_allclose(by_coordinate, want, rtol=RTOL, atol=ATOL)


def test_small_problems_and_global_averaging_cells_are_not_blocked():
    storage = StateStorage(block=64)
    weights = random_weights(CONFIG)
    state = learned_optimizer(weights, CONFIG, storage).init({"w": jnp.zeros((127,))})
    assert {leaf.shape for leaf in jax.tree.leaves(state)} == {(4, 127)}
    gac = LSTMGACConfig(hidden_size=4, gac_cells=2)
    gac_weights = init_learned_weights(jax.random.key(0), gac)
    gac_state = learned_optimizer(gac_weights, gac, storage).init({"w": jnp.zeros((1000,))})
    assert {leaf.shape for leaf in jax.tree.leaves(gac_state)} == {(gac.hidden_size, 1000)}


# --- The "normalized" preprocessing --------------------------------------------------------------

NORMALIZED = LSTMConfig(
    hidden_size=4, preprocessing="normalized", momentum_decays=(0.5, 0.9), output_scale=0.1
)


def numpy_normalized_features(gradient_steps, second_moment_decay, momentum_decays):
    """The features after each step, literally: v = g^2 and m_k = g at a coordinate's first
    nonzero gradient, then v <- b v + (1 - b) g^2 and m_k <- b_k m_k + (1 - b_k) g; the
    features are g / sqrt(v) and m_k / sqrt(v) (0 while v is 0)."""
    v = np.zeros_like(gradient_steps[0], np.float64)
    momenta = [np.zeros_like(v) for _ in momentum_decays]
    for g in np.asarray(gradient_steps, np.float64):
        started = v > 0
        v = np.where(started, second_moment_decay * v + (1 - second_moment_decay) * g**2, g**2)
        momenta = [
            np.where(started, b * m + (1 - b) * g, g)
            for b, m in zip(momentum_decays, momenta, strict=True)
        ]
        with np.errstate(divide="ignore", invalid="ignore"):
            features = [np.where(v > 0, x / np.sqrt(v), 0.0) for x in (g, *momenta)]
    return np.stack(features)


def test_normalized_features_match_the_running_moments_formula():
    rng = np.random.default_rng(0)
    steps = [random_gradients(t, (9,)) for t in range(6)]
    for g in steps[:2]:
        g[:3] = 0.0  # coordinates 0-2 see their first nonzero gradient at step 2 ...
    for g in steps:
        g[0] = 0.0  # ... except coordinate 0, which never does
    steps[4] = steps[4] * rng.uniform(0.5, 2.0, size=9).astype(np.float32)
    moments = jnp.zeros((3, 9))
    for g in steps:
        moments = update_moments(jnp.asarray(g), moments, 0.8, (0.5, 0.9))
    features = normalized_features(jnp.asarray(steps[-1]), moments)
    expected = numpy_normalized_features(steps, 0.8, (0.5, 0.9))
    np.testing.assert_allclose(features, expected, rtol=1e-5, atol=1e-6)
    assert np.all(np.asarray(features)[:, 0] == 0.0)

    with_log_rms = normalized_features(jnp.asarray(steps[-1]), moments, log_rms_p=2.0)
    np.testing.assert_allclose(with_log_rms[:3], expected, rtol=1e-5, atol=1e-6)
    # log(RMS) / p from the mean square's definition; -1 where it is below e^-p (coordinate 0)
    mean_square = np.asarray(moments[0], np.float64)
    with np.errstate(divide="ignore"):
        log_rms = np.where(mean_square >= np.exp(-4.0), 0.5 * np.log(mean_square) / 2.0, -1.0)
    np.testing.assert_allclose(with_log_rms[3], log_rms, rtol=1e-5, atol=1e-6)
    scale_row = np.asarray(with_log_rms[3])
    assert scale_row[0] == -1.0 and (scale_row[1:] == -1.0).any() and (scale_row > -1.0).any()


@pytest.mark.parametrize("loss_scale", [1e-4, 1e3])
def test_normalized_updates_do_not_change_when_the_loss_is_rescaled(loss_scale):
    """The gradients times c give the same updates with "normalized", and not with "log_sign"
    (so this check can fail)."""
    grads = [{"w": jnp.asarray(random_gradients(t, (NUM_COORDINATES,)))} for t in range(4)]
    with_log_rms = dataclasses.replace(NORMALIZED, log_rms_feature=True)
    for config, invariant in [(NORMALIZED, True), (CONFIG, False), (with_log_rms, False)]:
        opt = learned_optimizer(random_weights(config), config)
        runs = []
        for scale in (1.0, loss_scale):
            state = opt.init(grads[0])
            for g in grads:
                updates, state = opt.update({"w": scale * g["w"]}, state)
            runs.append(updates["w"])
        same = np.allclose(runs[0], runs[1], rtol=1e-4, atol=1e-7)
        assert same == invariant, config.preprocessing


def test_normalized_blockwise_update_equals_the_all_at_once_update():
    size = 3 * 64 + 5
    weights = random_weights(NORMALIZED)
    params = {"w": jnp.zeros((size,))}
    whole = learned_optimizer(weights, NORMALIZED)
    blocked = learned_optimizer(weights, NORMALIZED, StateStorage(block=64))
    whole_state, blocked_state = whole.init(params), blocked.init(params)
    assert blocked_state.moments.shape == (4, 3, 64)
    for t in range(3):
        grads = {"w": jnp.asarray(random_gradients(t, (size,)))}
        expected, whole_state = jax.jit(whole.update)(grads, whole_state)
        updates, blocked_state = jax.jit(blocked.update)(grads, blocked_state)
        assert_trees_allclose(updates, expected)
    by_coordinate = np.asarray(blocked_state.moments).transpose(1, 0, 2).reshape(3, -1)[:, :size]
    np.testing.assert_allclose(by_coordinate, whole_state.moments, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize(
    "config",
    [NORMALIZED, LSTMGACConfig(hidden_size=4, gac_cells=2, preprocessing="normalized")],
    ids=["lstm", "gac"],
)
def test_vectorized_normalized_optimizer_equals_each_problem_alone(config):
    weights = random_weights(config)
    params = {"w": jnp.zeros((3, 5))}
    batched = vectorized(learned_optimizer(weights, config))
    alone = learned_optimizer(weights, config)
    state = batched.init(params)
    states = [alone.init({"w": params["w"][i]}) for i in range(3)]
    for t in range(3):
        grads = {"w": jnp.asarray(random_gradients(t, (3, 5)))}
        updates, state = jax.jit(batched.update)(grads, state, params)
        for i in range(3):
            expected, states[i] = alone.update({"w": grads["w"][i]}, states[i])
            np.testing.assert_allclose(updates["w"][i], expected["w"], rtol=RTOL, atol=ATOL)
    assert np.abs(np.asarray(updates["w"])).max() > 1e-3


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"kind": "ntm_lbfgs", "preprocessing": "normalized"}, "kinds lstm and lstm_gac"),
        ({"second_moment_decay": 1.0}, "second_moment_decay must be < 1"),
        ({"momentum_decays": (0.9, -0.1)}, r"momentum_decays\[\] must be >= 0"),
        ({"log_rms_feature": True, "preprocessing": "log_sign"}, "needs optimizer.preprocessing"),
    ],
)
def test_normalized_configs_reject_what_cannot_run(changes, message):
    cls = NTMConfig if "kind" in changes else LSTMConfig
    with pytest.raises(ConfigError, match=message):
        cls(**changes).validate()


def test_ntm_refuses_a_state_dtype():
    config = NTMConfig(kind="ntm_lbfgs")
    weights = init_learned_weights(jax.random.key(0), config)
    with pytest.raises(ConfigError, match="not for NTMs"):
        learned_optimizer(weights, config, StateStorage(dtype=jnp.bfloat16))


def test_learned_optimizer_composes_with_clipping():
    weights = random_weights(CONFIG)
    max_norm = 0.05
    chained = optax.chain(optax.clip_by_global_norm(max_norm), learned_optimizer(weights, CONFIG))
    alone = learned_optimizer(weights, CONFIG)
    params = nested_params()
    chained_state, alone_state = chained.init(params), alone.init(params)

    for t in range(3):
        grads = nested_gradients(10 * t)
        norm = np.sqrt(sum(np.sum(np.square(leaf)) for leaf in jax.tree.leaves(grads)))
        assert norm > max_norm  # so that clipping acts
        clipped = jax.tree.map(lambda g, norm=norm: g * (max_norm / norm), grads)

        updates, chained_state = chained.update(grads, chained_state, params)
        expected, alone_state = alone.update(clipped, alone_state, params)
        assert_trees_allclose(updates, expected, rtol=1e-4, atol=1e-5)
        if t == 0:  # clipping changed the result
            unclipped, _ = alone.update(grads, alone.init(params), params)
            assert not np.allclose(ravel_pytree(unclipped)[0], ravel_pytree(updates)[0])


def test_learned_optimizer_update_compiles_once():
    traces = []

    @jax.jit
    def step(weights, grads, state):
        traces.append(None)  # runs only when jax traces (and so compiles) the function
        return learned_optimizer(weights, CONFIG).update(grads, state)

    weights = random_weights(CONFIG)
    state = learned_optimizer(weights, CONFIG).init(nested_params())
    first, state = step(weights, nested_gradients(0), state)
    second, state = step(random_weights(CONFIG, seed=5), nested_gradients(1), state)
    assert len(traces) == 1
    assert not np.allclose(ravel_pytree(first)[0], ravel_pytree(second)[0])  # really recomputed


def test_initial_weights_propose_no_update():
    weights = init_learned_weights(jax.random.key(0), CONFIG)
    assert not np.any(np.asarray(weights["output"]["kernel"]))
    learned = learned_optimizer(weights, CONFIG)
    params = nested_params()
    state = learned.init(params)
    for t in range(2):
        updates, new_state = learned.update(nested_gradients(t), state, params)
        for leaf in jax.tree.leaves(updates):
            np.testing.assert_array_equal(leaf, 0.0)
        # ...though the LSTM itself runs: its state moves.
        assert not np.allclose(ravel_pytree(new_state)[0], ravel_pytree(state)[0])
        state = new_state


# --- Baselines ----------------------------------------------------------------------------------


def numpy_baseline_updates(name, lr, grads):
    """Hand-written updates for a sequence of gradients, as optax defines each optimizer."""
    g0 = np.asarray(grads[0], np.float64)
    trace, nu, m, v = (np.zeros_like(g0) for _ in range(4))
    updates = []
    for t, g in enumerate(grads, start=1):
        g = np.asarray(g, np.float64)
        if name == "sgd":
            u = -lr * g
        elif name == "momentum":  # optax.trace: trace = g + mu * trace
            trace = g + 0.9 * trace
            u = -lr * trace
        elif name == "nag":  # optax.trace(nesterov=True): step along g + mu * (new trace)
            trace = g + 0.9 * trace
            u = -lr * (g + 0.9 * trace)
        elif name == "rmsprop":  # optax.scale_by_rms: eps inside the square root by default
            nu = 0.99 * nu + 0.01 * g**2
            u = -lr * g / np.sqrt(nu + 1e-8)
        elif name == "adam":
            m = 0.9 * m + 0.1 * g
            v = 0.999 * v + 0.001 * g**2
            m_hat, v_hat = m / (1 - 0.9**t), v / (1 - 0.999**t)
            u = -lr * m_hat / (np.sqrt(v_hat) + 1e-8)
        else:
            raise AssertionError(name)
        updates.append(u)
    return updates


@pytest.mark.parametrize("name", BASELINE_NAMES)
@pytest.mark.parametrize("lr", [0.1, 0.003])
def test_baseline_first_steps_match_hand_written_update(name, lr):
    rng = np.random.default_rng(0)
    # Coordinates of very different sizes, so that eps and its placement matter somewhere.
    magnitudes = np.array([1.0, 10.0, 1e-2, 1e-4, 1e-6])
    grads = [(rng.normal(size=5) * magnitudes * s).astype(np.float32) for s in (1.0, 3.0, 0.1)]
    optimizer = baseline(name, lr)
    params = jnp.zeros(5)
    state = optimizer.init(params)
    expected = numpy_baseline_updates(name, lr, grads)
    for g, e in zip(grads, expected, strict=True):
        updates, state = optimizer.update(jnp.asarray(g), state, params)
        params = optax.apply_updates(params, updates)
        np.testing.assert_allclose(updates, e, rtol=1e-5, atol=1e-8)


def test_baselines_are_the_papers_and_distinct():
    assert BASELINE_NAMES == ("sgd", "momentum", "nag", "rmsprop", "adam")
    # Guards the references above: two identical ones would let a wrong name pass.
    grads = [np.array([1.0, -2.0]), np.array([0.5, 0.5]), np.array([-3.0, 0.1])]
    finals = {
        name: numpy_baseline_updates(name, 0.1, grads)[-1].tobytes() for name in BASELINE_NAMES
    }
    assert len(set(finals.values())) == len(BASELINE_NAMES)


def test_baseline_accepts_a_traced_learning_rate():
    grads = jnp.array([1.0, -2.0])

    @jax.jit
    def first_update(lr):
        optimizer = baseline("adam", lr)
        return optimizer.update(grads, optimizer.init(grads))[0]

    np.testing.assert_allclose(
        first_update(jnp.float32(0.2)), numpy_baseline_updates("adam", 0.2, [grads])[0], rtol=1e-5
    )


def test_unknown_baseline_lists_the_valid_names():
    with pytest.raises(L2LError, match="adagrad") as error:
        baseline("adagrad", 0.1)
    for name in BASELINE_NAMES:
        assert name in str(error.value)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [("adam:0.1", ("adam", 0.1)), ("sgd:1e-3", ("sgd", 1e-3)), ("rmsprop:2", ("rmsprop", 2.0))],
)
def test_parse_baseline_spec(spec, expected):
    assert parse_baseline_spec(spec) == expected


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("adam", "needs a learning rate"),
        ("adam:", "not a number"),
        ("adam:fast", "not a number"),
        ("adam:0", "must be > 0"),
        ("adam:-0.1", "must be > 0"),
        ("adam:nan", "must be > 0"),
        ("adam:inf", "must be > 0"),
        ("adam:1e999", "must be > 0"),
        ("adagrad:0.1", "unknown baseline"),
        (":0.1", "unknown baseline"),
    ],
)
def test_parse_baseline_spec_rejects_bad_specs(spec, message):
    with pytest.raises(L2LError, match=message):
        parse_baseline_spec(spec)


@pytest.mark.parametrize("num_problems", [1, 3])
def test_vectorized_learned_optimizer_equals_each_problem_alone_and_compiles_once(num_problems):
    """The rollout's vmap of the one-problem optimizer: each problem of a pytree batch is
    optimized as if alone, and a second jitted step traces nothing new."""
    weights = random_weights(CONFIG)
    rng = np.random.default_rng(3)
    shape = (num_problems, 2, 2)
    params = {"w": jnp.asarray(rng.normal(size=shape), jnp.float32), "b": jnp.zeros(shape[:2])}
    batched = vectorized(learned_optimizer(weights, CONFIG))
    traces = []

    @jax.jit
    def step(grads, state):
        traces.append(None)
        return batched.update(grads, state, params)

    state = batched.init(params)
    alone = learned_optimizer(weights, CONFIG)
    states = [
        alone.init(jax.tree.map(lambda leaf, i=i: leaf[i], params)) for i in range(num_problems)
    ]
    for t in range(2):
        grads = jax.tree.map(lambda p, t=t: jnp.asarray(random_gradients(t, p.shape)), params)
        updates, state = step(grads, state)
        for i in range(num_problems):
            expected, states[i] = alone.update(
                jax.tree.map(lambda leaf, i=i: leaf[i], grads), states[i]
            )
            assert_trees_allclose(jax.tree.map(lambda leaf, i=i: leaf[i], updates), expected)
    assert len(traces) == 1
    assert np.abs(ravel_pytree(updates)[0]).max() > 1e-3


def test_a_vmap_over_several_weights_equals_each_weights_alone():
    """The coordinatewise layers' vmap rule also serves a vmap over optimizers (a sweep)."""
    weights = [random_weights(CONFIG, seed=seed) for seed in (1, 2)]
    grads = jnp.asarray(random_gradients(4, NUM_COORDINATES))

    def step(weights):
        learned = learned_optimizer(weights, CONFIG)
        return learned.update(grads, learned.init(grads))[0]

    swept = jax.vmap(step)(jax.tree.map(lambda *leaves: jnp.stack(leaves), *weights))
    for index, one in enumerate(weights):
        np.testing.assert_allclose(swept[index], step(one), rtol=RTOL, atol=ATOL)
    assert not np.allclose(swept[0], swept[1])


def test_ravel_by_rows_lays_out_row_after_row_and_inverts():
    rng = np.random.default_rng(0)
    batch = {
        "a": jnp.asarray(rng.normal(size=(3, 2, 2))),
        "b": jnp.asarray(rng.normal(size=(3, 4))),
    }
    flat, unravel = ravel_by_rows(batch)
    rows = [ravel_pytree(jax.tree.map(lambda leaf, i=i: leaf[i], batch))[0] for i in range(3)]
    np.testing.assert_array_equal(flat, jnp.concatenate(rows))  # row 0's coordinates, then 1's
    assert_trees_allclose(unravel(flat), batch, rtol=0, atol=0)
    uneven = {"a": jnp.ones((3, 2)), "b": jnp.zeros(5), "c": jnp.array(2.0)}
    np.testing.assert_array_equal(ravel_by_rows(uneven)[0], ravel_pytree(uneven)[0])
