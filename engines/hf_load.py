"""GPU engine, loading: where a model comes from, which device and dtype, how it is quantized.

Every failure a user can cause becomes a `ModelLoadError` with one sentence
naming the thing and the fix. torch and transformers are imported inside the
functions so that importing this module stays cheap.
"""

from __future__ import annotations

import logging
import pickle
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engines.base import ModelLoadError
from engines.i18n import _

# What we fetch from the Hub for a model: never the TF/Flax/ONNX/GGUF duplicates.
MODEL_IGNORE = [
    "*.h5",
    "*.msgpack",
    "*.onnx",
    "*.ot",
    "*.gguf",
    "*.tflite",
    "*.mlmodel",
    "original/*",
]
ADAPTER_PATTERNS = ["adapter_config.json", "adapter_model.safetensors", "adapter_model.bin", "*.md"]

_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$")


class _DropMessages(logging.Filter):
    def __init__(self, *fragments: str):
        super().__init__()
        self.fragments = fragments

    def filter(self, record: logging.LogRecord) -> bool:
        return not any(f in str(record.msg) for f in self.fragments)


_QUIETED: set[str] = set()


def quiet_library_logs() -> None:
    """Drop two bitsandbytes log lines that would print on every CPU forward or import.

    "MatMul8bitLt: inputs will be cast …" (every 8-bit matmul on a non-fp16 model) and the
    hint about the optional `kernels` package for CPU 4-bit; neither is the user's to fix.
    """
    for logger_name, fragment in (
        ("bitsandbytes.autograd._functions", "MatMul8bitLt"),
        ("bitsandbytes.backends.cpu.ops", "gemm_4bit_forward"),
    ):
        if logger_name not in _QUIETED:
            logging.getLogger(logger_name).addFilter(_DropMessages(fragment))
            _QUIETED.add(logger_name)


def _hub_offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def _download(repo_id: str, **kwargs: Any) -> str:
    """The one place that may reach the network (tests replace it)."""
    from huggingface_hub import snapshot_download

    return snapshot_download(repo_id, **kwargs)


def resolve_source(
    ref: str,
    *,
    what: str = "model",
    cache_dir: str | Path | None = None,
    allow_patterns: list[str] | None = None,
    ignore_patterns: list[str] | None = None,
    error: type[Exception] = ModelLoadError,
) -> Path:
    """A local directory as is; a Hub repo id from the local cache, else downloaded (with a progress bar)."""
    from huggingface_hub.errors import (
        GatedRepoError,
        HFValidationError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
    )

    path = Path(ref).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise error(f"The {what} {ref} is a file; pass its directory (or a Hub repo id).")
    looks_local = ref.startswith((".", "/", "~")) or "\\" in ref or ref.count("/") > 1
    if looks_local or not _REPO_ID.match(ref):
        raise error(f"The {what} directory {ref} does not exist; check the path.")
    kwargs: dict[str, Any] = dict(
        cache_dir=cache_dir, allow_patterns=allow_patterns, ignore_patterns=ignore_patterns
    )
    try:
        return Path(_download(ref, local_files_only=True, **kwargs))
    except (LocalEntryNotFoundError, FileNotFoundError, HFValidationError):
        pass
    if _hub_offline():
        raise error(
            f"The {what} {ref} is not a local directory and not in the Hugging Face cache, and the Hub "
            f"is offline (HF_HUB_OFFLINE); download it while online with `hf download {ref}` "
            "or pass a local directory."
        )
    try:
        return Path(_download(ref, **kwargs))
    except (RepositoryNotFoundError, GatedRepoError) as exc:
        raise error(
            f"The {what} {ref} is not a Hub repo you can read (it does not exist, is private or "
            "gated); check the name, or accept its licence and log in with `hf auth login`."
        ) from exc
    except (LocalEntryNotFoundError, OSError, HFValidationError) as exc:
        raise error(
            f"The {what} {ref} is not in the local Hugging Face cache and the Hub could not be "
            f"reached ({type(exc).__name__}); connect and retry, or run `hf download {ref}`."
        ) from exc


@dataclass(frozen=True)
class Placement:
    """Where the weights live and in what form."""

    device: str  # cuda | mps | cpu
    dtype: Any  # torch.dtype of the unquantized parts
    quantization: str  # none | 8-bit | 4-bit nf4

    @property
    def dtype_name(self) -> str:
        return str(self.dtype).removeprefix("torch.")


def pick_placement(
    *,
    device: str | None = None,
    dtype: str | None = None,
    load_8bit: bool = False,
    load_4bit: bool = False,
) -> Placement:
    """Device auto: CUDA, else MPS, else CPU. dtype auto: bf16 where the GPU has it, fp16 else, fp32 on CPU.

    Quantized loading (`load_8bit` / `load_4bit`) puts the weights on CUDA when there is
    one. **Without CUDA it runs on the CPU through bitsandbytes' CPU backend** (bnb ≥ 0.46
    ships one; verified with 0.50.2): the weights really are 8-bit / NF4 and the model
    answers, only slower than fp32 — `describe()` then reports device ``cpu`` so the status
    line shows it, and a GGUF on the CPU engine is the fast path there. Apple MPS is not
    a bitsandbytes target, so a quantized model goes to the CPU on a Mac too. When
    bitsandbytes is missing or cannot load, `load_model` raises a `ModelLoadError` saying
    so instead of a traceback.
    """
    import torch

    if load_8bit and load_4bit:
        raise ModelLoadError(_("Choose one of --load-8bit and --load-4bit, not both."))
    quantization = "8-bit" if load_8bit else "4-bit nf4" if load_4bit else "none"
    if device in (None, "auto"):
        if torch.cuda.is_available():
            device = "cuda"
        elif quantization == "none" and torch.backends.mps.is_available():
            device = "mps"
        else:
            device = "cpu"
    elif device not in ("cuda", "mps", "cpu") and not device.startswith("cuda:"):
        raise ModelLoadError(
            _("Unknown device {device!r}; use auto, cuda, mps or cpu.", device=device)
        )
    elif device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelLoadError(
            _("No CUDA GPU is visible to torch; use --device cpu or install a CUDA build of torch.")
        )
    if quantization != "none" and device == "mps":
        device = "cpu"
    if dtype in (None, "auto"):
        if device.startswith("cuda"):
            chosen = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        elif device == "mps":
            chosen = torch.float16
        else:
            chosen = torch.float32
    else:
        chosen = {
            "bf16": torch.bfloat16,
            "bfloat16": torch.bfloat16,
            "fp16": torch.float16,
            "float16": torch.float16,
            "fp32": torch.float32,
            "float32": torch.float32,
        }.get(dtype)
        if chosen is None:
            raise ModelLoadError(
                _("Unknown dtype {dtype!r}; use auto, bf16, fp16 or fp32.", dtype=dtype)
            )
    return Placement(device, chosen, quantization)


def quantization_config(placement: Placement):
    """BitsAndBytesConfig for the placement (None when not quantized); compute dtype always explicit."""
    if placement.quantization == "none":
        return None
    try:
        import bitsandbytes  # noqa: F401
        from transformers import BitsAndBytesConfig
    except ImportError as exc:
        raise ModelLoadError(
            _(
                "--load-8bit/--load-4bit need bitsandbytes; install it with `pip install bitsandbytes` or load without quantization."
            )
        ) from exc
    if placement.quantization == "8-bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=placement.dtype,
    )


def _remote_code_error(name: str, exc: Exception) -> ModelLoadError | None:
    text = str(exc)
    if "trust_remote_code" in text or "custom code" in text:
        return ModelLoadError(
            _(
                "{name} ships its own Python model code (ChatGLM and Baichuan do); if you trust it, load it again with --trust-remote-code.",
                name=name,
            )
        )
    if "does not recognize this architecture" in text or "Unrecognized model" in text:
        return ModelLoadError(
            _(
                "transformers does not know the architecture of {name}; if the model ships its own code, pass --trust-remote-code, else upgrade transformers.",
                name=name,
            )
        )
    return None


def one_line(exc: BaseException, limit: int = 300) -> str:
    """An exception's text on one line (transformers' messages run over several), shortened."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"


PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt")


def check_weights(path: Path, name: str, trust_remote_code: bool) -> None:
    """Safetensors weights, or one sentence before anything loads.

    Pickle weights (`pytorch_model.bin`) can run code when loaded, as an adapter's can
    (hf_adapters refuses those too): they load only with --trust-remote-code, which
    already trusts the model's own code. A directory with no weights at all is refused
    here instead of loading a randomly initialised model that answers gibberish."""
    files = [entry.name for entry in path.iterdir() if entry.is_file()]
    if any(file.endswith(".safetensors") for file in files):
        return
    pickles = sorted(file for file in files if file.endswith(PICKLE_SUFFIXES))
    if pickles and trust_remote_code:
        return
    if pickles:
        raise ModelLoadError(
            _(
                "The weights of {name} are pickle files ({files}), which can run code when loaded; convert them to safetensors, or load with --trust-remote-code if you trust the model.",
                name=name,
                files=", ".join(pickles[:3]),
            )
        )
    raise ModelLoadError(
        _(
            "{name} has no weights (no *.safetensors file); the download is incomplete: fetch the model again.",
            name=name,
        )
    )


def load_config(path: Path, name: str, trust_remote_code: bool):
    """The model's config, after checking the directory holds a config and loadable weights."""
    from transformers import AutoConfig

    if not (path / "config.json").is_file():
        raise ModelLoadError(
            _(
                "{name} has no config.json, so it is not a Hugging Face model directory; pass a model directory, a Hub repo id or a .gguf file.",
                name=name,
            )
        )
    try:
        config = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
    except (ValueError, KeyError, OSError) as exc:
        raise _remote_code_error(name, exc) or ModelLoadError(
            _(
                "The config.json of {name} cannot be read ({problem}); download the model again.",
                name=name,
                problem=one_line(exc),
            )
        ) from exc
    check_weights(path, name, trust_remote_code)  # before the tokenizer and the weights load
    return config


def load_tokenizer(path: Path, name: str, trust_remote_code: bool):
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    except (ValueError, KeyError, OSError, TypeError) as exc:
        raise _remote_code_error(name, exc) or ModelLoadError(
            _(
                "The tokenizer of {name} cannot be loaded ({problem}); make sure the directory has its tokenizer files.",
                name=name,
                problem=one_line(exc),
            )
        ) from exc


def load_model(path: Path, name: str, config, placement: Placement, trust_remote_code: bool):
    import torch
    from safetensors import SafetensorError
    from transformers import AutoModelForCausalLM

    kwargs: dict[str, Any] = dict(
        config=config, dtype=placement.dtype, trust_remote_code=trust_remote_code
    )
    quant = quantization_config(placement)
    if quant is not None:
        kwargs["quantization_config"] = quant
    if placement.device.startswith("cuda"):
        kwargs["device_map"] = "auto" if torch.cuda.device_count() > 1 else {"": placement.device}
    elif quant is not None:
        kwargs["device_map"] = {"": "cpu"}
    try:
        model, info = AutoModelForCausalLM.from_pretrained(path, output_loading_info=True, **kwargs)
    except torch.cuda.OutOfMemoryError as exc:
        raise ModelLoadError(
            _(
                "{name} does not fit in GPU memory; try --load-4bit or --load-8bit, or a smaller model.",
                name=name,
            )
        ) from exc
    except pickle.UnpicklingError as exc:  # torch's weights-only unpickler refused the file
        raise ModelLoadError(
            _(
                "The pickle weights of {name} hold more than tensors (torch's weights-only loader refused them), so they are not loaded; convert the model to safetensors with a tool you trust.",
                name=name,
            )
        ) from exc
    except (ValueError, KeyError, OSError, RuntimeError, ImportError, SafetensorError) as exc:
        known = _remote_code_error(name, exc)
        if known:
            raise known from exc
        if "out of memory" in str(exc).lower():
            raise ModelLoadError(
                _(
                    "{name} does not fit in memory; try --load-4bit or --load-8bit, or a smaller model.",
                    name=name,
                )
            ) from exc
        if quant is not None:
            raise ModelLoadError(
                _(
                    "bitsandbytes could not load {name} {quantization} on {device} ({problem}); quantized loading wants a CUDA GPU: drop --load-8bit/--load-4bit, or use a GGUF with the CPU engine.",
                    name=name,
                    quantization=placement.quantization,
                    device=placement.device,
                    problem=one_line(exc),
                )
            ) from exc
        raise ModelLoadError(
            _(
                "transformers could not load the weights of {name} ({problem}); the download may be incomplete: fetch the model again.",
                name=name,
                problem=one_line(exc),
            )
        ) from exc
    missing = sorted(info.get("missing_keys") or [])
    if missing:  # transformers would fill them with random numbers: the model answers gibberish
        raise ModelLoadError(
            _(
                "The weights of {name} lack {count} of the model's tensors ({tensor}, …); the files are incomplete or belong to another model: fetch the model again.",
                name=name,
                count=len(missing),
                tensor=missing[0],
            )
        )
    if quant is None and not placement.device.startswith("cuda"):
        model.to(placement.device)
    model.eval()
    return model


def context_length_of(config, n_ctx: int | None, default_cap: int = 4096) -> int:
    if n_ctx:
        return n_ctx
    for key in ("max_position_embeddings", "seq_length", "n_positions", "max_sequence_length"):
        value = getattr(config, key, None)
        if isinstance(value, int) and value > 0:
            return min(value, default_cap)
    return 2048
