"""Config loading, validation and overrides."""

from pathlib import Path

import pytest

from l2lgd.config import Config, load_config, with_overrides
from l2lgd.errors import ConfigError

CONFIGS = Path(__file__).parent.parent / "configs"


def test_quadratic_config_file_equals_the_defaults():
    assert load_config(CONFIGS / "quadratic.yaml") == Config()


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_is_valid(path):
    assert isinstance(load_config(path), Config)


def test_override_changes_one_field():
    config = with_overrides(Config(), ["meta.learning_rate=0.01", "seed=7"])
    assert config.meta.learning_rate == 0.01
    assert config.seed == 7
    assert config.meta.unroll == Config().meta.unroll


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("meta.unroll=0", "meta.unroll"),
        ("meta.unroll=30", "multiple of meta.unroll"),
        ("meta.learning_rate=-1", "meta.learning_rate"),
        ("meta.learning_rate=abc", "meta.learning_rate"),
        ("meta.bogus=1", "meta.bogus"),
        ("task.variant=cubic", "task.variant"),
        ("task.name=imagenet", "task.name"),
        ("optimizer.preprocessing=zscore", "optimizer.preprocessing"),
        ("meta.second_derivatives=3", "meta.second_derivatives"),
        ("meta.iterations=1.5", "meta.iterations"),
        ("noequals", "section.field=value"),
    ],
)
def test_bad_values_name_the_field(override, message):
    with pytest.raises(ConfigError, match=message):
        with_overrides(Config(), [override])


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("meta: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("3\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(scalar)
