"""The project's errors: one base class, `NasnetZooError`, for every failure a user can act on.

Each error's message says what is wrong and what to do, in one or two lines. The ``nasnet-zoo`` command
catches `NasnetZooError` once and prints the message without a traceback (``--debug`` shows it); a library
user catches the base class, or the built-in type each error also derives from (``ValueError`` for bad
settings, ``FileNotFoundError`` for a missing file), so ``except ValueError`` keeps working.
"""

from __future__ import annotations


class NasnetZooError(Exception):
    """Base of the project's errors: a failure the message explains and the user can fix."""


class ConfigError(NasnetZooError, ValueError):
    """A setting, argument or combination of them that cannot work (names the setting and its allowed values)."""


class GenotypeError(ConfigError):
    """A genotype that cannot describe a network; the message says which block or field is wrong."""


class NotFoundError(NasnetZooError, FileNotFoundError):
    """A file or folder that is not where it was said to be (a dataset, a weight file, a run to resume)."""


class DataError(NasnetZooError, ValueError):
    """Data that cannot be read or used: a missing dataset folder, a corrupt image, classes that disagree."""


class WeightsError(NasnetZooError, RuntimeError):
    """A weight file that cannot be used: missing, corrupt, of another model, or of the wrong size."""


class WeightsUnavailableError(WeightsError):
    """No weights can be had right now, though nothing is wrong with any file: the model has no released
    weights, or they are not cached and the source cannot be reached (offline)."""


class ExportCheckError(NasnetZooError, RuntimeError):
    """An exported model's outputs differ from the eager model's beyond the tolerance."""


class TrainingError(NasnetZooError, FloatingPointError):
    """Training diverged: a non-finite loss or weights; nothing non-finite is exported."""


class RunError(NasnetZooError, RuntimeError):
    """A run folder (search, training, fine-tuning) that cannot be started or resumed as asked: another
    process holds it, it holds another run, or its files disagree."""
