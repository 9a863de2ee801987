"""Persona LoRA training: dataset readers, dialogue extraction, options and the trainer.

Nothing heavy is imported here: `engines.train.trainer` imports torch and
transformers inside its functions, so the CLI can list its options cheaply.
"""

from engines.base import CosplayError


class DatasetError(CosplayError):
    """A dataset file is missing, unreadable or holds a malformed record."""


class TrainingError(CosplayError):
    """Training cannot start or continue: bad options, output dir or checkpoint."""


__all__ = ["DatasetError", "TrainingError"]
