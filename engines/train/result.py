"""What a run ends with: `TrainResult` (what `train()` returns) and the result record written
beside a finished adapter (RESULT_FILE: base, template, speaker, data, params, final losses,
and the GGUF export when asked for)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from engines.train.checkpoints import RESULT_FILE, write_json


@dataclass
class TrainResult:
    out: Path
    status: Literal["finished", "interrupted", "dry-run"]
    step: int = 0
    max_steps: int = 0
    train_loss: float | None = None
    eval_loss: float | None = None
    report: str = ""  # the --dry-run report
    gguf_path: Path | None = None
    template: str = ""
    speaker: str | None = None
    data_notes: list[str] = field(default_factory=list)  # records trained with warnings / skipped


def local_or_ref(ref: str | Path) -> str:
    """A local path made absolute (so chat finds it from any directory), else the repo id."""
    path = Path(ref).expanduser()
    return str(path.resolve()) if path.exists() else str(ref)


def write_result(
    result: TrainResult, *, params, run, dataset, template, speaker, state, model_config
) -> None:
    """The result record (RESULT_FILE) of a finished run; the adapter exported as GGUF first
    when `params` asks for it (`result.gguf_path`)."""
    out = result.out
    meta = {
        "format": "cosplay-lora/1",
        "base": run["base"],
        "template": template.name,
        "speaker": speaker,
        "data": {
            "path": str(dataset.path),
            "sha256": run["data_sha256"],
            "format": dataset.format,
            "records": len(dataset.samples),
            "skipped": len(dataset.skipped),
            "warnings": len(dataset.warnings),
        },
        "params": params,
        "final": {
            "step": state.global_step,
            "epoch": state.epoch,
            "train_loss": result.train_loss,
            "eval_loss": result.eval_loss,
        },
        "architecture": getattr(model_config, "model_type", None),
    }
    if params["gguf"]:
        from engines.gguf_lora import export_gguf

        base_gguf = local_or_ref(params["gguf"]) if isinstance(params["gguf"], str) else None
        result.gguf_path = export_gguf(
            out, base=base_gguf, hf_config=None if base_gguf else model_config.to_dict()
        )
        meta["gguf"] = str(result.gguf_path.resolve())
        meta["base_gguf"] = base_gguf
    write_json(out / RESULT_FILE, meta)
