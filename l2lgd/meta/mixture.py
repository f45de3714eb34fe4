"""A distribution of tasks to meta-train one optimizer on: the members of a config's `mixture`.

Problems of different families (a 10-d quadratic, an MLP on MNIST) have different shapes, so
they cannot share one vmap. Meta-training alternates members between meta-iterations (member
i mod n at iteration i): each member is one compiled program, the schedule is fixed (a resumed
run repeats it exactly) and each member gets the same share of the meta-updates. Grouping one
meta-iteration by family would average the families' meta-gradients before each step, but
needs every family's program in one compilation and every family's memory at once.
"""

from __future__ import annotations

import dataclasses

from l2lgd.config import Config, ConfigError, MixtureConfig, load_config

SHARED_META_FIELDS = (
    "iterations",
    "learning_rate",
    "grad_clip",
    "second_derivatives",
    "objective",
    "validate_every",
    "devices",
    "init_from",
)
"""Meta-training settings of the mixture's own config that every member follows; a member keeps
its own problems per iteration, horizon, unroll, validation problems and remat policy."""


def member_config(config: Config, member: str) -> Config:
    """One member's config: its named config with its overrides, and the mixture's seed,
    optimizer and shared meta-training settings (`SHARED_META_FIELDS`); a data task without a
    data folder of its own reads the mixture's."""
    name, *overrides = member.split()
    try:
        own = load_config(name, overrides)
    except ConfigError as error:
        raise ConfigError(f"mixture member {member!r}: {error}") from None
    if getattr(own.task, "data_dir", None) == "" and getattr(config.task, "data_dir", ""):
        own = dataclasses.replace(  # the run's --data-dir serves every member
            own, task=dataclasses.replace(own.task, data_dir=config.task.data_dir)
        )
    shared = {field: getattr(config.meta, field) for field in SHARED_META_FIELDS}
    meta = dataclasses.replace(own.meta, **shared)
    return dataclasses.replace(
        own, seed=config.seed, optimizer=config.optimizer, meta=meta, mixture=MixtureConfig()
    ).validate()


def member_configs(config: Config) -> list[Config]:
    """Every member's config (`member_config`), in the mixture's order."""
    return [member_config(config, member) for member in config.mixture.members]
