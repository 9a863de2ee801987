"""What a Hugging Face model directory holds, read without loading its weights.

From `config.json`: the architecture, the context length and the quantization (or dtype);
from `chat_template.jinja` or `tokenizer_config.json`: the model's own chat template; from the
JSON headers of its safetensors files (shapes, not data): the parameter count. The sibling of
engines/ggufinfo.py for GGUF files; `cosplay models list` (engines/catalog.py) shows both.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path

from engines.i18n import _

MAX_SAFETENSORS_HEADER = 100 * 2**20  # a header claiming more is damage
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
CONTEXT_KEYS = ("max_position_embeddings", "seq_length", "n_positions")  # first found wins


@dataclass(frozen=True)
class HFDirInfo:
    architecture: str
    parameters: int | None  # None when it has no safetensors files, or a damaged one
    context_length: int | None
    quantization: str  # "gptq 4-bit", "bitsandbytes 8-bit", or the dtype ("bfloat16")
    chat_template: str | None  # the template's Jinja source; None when it has none
    problem: str = ""  # why the parameters could not be counted, when they could not


def is_weight_file(path: Path) -> bool:
    """A model's weights file (an adapter's `adapter_model.*` is not)."""
    return path.suffix in WEIGHT_SUFFIXES and not path.name.startswith("adapter_")


def read_hf_dir(directory: Path) -> HFDirInfo:
    """What the model in `directory` is. OSError or ValueError when its config.json cannot be
    read; a damaged safetensors header is the info's `problem`, not an error."""
    config = json_object(directory / "config.json")
    architectures = config.get("architectures")
    architecture = (
        architectures[0]
        if isinstance(architectures, list) and architectures and isinstance(architectures[0], str)
        else text(config.get("model_type"))
    )
    context = next((config[key] for key in CONTEXT_KEYS if isinstance(config.get(key), int)), None)
    problem = ""
    try:
        parameters = safetensors_parameters(directory)
    except ValueError as exc:
        parameters, problem = None, str(exc)
    return HFDirInfo(
        architecture=architecture,
        parameters=parameters,
        context_length=context,
        quantization=hf_quantization(config),
        chat_template=hf_chat_template(directory),
        problem=problem,
    )


def hf_quantization(config: dict) -> str:
    quantization = config.get("quantization_config")
    if isinstance(quantization, dict):
        method = text(quantization.get("quant_method")) or "quantized"
        bits = quantization.get("bits") or (
            4 if quantization.get("load_in_4bit") else 8 if quantization.get("load_in_8bit") else 0
        )
        return f"{method} {bits}-bit" if bits else method
    return text(config.get("torch_dtype")) or text(config.get("dtype"))


def hf_chat_template(directory: Path) -> str | None:
    """The model's own chat template: chat_template.jinja, else tokenizer_config.json's."""
    jinja = directory / "chat_template.jinja"
    if jinja.is_file():
        try:
            return jinja.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return None
    try:
        template = json_object(directory / "tokenizer_config.json").get("chat_template")
    except (OSError, ValueError):
        return None
    if isinstance(template, list):  # [{"name": "default", "template": "…"}, …]
        template = next((t.get("template") for t in template if isinstance(t, dict)), None)
    return template if isinstance(template, str) else None


def safetensors_parameters(directory: Path) -> int | None:
    """The number of weights in the directory's safetensors files, from their JSON headers
    (the shapes; no tensor is read); None when it has none. ValueError for a damaged one."""
    total, found = 0, False
    for path in sorted(directory.glob("*.safetensors")):
        if path.name.startswith("adapter_"):
            continue
        found = True
        for name, info in _safetensors_header(path).items():
            if name == "__metadata__":
                continue
            shape = info.get("shape") if isinstance(info, dict) else None
            if not isinstance(shape, list) or not all(isinstance(d, int) for d in shape):
                raise ValueError(
                    _(
                        "{file} names tensor {name} without a shape; damaged",
                        file=path.name,
                        name=name,
                    )
                )
            count = 1
            for dim in shape:
                count *= dim
            total += count
    return total if found else None


def _safetensors_header(path: Path) -> dict:
    try:
        with path.open("rb") as handle:
            (length,) = struct.unpack("<Q", handle.read(8))
            if length > min(MAX_SAFETENSORS_HEADER, path.stat().st_size - 8):
                raise ValueError(
                    _(
                        "{file} has a damaged header (length {length})",
                        file=path.name,
                        length=length,
                    )
                )
            header = json.loads(handle.read(length))
    except (OSError, struct.error, UnicodeDecodeError, json.JSONDecodeError) as exc:
        problem = type(exc).__name__
        raise ValueError(
            _("{file} cannot be read ({problem}); damaged", file=path.name, problem=problem)
        ) from None
    if not isinstance(header, dict):
        raise ValueError(_("{file} has a damaged header", file=path.name))
    return header


def json_object(path: Path) -> dict:
    """A JSON file that must hold an object; OSError or ValueError when it cannot be read."""
    value = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(value, dict):
        raise ValueError(_("not a JSON object"))
    return value


def text(value: object) -> str:
    """A metadata value as text: bytes decoded, anything not a string ""."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value if isinstance(value, str) else ""
