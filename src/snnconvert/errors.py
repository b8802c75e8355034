"""The library's own exception types: each says what was wrong and what would be right."""
from __future__ import annotations


class SnnConvertError(Exception):
    """Base class of every error snnconvert raises on purpose."""


class UnsupportedOperationError(SnnConvertError, TypeError):
    """A layer or call in the model that cannot be converted to spikes."""


class CalibrationError(SnnConvertError, ValueError):
    """Calibration data that is empty, of the wrong shape, or produces NaN/inf."""


class ConfigError(SnnConvertError, ValueError):
    """A bad option value: T < 1, an unknown method, a negative threshold, ..."""


class DataError(SnnConvertError, ValueError):
    """A dataset that is missing, incomplete or malformed."""


class CheckpointError(SnnConvertError, ValueError):
    """A saved model or checkpoint that is missing, corrupt or of another version."""


class ModelError(SnnConvertError, ValueError):
    """A model whose weights are NaN/inf or whose structure cannot be handled."""


class OutputError(SnnConvertError, OSError):
    """An output that cannot be written (read-only place, full disk) or that would overwrite an input."""


class EmptyDataError(CalibrationError, DataError):
    """Data (for calibration, simulation, training or evaluation) that holds no sample at all."""


class ExportError(SnnConvertError, ValueError):
    """A spiking model that the requested exchange format cannot express (the message names the layer and
    why), or an export whose optional package is not installed."""
