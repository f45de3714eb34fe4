"""Errors a user can cause and fix: the CLI turns each into one line and exit code 2."""


class L2LError(Exception):
    """Bad input (config, name, file) that the user can correct."""


class ConfigError(L2LError):
    """A malformed, unknown or out-of-range configuration value."""


class CheckpointError(L2LError):
    """A checkpoint that is missing, unreadable or does not match the config."""


class RunDirError(L2LError):
    """A run folder that exists already, or is not a run folder."""


class DataError(L2LError):
    """A data set that is missing, truncated, malformed or cannot be fetched."""


class DivergenceError(Exception):
    """Meta-training produced a NaN or inf meta-loss; the last good checkpoint is kept."""
