"""Experiment configuration: frozen, hashable dataclasses loaded from YAML and validated field by field.

A config file has the sections `task`, `optimizer`, `meta`, `eval` and (optionally) `mixture`,
plus a top-level `seed`.
Every field has a type and a valid range; an unknown key, a wrong type or an out-of-range value
is a `ConfigError` naming the field. CLI overrides use the same dotted names
(`meta.learning_rate=0.003`).

The `task` and `optimizer` sections are typed per family: `task.name` picks the task family's
config (`QuadraticTaskConfig`, `MNISTTaskConfig`, `CIFARTaskConfig`, `StyleTaskConfig`) and
`optimizer.kind` the learned optimizer's (`LSTMConfig`, `LSTMGACConfig`, `NTMConfig`); each holds
only the fields that family uses, so a field of another family (`task.fc_size` in an MNIST
config) is an error that names the family it belongs to.

A file may name a `base` config (a shipped config's name, e.g. `base: mnist`, or a file path
relative to its own folder) and give only the fields it changes; bases resolve recursively.
The configs of the paper's experiments ship with the package (`l2lgd/configs/`), so a bare name
(`--config mnist`) works from any folder.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from l2lgd.errors import ConfigError

QUADRATIC_VARIANTS = ("paper", "deepmind", "conditioned")
ACTIVATIONS = ("sigmoid", "relu", "tanh")
MLP_INITS = ("normal", "flax")
DATA_SOURCES = ("files", "tfds")
PREPROCESSINGS = ("none", "log_sign", "normalized")
PARAMETER_GROUPS = ("none", "conv_fc", "kernel_bias")
NTM_KINDS = ("ntm_bfgs", "ntm_lbfgs")
NTM_MEMORY_INITS = ("identity", "zero")
NTM_UPDATE_SOURCES = ("read", "controller")
NTM_WRITE_ACTIVATIONS = ("tanh", "none")
META_OBJECTIVES = ("sum", "log_sum")
REMAT_POLICIES = ("none", "steps", "sqrt")
CONTENT_SOURCES = ("cifar10", "folder")
CONTENT_SPLITS = ("train", "test")
VGG_POOLINGS = ("avg", "max")
BASE_KEY = "base"
# Shrinks any experiment to a check that every step runs, in seconds; its numbers mean nothing
# (`l2l reproduce --profile smoke`, and the tests' budget).
SMOKE_OVERRIDES = (
    "meta.iterations=6",
    "meta.num_problems=8",
    "meta.num_steps=20",
    "meta.unroll=10",
    "meta.validate_every=3",
    "meta.num_validation_problems=16",
    "eval.num_problems=16",
    "eval.num_steps=20",
    "eval.num_tuning_problems=16",
    "eval.lr_min=0.001",
    "eval.lr_max=1.0",
    "eval.lr_per_decade=2",
)
CONFIG_SUFFIX = ".yaml"


@dataclass(frozen=True)
class QuadraticTaskConfig:
    """Random quadratics f(theta) = loss_scale ||W theta - y||^2 of `dim` dimensions
    (`l2lgd.tasks.quadratic`): `variant` "paper", "deepmind" or "conditioned" (how W and y are
    drawn; "conditioned" gives the Hessian `condition_number`); initial theta ~ N(0, init_std^2).
    `loss_scale_spread` s > 1 multiplies each problem's loss by its own factor, log-uniform in
    [1/s, s]."""

    name: str = "quadratic"
    variant: str = "paper"
    dim: int = 10
    init_std: float = 0.01
    condition_number: float = 1.0
    loss_scale: float = 1.0
    loss_scale_spread: float = 1.0

    def validate(self) -> None:
        _check_family("task.name", self.name, "quadratic")
        _check_choice("task.variant", self.variant, QUADRATIC_VARIANTS)
        _check_range("task.dim", self.dim, low=1)
        _check_range("task.init_std", self.init_std, low=0.0)
        _check_range("task.condition_number", self.condition_number, low=1.0)
        _check_range("task.loss_scale", self.loss_scale, low=0.0, strict=True)
        _check_range("task.loss_scale_spread", self.loss_scale_spread, low=1.0)
        if self.condition_number != 1.0 and self.variant != "conditioned":
            raise ConfigError(
                "task.condition_number applies to task.variant 'conditioned' only, "
                f"got variant {self.variant!r}"
            )


@dataclass(frozen=True)
class DataLocationConfig:
    """Where a task's images come from: `data_source` "files" (the files in `data_dir`, or
    $L2LGD_DATA_DIR when empty) or "tfds" (tensorflow-datasets; `download` lets it fetch)."""

    name: str = ""
    data_source: str = "files"
    data_dir: str = ""
    download: bool = False

    def validate(self) -> None:
        _check_choice("task.data_source", self.data_source, DATA_SOURCES)


@dataclass(frozen=True)
class ClassifierTaskConfig(DataLocationConfig):
    """What the image classifiers share: minibatches of `batch_size` images of `classes` (a
    subset of the labels, renumbered in the given order; empty: all), initial weights
    ~ N(0, init_std^2)."""

    init_std: float = 0.01
    batch_size: int = 128
    classes: tuple[int, ...] = ()

    def validate(self) -> None:
        super().validate()
        _check_range("task.init_std", self.init_std, low=0.0)
        _check_range("task.batch_size", self.batch_size, low=1)
        if self.classes and (len(set(self.classes)) != len(self.classes) or len(self.classes) < 2):
            raise ConfigError(
                f"task.classes must name at least 2 distinct labels, got {self.classes}"
            )
        for label in self.classes:
            _check_range("task.classes[]", label, low=0)


@dataclass(frozen=True)
class MNISTTaskConfig(ClassifierTaskConfig):
    """An MLP on MNIST (`l2lgd.tasks.mlp`): `hidden_sizes` units per hidden layer, `activation`;
    `init` "normal" (N(0, init_std^2), the original code's) or "flax" (flax's Dense defaults)."""

    name: str = "mnist"
    hidden_sizes: tuple[int, ...] = (20,)
    activation: str = "sigmoid"
    init: str = "normal"

    def validate(self) -> None:
        _check_family("task.name", self.name, "mnist")
        super().validate()
        for size in self.hidden_sizes:
            _check_range("task.hidden_sizes[]", size, low=1)
        _check_choice("task.activation", self.activation, ACTIVATIONS)
        _check_choice("task.init", self.init, MLP_INITS)


@dataclass(frozen=True)
class CIFARTaskConfig(ClassifierTaskConfig):
    """A CNN on CIFAR-10 (`l2lgd.tasks.cnn`): 5x5 conv layers of `conv_channels` channels, then a
    fully connected layer of `fc_size` units."""

    name: str = "cifar10"
    conv_channels: tuple[int, ...] = (16, 16, 16)
    fc_size: int = 32

    def validate(self) -> None:
        _check_family("task.name", self.name, "cifar10")
        super().validate()
        for channels in self.conv_channels:
            _check_range("task.conv_channels[]", channels, low=1)
        _check_range("task.fc_size", self.fc_size, low=1)


@dataclass(frozen=True)
class StyleTaskConfig(DataLocationConfig):
    """Neural Art (`l2lgd.tasks.style`) on `image_size` x `image_size` images.

    Content images come from `content_source` ("cifar10": the first `num_content_images` of
    CIFAR-10's `content_split`, upsampled, read from the data location; "folder": the image files
    in `content_dir`); the `style_image` is a path or PACKAGE:FILE (see `l2lgd.data.images`);
    VGG-19 weights come from the `.npz` file `vgg_weights` (empty: fixed random weights). The
    loss weighs the content, style and total-variation terms of the named VGG layers.
    """

    name: str = "style"
    image_size: int = 64
    content_source: str = "cifar10"
    content_split: str = "train"
    content_dir: str = ""
    num_content_images: int = 1800
    style_image: str = "skimage:ihc.png"
    vgg_weights: str = ""
    vgg_pooling: str = "avg"
    content_layers: tuple[str, ...] = ("relu2_2",)
    style_layers: tuple[str, ...] = ("relu1_1", "relu2_1")
    content_weight: float = 1.0
    style_weight: float = 1.0
    tv_weight: float = 1.0

    def validate(self) -> None:
        _check_family("task.name", self.name, "style")
        super().validate()
        _check_range("task.image_size", self.image_size, low=4)
        _check_choice("task.content_source", self.content_source, CONTENT_SOURCES)
        _check_choice("task.content_split", self.content_split, CONTENT_SPLITS)
        _check_range("task.num_content_images", self.num_content_images, low=1)
        _check_choice("task.vgg_pooling", self.vgg_pooling, VGG_POOLINGS)
        for name in ("content_weight", "style_weight", "tv_weight"):
            _check_range(f"task.{name}", getattr(self, name), low=0.0)


TaskConfig = QuadraticTaskConfig | MNISTTaskConfig | CIFARTaskConfig | StyleTaskConfig
"""The `task` section: one typed config per task family, chosen by `task.name`."""

TASK_CONFIGS: dict[str, type] = {
    "quadratic": QuadraticTaskConfig,
    "mnist": MNISTTaskConfig,
    "cifar10": CIFARTaskConfig,
    "style": StyleTaskConfig,
}
TASK_NAMES = tuple(TASK_CONFIGS)


@dataclass(frozen=True)
class LSTMConfig:
    """`optimizer.kind` "lstm": the coordinatewise LSTM optimizer (paper: 2 layers of 20 units,
    linear output), its input `preprocessing` ("none"; the paper's "log_sign" with
    `preprocessing_p`; or "normalized": the gradient and its running means at
    `momentum_decays`, over the running root mean square at `second_moment_decay`, inputs that
    do not change when the loss is rescaled, plus with `log_rms_feature` the log of that RMS
    over `preprocessing_p`) and `output_scale` (update = output x scale).

    `groups` "none" shares one LSTM across all parameters; a rule set of
    `l2lgd.optimizers.groups.GROUP_RULES` ("conv_fc": the paper's CIFAR split) gives each group of
    parameters its own LSTM of this architecture.
    """

    kind: str = "lstm"
    hidden_size: int = 20
    num_layers: int = 2
    preprocessing: str = "none"
    preprocessing_p: float = 10.0
    output_scale: float = 1.0
    second_moment_decay: float = 0.95
    momentum_decays: tuple[float, ...] = ()
    log_rms_feature: bool = False
    groups: str = "none"

    def validate(self) -> None:
        _check_family("optimizer.kind", self.kind, "lstm")
        self._validate_lstm()

    def _validate_lstm(self) -> None:
        _check_range("optimizer.hidden_size", self.hidden_size, low=1)
        _check_range("optimizer.num_layers", self.num_layers, low=1)
        _check_choice("optimizer.preprocessing", self.preprocessing, PREPROCESSINGS)
        _check_range("optimizer.preprocessing_p", self.preprocessing_p, low=0.0, strict=True)
        _check_range("optimizer.output_scale", self.output_scale, low=0.0, strict=True)
        for name, decay in [
            ("second_moment_decay", self.second_moment_decay),
            *(("momentum_decays[]", decay) for decay in self.momentum_decays),
        ]:
            _check_range(f"optimizer.{name}", decay, low=0.0)
            if decay >= 1.0:
                raise ConfigError(f"optimizer.{name} must be < 1, got {decay}")
        _check_choice("optimizer.groups", self.groups, PARAMETER_GROUPS)
        if self.log_rms_feature and self.preprocessing != "normalized":
            raise ConfigError(
                "optimizer.log_rms_feature needs optimizer.preprocessing 'normalized', "
                f"got {self.preprocessing!r}"
            )


@dataclass(frozen=True)
class LSTMGACConfig(LSTMConfig):
    """`optimizer.kind` "lstm_gac": the paper's LSTM+GAC. In every layer the first `gac_cells`
    cells are global averaging cells, whose outputs are averaged over the coordinates of one
    problem at every step (per parameter group when `groups` splits them)."""

    kind: str = "lstm_gac"
    gac_cells: int = 5

    def validate(self) -> None:
        _check_family("optimizer.kind", self.kind, "lstm_gac")
        self._validate_gac()

    def _validate_gac(self) -> None:
        self._validate_lstm()
        _check_range("optimizer.gac_cells", self.gac_cells, low=1)
        if self.gac_cells > self.hidden_size:
            raise ConfigError(
                f"optimizer.gac_cells ({self.gac_cells}) must be at most optimizer.hidden_size "
                f"({self.hidden_size})"
            )


@dataclass(frozen=True)
class NTMConfig(LSTMGACConfig):
    """`optimizer.kind` "ntm_bfgs" and "ntm_lbfgs": the paper's NTM-BFGS and NTM-L-BFGS
    (Appendix D). An LSTM+GAC controller with `ntm_read_heads` read and `ntm_write_heads` write
    heads on a memory per problem, dense ("ntm_bfgs") or a window of the last `ntm_window` steps'
    writes ("ntm_lbfgs"); `ntm_memory_init`, `ntm_update_from` and `ntm_write_activation` are the
    choices the paper leaves open (see `l2lgd.optimizers.ntm`)."""

    kind: str = "ntm_lbfgs"
    ntm_read_heads: int = 1
    ntm_write_heads: int = 3
    ntm_window: int = 10
    ntm_memory_init: str = "identity"
    ntm_update_from: str = "read"
    ntm_write_activation: str = "tanh"

    def validate(self) -> None:
        _check_choice("optimizer.kind", self.kind, NTM_KINDS)
        self._validate_gac()
        if self.preprocessing == "normalized":
            raise ConfigError(
                f"optimizer.preprocessing 'normalized' is for kinds lstm and lstm_gac, not {self.kind}"
            )
        _check_range("optimizer.ntm_read_heads", self.ntm_read_heads, low=1)
        _check_range("optimizer.ntm_write_heads", self.ntm_write_heads, low=1)
        _check_range("optimizer.ntm_window", self.ntm_window, low=1)
        _check_choice("optimizer.ntm_memory_init", self.ntm_memory_init, NTM_MEMORY_INITS)
        _check_choice("optimizer.ntm_update_from", self.ntm_update_from, NTM_UPDATE_SOURCES)
        _check_choice(
            "optimizer.ntm_write_activation", self.ntm_write_activation, NTM_WRITE_ACTIVATIONS
        )


OptimizerConfig = LSTMConfig | LSTMGACConfig | NTMConfig
"""The `optimizer` section: one typed config per learned-optimizer kind, chosen by
`optimizer.kind`."""

OPTIMIZER_CONFIGS: dict[str, type] = {
    "lstm": LSTMConfig,
    "lstm_gac": LSTMGACConfig,
    "ntm_bfgs": NTMConfig,
    "ntm_lbfgs": NTMConfig,
}
OPTIMIZER_KINDS = tuple(OPTIMIZER_CONFIGS)


@dataclass(frozen=True)
class MetaConfig:
    """Meta-training by truncated backpropagation through the optimizee's steps.

    `devices`: how many devices (of all processes) the problems are split over; 0 means all.
    `remat`: what the backward pass of an unroll keeps ("none", "steps" or "sqrt", whose memory
    grows like the square root of `unroll`; see `l2lgd.rollout.scan_steps`).
    `init_from`: start from these weights (a run folder, weights file or shipped name) instead of
    a fresh initialization: fine-tuning, e.g. on longer problems; empty: a fresh start.
    """

    iterations: int = 1000
    num_problems: int = 128
    num_steps: int = 100
    unroll: int = 20
    learning_rate: float = 1e-3
    grad_clip: float = 0.0
    second_derivatives: bool = False
    objective: str = "sum"
    validate_every: int = 25
    num_validation_problems: int = 256
    devices: int = 0
    remat: str = "steps"
    init_from: str = ""

    def validate(self) -> None:
        _check_range("meta.iterations", self.iterations, low=1)
        _check_range("meta.num_problems", self.num_problems, low=1)
        _check_range("meta.num_steps", self.num_steps, low=1)
        _check_range("meta.unroll", self.unroll, low=1)
        if self.num_steps % self.unroll:
            raise ConfigError(
                f"meta.num_steps ({self.num_steps}) must be a multiple of meta.unroll ({self.unroll})"
            )
        _check_range("meta.learning_rate", self.learning_rate, low=0.0, strict=True)
        _check_range("meta.grad_clip", self.grad_clip, low=0.0)
        _check_choice("meta.objective", self.objective, META_OBJECTIVES)
        _check_range("meta.validate_every", self.validate_every, low=1)
        _check_range("meta.num_validation_problems", self.num_validation_problems, low=1)
        _check_range("meta.devices", self.devices, low=0)
        _check_choice("meta.remat", self.remat, REMAT_POLICIES)


@dataclass(frozen=True)
class EvalConfig:
    """Held-out evaluation and baseline tuning.

    `test_metrics`: score each trained optimizee on the task's test split too (image tasks); it
    costs a pass over the split per problem.
    """

    seed: int = 1
    num_problems: int = 1000
    num_steps: int = 100
    num_tuning_problems: int = 1000
    lr_min: float = 1e-4
    lr_max: float = 10.0
    lr_per_decade: int = 4
    test_metrics: bool = True

    def validate(self) -> None:
        _check_range("eval.seed", self.seed, low=0)
        _check_range("eval.num_problems", self.num_problems, low=1)
        _check_range("eval.num_steps", self.num_steps, low=1)
        _check_range("eval.num_tuning_problems", self.num_tuning_problems, low=1)
        _check_range("eval.lr_min", self.lr_min, low=0.0, strict=True)
        _check_range("eval.lr_max", self.lr_max, low=self.lr_min)
        _check_range("eval.lr_per_decade", self.lr_per_decade, low=1)


@dataclass(frozen=True)
class MixtureConfig:
    """Meta-training on a distribution of tasks (`l2lgd.meta.mixture`): each of `members` is a
    config name (shipped, or a file) followed by overrides, e.g. "mnist task.activation=relu".
    Meta-iteration i trains on member i mod n; validation scores the geometric mean of the
    members' validation losses. Empty: the config's own task alone."""

    members: tuple[str, ...] = ()

    def validate(self) -> None:
        for member in self.members:
            name, *overrides = member.split()
            bad = [override for override in overrides if "=" not in override]
            if not name or "=" in name or bad:
                raise ConfigError(
                    f"mixture.members[] {member!r} must be a config name followed by "
                    "section.field=value overrides"
                )


@dataclass(frozen=True)
class Config:
    """A whole experiment: what to optimize, how to meta-train, how to evaluate."""

    seed: int = 0
    task: TaskConfig = field(default_factory=QuadraticTaskConfig)
    optimizer: OptimizerConfig = field(default_factory=LSTMConfig)
    meta: MetaConfig = field(default_factory=MetaConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    mixture: MixtureConfig = field(default_factory=MixtureConfig)

    def validate(self) -> Config:
        _check_range("seed", self.seed, low=0)
        for section in (self.task, self.optimizer, self.meta, self.eval, self.mixture):
            section.validate()
        return self


def check_task_name(name: str) -> None:
    """Raises a ConfigError naming the valid tasks unless `name` is one (checked before a
    task's shipped config is looked up, so that a typo reads as a bad task name)."""
    _check_choice("task.name", name, TASK_NAMES)


def config_from_dict(raw: dict[str, Any]) -> Config:
    """Builds and validates a Config from nested plain values (as read from YAML)."""
    if not isinstance(raw, dict):
        raise ConfigError("a config must be a mapping of sections (task, optimizer, meta, eval)")
    sections = {
        "task": task_config_from_dict,
        "optimizer": optimizer_config_from_dict,
        "meta": lambda values: _build(MetaConfig, values, prefix="meta."),
        "eval": lambda values: _build(EvalConfig, values, prefix="eval."),
        "mixture": lambda values: _build(MixtureConfig, values, prefix="mixture."),
    }
    valid = ["seed", *sections]
    unknown = sorted(set(raw) - set(valid))
    if unknown:
        raise ConfigError(
            f"unknown config field(s): {', '.join(unknown)}; valid: {', '.join(valid)}"
        )
    values: dict[str, Any] = {}
    if "seed" in raw:
        values["seed"] = _coerce("seed", raw["seed"], int)
    for name, build in sections.items():
        if name in raw:
            values[name] = build(_section(name, raw[name]))
    return Config(**values).validate()


def task_config_from_dict(raw: dict[str, Any]) -> TaskConfig:
    """Builds and validates the `task` section: the typed config of the family `name` names."""
    config = _build_family(_section("task", raw), "task", "name", TASK_CONFIGS, "quadratic")
    config.validate()
    return config


def optimizer_config_from_dict(raw: dict[str, Any]) -> OptimizerConfig:
    """Builds and validates the `optimizer` section (as in a config, or as stored with learned
    weights): the typed config of the kind `kind` names."""
    config = _build_family(
        _section("optimizer", raw), "optimizer", "kind", OPTIMIZER_CONFIGS, "lstm"
    )
    config.validate()
    return config


def _section(name: str, raw: Any) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise ConfigError(f"config section {name} must be a mapping")
    return raw


def _build_family(
    raw: dict[str, Any], section: str, selector: str, families: dict[str, type], default: str
) -> Any:
    """The typed config of the family that `raw[selector]` names, from its fields in `raw`.

    A field of another family is an error, unless it holds that family's default value: older
    versions wrote every family's fields into each config, and those still load.
    """
    family = raw.get(selector, default)
    _check_choice(f"{section}.{selector}", family, tuple(families))
    cls = families[family]
    own = _field_names(cls)
    known = set().union(*(_field_names(other) for other in families.values()))
    for name in sorted(set(raw) - own):
        if name not in known:
            raise ConfigError(
                f"unknown config field(s): {section}.{name}; valid: {', '.join(sorted(own))}"
            )
        owners = [
            key for key, other in families.items() if _holds_non_default(other, name, raw[name])
        ]
        if owners:
            raise ConfigError(
                f"{section}.{name} applies to {section}.{selector} {' or '.join(owners)}, "
                f"not {family}; the fields of {family}: {', '.join(sorted(own))}"
            )
    return _build(cls, {name: raw[name] for name in raw if name in own}, prefix=f"{section}.")


def _field_names(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def _holds_non_default(cls: type, name: str, value: Any) -> bool:
    """Whether `cls` has a field `name` and `value` is not its default (a value of the wrong
    type counts as not the default)."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    if name not in fields:
        return False
    expected = type(fields[name].default)
    try:
        return _coerce(name, value, expected, _tuple_item_type(cls, name)) != fields[name].default
    except ConfigError:
        return True


def config_to_dict(config: Config | OptimizerConfig) -> dict[str, Any]:
    """The config (or one section of it) as nested plain values (tuples as lists), ready for
    YAML, JSON or msgpack."""
    return _lists_for_tuples(dataclasses.asdict(config))


def _lists_for_tuples(tree: Any) -> Any:
    if isinstance(tree, dict):
        return {key: _lists_for_tuples(value) for key, value in tree.items()}
    if isinstance(tree, tuple):
        return list(tree)
    return tree


def load_config(reference: str | Path | None, overrides: list[str] = ()) -> Config:
    """Reads a config (a YAML file, or a shipped config's name; the defaults when None) with its
    bases, and applies `key=value` overrides."""
    raw = {} if reference is None else _read_with_bases(config_file(reference), chain=())
    for override in overrides:
        _apply_override(raw, override)
    return config_from_dict(raw)


def shipped_configs_dir() -> Path:
    """The folder of the configs shipped with l2lgd (one per paper experiment)."""
    return Path(str(resources.files("l2lgd") / "configs"))


def shipped_config_names() -> list[str]:
    """The names of the shipped configs, each usable as `--config NAME` or `base: NAME`."""
    return sorted(path.stem for path in shipped_configs_dir().glob(f"*{CONFIG_SUFFIX}"))


def config_file(reference: str | Path, relative_to: Path = Path()) -> Path:
    """The file a config reference names: an existing file (a relative path counts from
    `relative_to`), else the shipped config of that name (a name alone: no folder, no suffix)."""
    path = relative_to / reference
    if path.is_file():
        return path
    name = Path(reference).name
    is_name = name == str(reference) and not Path(name).suffix
    if is_name and (shipped := shipped_configs_dir() / f"{name}{CONFIG_SUFFIX}").is_file():
        return shipped
    stem = Path(reference).stem
    if stem in shipped_config_names():
        hint = f"l2lgd ships a config named {stem}: give that name alone"
    else:
        hint = f"shipped configs: {', '.join(shipped_config_names())}"
    raise ConfigError(f"config file not found: {path} ({hint})")


def _read_with_bases(path: Path, chain: tuple[Path, ...]) -> dict[str, Any]:
    """The fields of the config file `path` over those of its base, recursively; `chain` holds
    the files that inherit from it, so that a cycle is an error rather than endless."""
    resolved = path.resolve()
    if resolved in chain:
        cycle = " -> ".join(str(link) for link in (*chain, resolved))
        raise ConfigError(f"config bases form a cycle: {cycle}")
    raw = _read_yaml_mapping(path)
    base = raw.pop(BASE_KEY, None)
    if base is None:
        return raw
    if not isinstance(base, str) or not base:
        raise ConfigError(f"{path}: base must name a config, got {base!r}")
    try:
        base_path = config_file(base, relative_to=path.parent)
    except ConfigError as error:
        raise ConfigError(f"{path}: unknown base {base!r}: {error}") from None
    return _merged(_read_with_bases(base_path, (*chain, resolved)), raw)


def _read_yaml_mapping(path: Path) -> dict[str, Any]:
    """The mapping a YAML config file holds (empty for an empty file)."""
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"config file {path} is not valid YAML: {error}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"config file {path} must hold a mapping, not {type(raw).__name__}")
    return raw


def _merged(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """`base` with `changes` laid over it: sections merge field by field, other values replace."""
    merged = dict(base)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            value = _merged(merged[key], value)
        merged[key] = value
    return merged


def save_config(config: Config, path: Path) -> None:
    """Writes the resolved config as YAML."""
    path.write_text(yaml.safe_dump(config_to_dict(config), sort_keys=False))


def with_overrides(config: Config, overrides: list[str]) -> Config:
    """A copy of `config` with `key=value` overrides applied and validated."""
    raw = config_to_dict(config)
    for override in overrides:
        _apply_override(raw, override)
    return config_from_dict(raw)


def _apply_override(raw: dict[str, Any], override: str) -> None:
    key, sep, value = override.partition("=")
    if not sep or not key:
        raise ConfigError(f"override {override!r} must look like section.field=value")
    *sections, leaf = key.strip().split(".")
    node = raw
    for section in sections:
        node = node.setdefault(section, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {override!r}: {section} is not a section")
    node[leaf] = yaml.safe_load(value)


def _build(cls: type, raw: dict[str, Any], prefix: str) -> Any:
    """An instance of the flat dataclass `cls` from the fields in `raw`, each coerced to its type."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        names = ", ".join(prefix + name for name in unknown)
        raise ConfigError(f"unknown config field(s): {names}; valid: {', '.join(sorted(fields))}")
    values = {
        name: _coerce(prefix + name, value, type(fields[name].default), _tuple_item_type(cls, name))
        for name, value in raw.items()
    }
    return cls(**values)


def _tuple_item_type(cls: type, name: str) -> type:
    """The item type of a `tuple[T, ...]` field (int for any other field; unused there)."""
    arguments = typing.get_args(typing.get_type_hints(cls).get(name))
    return arguments[0] if arguments else int


def _coerce(name: str, value: Any, expected: type, item_type: type = int) -> Any:
    if expected is tuple:
        if isinstance(value, str) and item_type is str:
            value = [item.strip() for item in value.split(",") if item.strip()]
        if isinstance(value, (list, tuple)):
            return tuple(_coerce(f"{name}[]", item, item_type) for item in value)
    elif expected is bool:
        if isinstance(value, bool):
            return value
    elif expected is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif expected is float:
        if isinstance(value, str):
            value = _parse_float(value)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value):
                raise ConfigError(f"{name} must be finite, got {value}")
            return float(value)
    elif expected is str and isinstance(value, str):
        return value
    raise ConfigError(f"{name} must be of type {expected.__name__}, got {value!r}")


def _parse_float(text: str) -> float | str:
    """YAML 1.1 reads `1e-3` (no dot) as a string; accept it as the number it means."""
    try:
        return float(text)
    except ValueError:
        return text


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}; got {value!r}")


def _check_range(name: str, value: float, low: float, strict: bool = False) -> None:
    if value < low or (strict and value == low):
        relation = ">" if strict else ">="
        raise ConfigError(f"{name} must be {relation} {low}, got {value}")


def _check_family(name: str, value: str, family: str) -> None:
    """A typed section's selector field must name its own family (a `CIFARTaskConfig` is a
    cifar10 task); `config_from_dict` picks the class from the selector, so this holds there."""
    if value != family:
        raise ConfigError(f"{name} must be {family!r} in a {family} config, got {value!r}")
