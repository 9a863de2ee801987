"""The errors a user can fix: one sentence each, naming the thing and the fix.

No imports at all: the command line imports these before (and often instead of) anything
heavy. `engines.base` re-exports them, so `from engines.base import CosplayError` works too.
"""

from __future__ import annotations


class CosplayError(Exception):
    """A problem the user can fix; its message is one sentence naming the thing and the fix."""


class ModelLoadError(CosplayError):
    """The model file or directory is missing, corrupt, or cannot be loaded."""


class LoadCancelled(ModelLoadError):
    """The user stopped a model load (Esc, or leaving while it loaded)."""


class AdapterError(CosplayError):
    """A LoRA adapter is missing, unsafe, or does not fit the base model."""


class TemplateError(CosplayError):
    """A chat template is unknown or fails to render."""


class ContextOverflowError(CosplayError):
    """The prompt does not fit in the model's context window."""


class GenerationError(CosplayError):
    """Generation failed inside the engine."""
