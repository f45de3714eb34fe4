"""Config loading, validation and overrides."""

from pathlib import Path

import pytest

from l2lgd.config import (
    CIFARTaskConfig,
    Config,
    LSTMConfig,
    MNISTTaskConfig,
    NTMConfig,
    config_from_dict,
    config_to_dict,
    load_config,
    optimizer_config_from_dict,
    shipped_config_names,
    shipped_configs_dir,
    with_overrides,
)
from l2lgd.errors import ConfigError
from l2lgd.specs import flag_overrides, resolve_config

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


# --- Typed sections: one config class per task family and optimizer kind ----------------------

# Every task and optimizer field at its default, as versions before the typed sections wrote
# each run's config.yaml and each weights file's optimizer config.
FLAT_TASK_DEFAULTS = {
    "variant": "paper", "dim": 10, "init_std": 0.01, "hidden_sizes": [20],
    "activation": "sigmoid", "conv_channels": [16, 16, 16], "fc_size": 32, "batch_size": 128,
    "classes": [], "data_source": "files", "data_dir": "", "download": False, "image_size": 64,
    "content_source": "cifar10", "content_split": "train", "content_dir": "",
    "num_content_images": 1800, "style_image": "skimage:ihc.png", "vgg_weights": "",
    "vgg_pooling": "avg", "content_layers": ["relu2_2"], "style_layers": ["relu1_1", "relu2_1"],
    "content_weight": 1.0, "style_weight": 1.0, "tv_weight": 1.0,
}  # fmt: skip
FLAT_OPTIMIZER_DEFAULTS = {
    "hidden_size": 20, "num_layers": 2, "preprocessing": "none", "preprocessing_p": 10.0,
    "output_scale": 1.0, "groups": "none", "kind": "lstm", "gac_cells": 5, "ntm_read_heads": 1,
    "ntm_write_heads": 3, "ntm_window": 10, "ntm_memory_init": "identity",
    "ntm_update_from": "read", "ntm_write_activation": "tanh",
}  # fmt: skip


def test_the_task_name_and_optimizer_kind_choose_the_typed_section():
    config = load_config("cifar10")
    assert type(config.task) is CIFARTaskConfig and type(config.optimizer) is LSTMConfig
    ntm = with_overrides(Config(), ["optimizer.kind=ntm_bfgs", "optimizer.ntm_read_heads=2"])
    assert ntm.optimizer == NTMConfig(kind="ntm_bfgs", ntm_read_heads=2)
    # A section holds its family's fields only, and so does what is saved of it.
    assert set(config_to_dict(load_config("mnist"))["task"]) == {
        "name", "data_source", "data_dir", "download", "init_std", "batch_size", "classes",
        "hidden_sizes", "activation", "init",
    }  # fmt: skip
    assert "gac_cells" not in config_to_dict(Config())["optimizer"]


@pytest.mark.parametrize(
    ("config", "override", "message"),
    [
        ("mnist", "task.fc_size=64", "task.fc_size applies to task.name cifar10, not mnist"),
        ("quadratic", "task.batch_size=8", "applies to task.name mnist or cifar10, not quadratic"),
        ("cifar10", "task.image_size=32", "task.image_size applies to task.name style"),
        ("mnist", "optimizer.gac_cells=3", "applies to optimizer.kind lstm_gac or ntm_bfgs"),
        ("mnist_gac", "optimizer.ntm_window=4", "optimizer.ntm_window applies to"),
        ("mnist", "task.fc_size=many", "task.fc_size applies to task.name cifar10"),
    ],
)
def test_a_field_of_another_family_is_an_error_naming_its_family(config, override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(config, [override])


def test_configs_written_with_every_family_s_fields_still_load():
    raw = {
        "task": {**FLAT_TASK_DEFAULTS, "name": "mnist", "hidden_sizes": [40]},
        "optimizer": {**FLAT_OPTIMIZER_DEFAULTS, "output_scale": 0.1},
    }
    config = config_from_dict(raw)
    assert config.task == MNISTTaskConfig(hidden_sizes=(40,))
    assert config.optimizer == LSTMConfig(output_scale=0.1)
    stored = {**FLAT_OPTIMIZER_DEFAULTS, "kind": "ntm_lbfgs", "ntm_window": 4}
    assert optimizer_config_from_dict(stored) == NTMConfig(ntm_window=4)


def test_switching_the_family_keeps_the_shared_fields():
    config = with_overrides(load_config("mnist"), ["task.name=cifar10"])
    assert config.task == CIFARTaskConfig(init_std=0.01, batch_size=128)
    with pytest.raises(ConfigError, match="task.hidden_sizes applies to task.name mnist"):
        with_overrides(load_config("mnist", ["task.hidden_sizes=[40]"]), ["task.name=cifar10"])


def test_data_dir_applies_to_tasks_with_data_only():
    flags = flag_overrides(seed=3, data_dir=Path("/data/here"))
    mnist = resolve_config("mnist", None, [], flags)
    assert mnist.task.data_dir == "/data/here" and mnist.seed == 3
    quadratic = resolve_config("quadratic", None, [], flags)  # it reads no data: ignored
    assert quadratic.seed == 3 and not hasattr(quadratic.task, "data_dir")
