"""Meta-training on a mixture of tasks: members built from named configs, taken in turn, each
validated on its own problems, and one optimizer that learns on all of them."""

import dataclasses
import json

import jax
import numpy as np
import pytest

from l2lgd import runs
from l2lgd.checkpoint import load_weights
from l2lgd.config import Config, ConfigError, LSTMConfig, MetaConfig, MixtureConfig, load_config
from l2lgd.meta.mixture import member_config
from l2lgd.meta.train import meta_train

pytestmark = pytest.mark.usefixtures("compilation_cache")

SMALL = "meta.num_problems=16 meta.num_steps=20 meta.unroll=10 meta.num_validation_problems=32"
MEMBERS = (
    f"quadratic task.dim=3 {SMALL}",
    f"quadratic task.dim=5 task.loss_scale=100 {SMALL}",
)
MIXTURE = Config(
    optimizer=LSTMConfig(hidden_size=8, preprocessing="normalized", output_scale=0.1),
    meta=MetaConfig(iterations=40, learning_rate=0.01, objective="log_sum", validate_every=20),
    mixture=MixtureConfig(members=MEMBERS),
).validate()


def _train(config, path):
    runs.create_run_dir(path, config)
    meta_train(config, path)
    records = [json.loads(line) for line in (path / "metrics.jsonl").read_text().splitlines()]
    return records, load_weights(runs.latest_weights_path(path))[0]


@pytest.fixture(scope="module")
def mixture_run(tmp_path_factory):
    """(metrics records, latest weights) of MIXTURE meta-trained from scratch."""
    return _train(MIXTURE, tmp_path_factory.mktemp("mixture") / "run")


def test_member_config_takes_the_mixtures_optimizer_and_shared_meta_settings():
    member = member_config(MIXTURE, MEMBERS[1])
    assert member.task.dim == 5 and member.task.loss_scale == 100.0
    assert member.optimizer == MIXTURE.optimizer
    assert (member.meta.learning_rate, member.meta.objective) == (0.01, "log_sum")
    assert member.meta.iterations == MIXTURE.meta.iterations
    assert (member.meta.num_problems, member.meta.num_steps) == (16, 20)  # the member's own
    assert member.mixture.members == ()


@pytest.mark.parametrize(
    "member, message",
    [
        ("no_such_config", "mixture member 'no_such_config'"),
        ("quadratic task.dim=0", "task.dim must be >= 1"),
        ("quadratic task.dim", "must be a config name followed by"),
    ],
)
def test_a_bad_member_is_a_config_error_naming_it(member, message):
    with pytest.raises(ConfigError, match=message):
        config = dataclasses.replace(MIXTURE, mixture=MixtureConfig(members=(member,)))
        member_config(config.validate(), member)


def test_mixture_section_loads_from_yaml(tmp_path):
    path = tmp_path / "general.yaml"
    path.write_text(
        "optimizer: {preprocessing: normalized}\n"
        f"mixture:\n  members:\n    - {MEMBERS[0]}\n    - {MEMBERS[1]}\n"
    )
    assert load_config(path).mixture.members == MEMBERS


def test_each_member_is_validated_and_every_one_learns(mixture_run):
    records, _ = mixture_run
    validations = [r for r in records if "validation_loss" in r]
    assert [r["iteration"] for r in validations] == [0, 20, 40]
    untrained, *trained = validations
    for record in validations:
        losses = record["member_validation_losses"]
        assert len(losses) == 2
        np.testing.assert_allclose(record["validation_loss"], np.sqrt(losses[0] * losses[1]))
    best = min(trained, key=lambda r: r["validation_loss"])
    for before, after in zip(
        untrained["member_validation_losses"], best["member_validation_losses"], strict=True
    ):
        assert after < 0.5 * before  # both the loss-1 and the loss-100 quadratics


def test_a_one_member_mixture_trains_exactly_as_the_member_alone(tmp_path):
    """The mixture's plumbing adds nothing: one member, alone, in turn at every iteration."""
    one = dataclasses.replace(
        MIXTURE,
        meta=dataclasses.replace(MIXTURE.meta, iterations=20),
        mixture=MixtureConfig(members=MEMBERS[:1]),
    )
    alone_config = member_config(one, MEMBERS[0])
    records, weights = _train(one, tmp_path / "one")
    alone_records, alone_weights = _train(alone_config, tmp_path / "alone")
    assert [r["meta_loss"] for r in records if "meta_loss" in r] == pytest.approx(
        [r["meta_loss"] for r in alone_records if "meta_loss" in r], rel=1e-6
    )
    for a, b in zip(jax.tree.leaves(weights), jax.tree.leaves(alone_weights), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6)


def test_members_read_the_mixtures_data_folder_unless_they_name_their_own():
    base = dataclasses.replace(MIXTURE, task=load_config("mnist").task)
    config = dataclasses.replace(base, task=dataclasses.replace(base.task, data_dir="/data/here"))
    assert member_config(config, "mnist task.activation=relu").task.data_dir == "/data/here"
    own = member_config(config, "mnist task.data_dir=/elsewhere")
    assert own.task.data_dir == "/elsewhere"
    assert not hasattr(member_config(config, MEMBERS[0]).task, "data_dir")
