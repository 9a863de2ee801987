"""Persona LoRA training: dataset readers, dialogue extraction, the trainer and GGUF export.

Nothing heavy is imported here: `engines.train.trainer` imports torch and
transformers inside its functions, so the CLI can list its options cheaply.
"""

from engines.base import CosplayError


class DatasetError(CosplayError):
    """A dataset file is missing, unreadable or holds a malformed record."""


class TrainingError(CosplayError):
    """Training cannot start or continue: bad options, output dir or checkpoint."""


class ExportError(CosplayError):
    """An adapter cannot be written as a GGUF LoRA."""


__all__ = ["DatasetError", "ExportError", "TrainingError"]
