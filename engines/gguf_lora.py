"""GGUF LoRA files: PEFT LoRA adapter → GGUF LoRA for the CPU engine, with `gguf` alone (no torch).

Used by `cosplay train --gguf`, `cosplay export-gguf` and by chat, which exports a
persona's PEFT adapter on first use with the CPU engine.

What llama.cpp's `convert_lora_to_gguf.py` writes, for Llama and Qwen2:
`general.type = adapter`, `adapter.type = lora`, `adapter.lora.alpha`, and
per target `<gguf tensor>.lora_a` = PEFT `lora_A.weight` (r, in) and
`<gguf tensor>.lora_b` = PEFT `lora_B.weight` (out, r). Llama's GGUF stores q/k
rows in RoPE order, so q/k `lora_b` rows get the same permutation as the base
weights. rsLoRA's scale alpha/√r is written as alpha' = alpha·√r, because
llama.cpp always scales by alpha/r. Adapters that one alpha cannot express
(per-module ranks or alphas), DoRA, embedding adapters and extra trained
modules are refused with the reason.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engines.atomic import written_atomically
from engines.base import CosplayError
from engines.ggufinfo import open_gguf
from engines.i18n import _
from engines.peft_dir import SAFE_WEIGHTS, read_peft_config


class ExportError(CosplayError):
    """An adapter cannot be written as a GGUF LoRA."""


SUPPORTED = {"llama": "LLAMA", "qwen2": "QWEN2"}
HF_MODEL_TYPES = {"llama": "llama", "mistral": "llama", "qwen2": "qwen2"}


@dataclass
class BaseShape:
    """What the converter needs to know of the base model."""

    arch: str  # GGUF architecture name
    n_head: int
    n_head_kv: int
    n_layers: int
    shapes: dict[str, tuple[int, ...]] | None = (
        None  # GGUF tensor name -> numpy shape, when read from a GGUF
    )


def shape_from_gguf(path: str | Path) -> BaseShape:
    path = Path(path).expanduser()
    if not path.is_file():
        raise ExportError(
            _("The base model {path} does not exist; pass the base .gguf with --base.", path=path)
        )
    reader, value = open_gguf(
        path,
        lambda exc: ExportError(
            _(
                "{path} is not a readable GGUF file ({error}); pass the base .gguf.",
                path=path,
                error=type(exc).__name__,
            )
        ),
    )
    arch = value("general.architecture") or ""
    if value("general.type") == "adapter":
        raise ExportError(
            _(
                "{path} is itself a LoRA adapter; pass the base model's .gguf with --base.",
                path=path,
            )
        )
    n_head = int(value(f"{arch}.attention.head_count") or 0)
    shapes = {t.name: tuple(int(d) for d in reversed(t.shape.tolist())) for t in reader.tensors}
    return BaseShape(
        arch=arch,
        n_head=n_head,
        n_head_kv=int(value(f"{arch}.attention.head_count_kv") or n_head),
        n_layers=int(value(f"{arch}.block_count") or 0),
        shapes=shapes,
    )


def shape_from_hf_config(config: dict) -> BaseShape:
    model_type = config.get("model_type", "")
    arch = HF_MODEL_TYPES.get(model_type)
    if arch is None:
        raise ExportError(
            _(
                "GGUF export supports Llama and Qwen2 models, not {model_type}; the adapter still works on the GPU engine.",
                model_type=model_type or _("this model"),
            )
        )
    n_head = int(config["num_attention_heads"])
    return BaseShape(
        arch=arch,
        n_head=n_head,
        n_head_kv=int(config.get("num_key_value_heads") or n_head),
        n_layers=int(config["num_hidden_layers"]),
    )


def llama_permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """convert_hf_to_gguf's q/k row permutation (HF rotate-half → llama.cpp interleaved RoPE)."""
    return (
        w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
        .swapaxes(1, 2)
        .reshape(w.shape)
    )


def _read_adapter(adapter_dir: Path) -> tuple[dict, dict[str, np.ndarray]]:
    config = read_peft_config(adapter_dir, error=ExportError)
    weights_path = adapter_dir / SAFE_WEIGHTS
    if not weights_path.is_file():
        raise ExportError(
            _(
                "{adapter_dir} holds no adapter_model.safetensors; save the adapter with safetensors (PEFT's default) and export again.",
                adapter_dir=adapter_dir,
            )
        )
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    try:
        tensors = load_file(str(weights_path))
    except (SafetensorError, OSError, ValueError) as exc:  # not MemoryError
        raise ExportError(
            _(
                "{weights_path} cannot be read ({problem}); the adapter is damaged.",
                weights_path=weights_path,
                problem=exc,
            )
        ) from None
    return config, tensors


def check_supported(config: dict, tensors: dict[str, np.ndarray]) -> None:
    """Refuse what a GGUF LoRA cannot express, naming the reason."""
    if str(config.get("peft_type", "LORA")).upper() != "LORA":
        reason = _("it is a {peft_type} adapter, not LoRA", peft_type=config.get("peft_type"))
    elif config.get("use_dora"):
        reason = _("it is a DoRA adapter (llama.cpp has no magnitude vectors)")
    elif config.get("rank_pattern") or config.get("alpha_pattern"):
        reason = _(
            "it uses per-module ranks or alphas (rank_pattern / alpha_pattern), but a GGUF LoRA "
            "has one alpha"
        )
    elif config.get("modules_to_save"):
        reason = _(
            "it also trains whole modules ({modules}), which a LoRA file cannot carry",
            modules=", ".join(config["modules_to_save"]),
        )
    elif any(
        "lora_embedding" in key or "embed_tokens" in key or "lm_head" in key for key in tensors
    ):
        reason = _(
            "it adapts the embeddings or the output head, which llama.cpp LoRA does not support"
        )
    elif config.get("bias", "none") != "none" or config.get("lora_bias"):
        reason = _("it trains biases, which a GGUF LoRA cannot carry")
    else:
        odd = [k for k in tensors if not k.endswith((".lora_A.weight", ".lora_B.weight"))]
        if not odd:
            return
        reason = _("it holds tensors other than LoRA A/B ({tensor})", tensor=odd[0])
    raise ExportError(
        _(
            "This adapter cannot be exported to GGUF: {reason}; it still works on the GPU engine.",
            reason=reason,
        )
    )


def _hf_module(key: str) -> str:
    module = key.rsplit(".lora_", 1)[0]
    for prefix in ("base_model.model.", "base_model."):
        if module.startswith(prefix):
            return module[len(prefix) :]
    return module


def _base_shape(
    adapter_dir: Path, config: dict, base: str | Path | None, hf_config: dict | None
) -> BaseShape:
    if base is not None:
        return shape_from_gguf(base)
    if hf_config is not None:
        return shape_from_hf_config(hf_config)
    base_dir = Path(str(config.get("base_model_name_or_path") or "")).expanduser()
    if (base_dir / "config.json").is_file():
        try:
            hf = json.loads((base_dir / "config.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            raise ExportError(
                _(
                    "The base model's {path} cannot be read; pass the base model's .gguf with --base.",
                    path=base_dir / "config.json",
                )
            ) from None
        return shape_from_hf_config(hf if isinstance(hf, dict) else {})
    raise ExportError(
        _(
            "Cannot tell the base model of {adapter_dir}; pass the base model's .gguf with --base.",
            adapter_dir=adapter_dir,
        )
    )


def export_gguf(
    adapter_dir: str | Path,
    *,
    base: str | Path | None = None,
    hf_config: dict | None = None,
    out: str | Path | None = None,
    outtype: str = "f32",
) -> Path:
    """Write the PEFT adapter in `adapter_dir` as a GGUF LoRA; returns the file written."""
    import gguf

    adapter_dir = Path(adapter_dir).expanduser()
    config, tensors = _read_adapter(adapter_dir)
    check_supported(config, tensors)
    shape = _base_shape(adapter_dir, config, base, hf_config)
    if shape.arch not in SUPPORTED:
        raise ExportError(
            _(
                "GGUF export supports the llama and qwen2 architectures, not {arch!r}; the adapter still works on the GPU engine.",
                arch=shape.arch,
            )
        )
    if outtype not in ("f32", "f16"):
        raise ExportError(_("Unknown --outtype {outtype!r}; use f32 or f16.", outtype=outtype))
    names = gguf.get_tensor_name_map(
        getattr(gguf.MODEL_ARCH, SUPPORTED[shape.arch]), shape.n_layers
    )
    rank = int(config.get("r", 8))
    alpha = float(config.get("lora_alpha", rank))
    if config.get("use_rslora"):
        alpha *= math.sqrt(rank)  # PEFT scales by alpha/√r; llama.cpp by alpha/r

    pairs: dict[str, dict[str, np.ndarray]] = {}
    for key, array in tensors.items():
        module = _hf_module(key)
        gguf_name = names.get_name(module + ".weight", try_suffixes=(".weight",))
        if gguf_name is None:
            raise ExportError(
                _(
                    "The adapter targets {module}, which has no GGUF tensor; it cannot be exported.",
                    module=module,
                )
            )
        pairs.setdefault(gguf_name, {})["a" if ".lora_A." in key else "b"] = array.astype(
            np.float32
        )

    # Named after the adapter directory, so a persona's adapter has one name on both engines.
    target = Path(out).expanduser() if out else adapter_dir / f"{adapter_dir.resolve().name}.gguf"
    with written_atomically(target) as partial:  # a crash leaves no half adapter behind
        _write_adapter(partial, shape, base, pairs, alpha, outtype, adapter_dir.name)
    return target


def _write_adapter(path: Path, shape, base, pairs, alpha: float, outtype: str, name: str) -> None:
    import gguf

    writer = gguf.GGUFWriter(str(path), shape.arch)
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_name(name)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, alpha)
    dtype = np.float16 if outtype == "f16" else np.float32
    for gguf_name in sorted(pairs):
        pair = pairs[gguf_name]
        if set(pair) != {"a", "b"}:
            raise ExportError(
                _(
                    "The adapter has only half of the LoRA pair for {gguf_name}; it is damaged.",
                    gguf_name=gguf_name,
                )
            )
        a, b = pair["a"], pair["b"]
        if shape.arch == "llama" and ".attn_q." in gguf_name:
            b = llama_permute(b, shape.n_head)
        elif shape.arch == "llama" and ".attn_k." in gguf_name:
            b = llama_permute(b, shape.n_head_kv)
        if shape.shapes is not None:
            _check_fits(gguf_name, a, b, shape.shapes, base)
        writer.add_tensor(f"{gguf_name}.lora_a", np.ascontiguousarray(a, dtype=dtype))
        writer.add_tensor(f"{gguf_name}.lora_b", np.ascontiguousarray(b, dtype=dtype))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def _check_fits(name: str, a: np.ndarray, b: np.ndarray, shapes: dict, base) -> None:
    weight = shapes.get(name)
    if weight is None:
        raise ExportError(
            _(
                "The base model {base} has no tensor {name}; this adapter was trained on another model.",
                base=base,
                name=name,
            )
        )
    if a.shape[1] != weight[1] or b.shape[0] != weight[0] or a.shape[0] != b.shape[1]:
        raise ExportError(
            _(
                "The adapter's {name} (A {a_shape}, B {b_shape}) does not fit the base tensor {weight} in {base}; this adapter was trained on another model.",
                name=name,
                a_shape=a.shape,
                b_shape=b.shape,
                weight=weight,
                base=base,
            )
        )
