"""Nothing recompiles after the first call: meta-iterations and evaluations reuse one program."""

import jax

from l2lgd.evaluate import evaluation_run, learned_curves
from l2lgd.meta.unroll import init_meta_state, make_meta_iteration
from l2lgd.optimizers.learned import init_learned_weights
from l2lgd.tasks import make_task


def test_meta_iteration_compiles_once(tiny_config):
    task = make_task(tiny_config.task)
    meta_iteration = make_meta_iteration(tiny_config.optimizer, tiny_config.meta)
    state = init_meta_state(
        init_learned_weights(jax.random.key(0), tiny_config.optimizer), tiny_config.meta
    )
    for index in range(3):
        state, losses = meta_iteration(state, task, jax.random.key(index))
    assert losses.shape == (tiny_config.meta.num_steps // tiny_config.meta.unroll,)
    assert meta_iteration._cache_size() == 1


def test_evaluation_compiles_once_per_architecture(tiny_config):
    task = make_task(tiny_config.task)
    before = evaluation_run._cache_size()
    for seed in range(3):
        weights = init_learned_weights(jax.random.key(seed), tiny_config.optimizer)
        learned_curves(task, weights, tiny_config.optimizer, jax.random.key(seed), 4, 5)
    assert evaluation_run._cache_size() == before + 1
