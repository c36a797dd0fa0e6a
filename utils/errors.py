"""Every error type of the project: what went wrong is in the message, which names the file (and
line) or the config key, and says what to do. Entry points (`utils/cli.run`) print these in one
line; anything else is a bug and keeps its traceback."""


class ConfigError(ValueError):
    """A config key or value (YAML file or --set) that cannot be used."""


class DataError(ValueError):
    """Bad or missing data; the message names the file (and line) and says what to do."""


class ConversionError(ValueError):
    """Weights that cannot be converted (a file of the wrong kind, size or layout)."""


class CheckpointError(RuntimeError):
    """A checkpoint or stage folder that cannot be used: missing, damaged, locked or out of space."""


class FolderBusy(CheckpointError):
    """Another live process holds the stage folder."""


class NonFiniteError(RuntimeError):
    """A network gave NaN or infinite values (descriptors, offsets, Sigma, weights)."""


class TrainingStopped(RuntimeError):
    """Training stopped on purpose; `reason` is "interrupted", "non_finite" or "worker_lost", the
    message says what was kept."""

    def __init__(self, message, reason):
        super().__init__(message)
        self.reason = reason


# What an entry point reports in one line (exit status 2) instead of a traceback.
EXPECTED = (ConfigError, DataError, ConversionError, CheckpointError, NonFiniteError, FileNotFoundError)
