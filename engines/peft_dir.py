"""A PEFT adapter directory (what `save_pretrained` writes): is it one, and its config.

Read the same way by the GPU engine (`hf_adapters`), the GGUF LoRA export
(`gguf_lora`) and chat's persona runtime, so a damaged adapter is one sentence
wherever it is met.
"""

from __future__ import annotations

import json
from pathlib import Path

from engines.errors import AdapterError, CosplayError
from engines.i18n import _

CONFIG_FILE = "adapter_config.json"
SAFE_WEIGHTS = "adapter_model.safetensors"
PICKLE_WEIGHTS = "adapter_model.bin"


def is_peft_dir(path: str | Path) -> bool:
    """True for a directory holding an adapter_config.json (its weights are checked on reading)."""
    path = Path(path).expanduser()
    return path.is_dir() and (path / CONFIG_FILE).is_file()


def read_peft_config(
    directory: str | Path,
    *,
    label: str | None = None,
    error: type[CosplayError] = AdapterError,
) -> dict:
    """The adapter_config.json of `directory` as a dict; `error` (one sentence naming `label`,
    default the directory) when it is missing, unreadable or not a JSON object."""
    directory = Path(directory).expanduser()
    label = label or str(directory)
    path = directory / CONFIG_FILE
    if not path.is_file():
        raise error(
            _(
                "{label} has no {file}, so it is not a PEFT adapter; pass the directory that "
                "`save_pretrained` wrote.",
                label=label[:1].upper() + label[1:],
                file=CONFIG_FILE,
            )
        )
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:  # UnicodeDecodeError is a ValueError
        reason = getattr(exc, "strerror", None) or str(exc).splitlines()[0]
        raise error(
            _(
                "The {file} of {label} cannot be read ({problem}); the adapter is damaged, save "
                "or download it again.",
                file=CONFIG_FILE,
                label=label,
                problem=reason,
            )
        ) from None
    if not isinstance(config, dict):
        raise error(
            _(
                "The {file} of {label} is not a JSON object; the adapter is damaged, save or "
                "download it again.",
                file=CONFIG_FILE,
                label=label,
            )
        )
    return config


__all__ = ["CONFIG_FILE", "PICKLE_WEIGHTS", "SAFE_WEIGHTS", "is_peft_dir", "read_peft_config"]
