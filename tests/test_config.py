"""Config loading, validation and overrides."""

from pathlib import Path

import pytest

from l2lgd.config import (
    Config,
    config_to_dict,
    load_config,
    shipped_config_names,
    shipped_configs_dir,
    with_overrides,
)
from l2lgd.errors import ConfigError

CONFIGS = shipped_configs_dir()
CHECKOUT_CONFIGS = Path(__file__).parent.parent / "configs"


def test_quadratic_config_file_equals_the_defaults():
    assert load_config(CONFIGS / "quadratic.yaml") == Config()


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_is_valid(path):
    assert isinstance(load_config(path), Config)


def test_a_shipped_config_loads_by_name_and_by_its_checkout_path():
    assert "mnist" in shipped_config_names()
    assert load_config("mnist") == load_config(CHECKOUT_CONFIGS / "mnist.yaml")
    assert load_config("mnist").task.name == "mnist"


def test_a_probe_differs_from_its_base_only_in_the_fields_it_sets():
    base, probe = config_to_dict(load_config("mnist")), config_to_dict(load_config("mnist_40units"))
    assert probe["task"].pop("hidden_sizes") == [40]
    base["task"].pop("hidden_sizes")
    assert probe == base


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_bases_resolve_recursively_and_sections_merge_field_by_field(tmp_path):
    write(tmp_path / "grand.yaml", "base: mnist\nmeta: {iterations: 7, unroll: 10}\n")
    write(tmp_path / "parent.yaml", "base: grand.yaml\nmeta: {num_steps: 50}\n")
    child = write(tmp_path / "child.yaml", "base: parent.yaml\nmeta: {iterations: 9}\n")
    config = load_config(child, ["seed=3"])
    expected = with_overrides(
        load_config("mnist"),
        ["meta.iterations=9", "meta.unroll=10", "meta.num_steps=50", "seed=3"],
    )
    assert config == expected


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"a.yaml": "base: b.yaml\n", "b.yaml": "base: a.yaml\n"}, "cycle"),
        ({"a.yaml": "base: a.yaml\n"}, "cycle"),
        ({"a.yaml": "base: mnsit\n"}, "unknown base 'mnsit'"),
        ({"a.yaml": "base: [mnist]\n"}, "base must name a config"),
        ({"a.yaml": "base: mnist\ntask: 3\n"}, "config section task must be a mapping"),
    ],
    ids=["two-file-cycle", "self-cycle", "unknown-base", "base-not-a-name", "bad-section"],
)
def test_bad_bases_are_config_errors(tmp_path, files, message):
    for name, text in files.items():
        write(tmp_path / name, text)
    with pytest.raises(ConfigError, match=message):
        load_config(tmp_path / "a.yaml")


def test_a_missing_checkout_path_names_the_shipped_config(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # outside a checkout: no configs/ folder here
    with pytest.raises(ConfigError, match="not found: configs/quadratic.yaml .*named quadratic"):
        load_config("configs/quadratic.yaml")
    assert load_config("quadratic") == Config()


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
    with pytest.raises(ConfigError, match="not found.*shipped configs: cifar10"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("meta: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("3\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(scalar)
