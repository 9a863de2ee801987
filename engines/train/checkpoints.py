"""The output directory of a training run: its run file, checkpoints, and what is in it.

`cosplay_run.json` is written when a run starts: the options and the data
hash. Resuming compares against it, so a checkpoint is never continued with
different data or a different LoRA shape by accident.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from engines.train import TrainingError

RUN_FILE = "cosplay_run.json"
RESULT_FILE = "cosplay.json"
# Options that may change between an interrupted run and its resumption.
SOFT_OPTIONS = {
    "eval_steps",
    "save_steps",
    "save_total_limit",
    "logging_steps",
    "progress",
    "gguf",
    "persona",
    "resume",
    "data",  # the path may move; the hash is compared instead
    "out",
}
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
_NEEDED = ("trainer_state.json", "optimizer.pt", "scheduler.pt")


def checkpoints(out: Path) -> list[Path]:
    """checkpoint-N directories, oldest first."""
    if not out.is_dir():
        return []
    found = [
        (int(m.group(1)), p)
        for p in out.iterdir()
        if p.is_dir() and (m := _CHECKPOINT.match(p.name))
    ]
    return [path for _, path in sorted(found)]


def validate_checkpoint(path: Path) -> int:
    """The step a checkpoint was saved at; a clear error when files are missing or unreadable."""
    missing = [name for name in _NEEDED if not (path / name).is_file()]
    if not any(
        (path / name).is_file() for name in ("adapter_model.safetensors", "adapter_model.bin")
    ):
        missing.append("adapter_model.safetensors")
    if missing:
        raise TrainingError(
            f"The checkpoint {path} is incomplete (missing {', '.join(missing)}); delete it to resume "
            "from the one before, or start over with a new --out."
        )
    try:
        state = json.loads((path / "trainer_state.json").read_text(encoding="utf-8"))
        return int(state["global_step"])
    except (OSError, ValueError, KeyError, TypeError):
        raise TrainingError(
            f"The checkpoint {path} has an unreadable trainer_state.json; delete the checkpoint to "
            "resume from the one before, or start over with a new --out."
        ) from None


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def check_same_run(out: Path, run: dict) -> None:
    """Refuse to resume a checkpoint made with other data or options."""
    previous = read_json(out / RUN_FILE)
    if previous is None:
        return
    changed = sorted(
        key
        for key in set(previous.get("params", {})) | set(run["params"])
        if key not in SOFT_OPTIONS and previous.get("params", {}).get(key) != run["params"].get(key)
    )
    if previous.get("data_sha256") != run["data_sha256"]:
        changed.insert(0, "data (its contents changed)")
    if changed:
        raise TrainingError(
            f"The checkpoints in {out} come from a run with different {', '.join(changed)}; use the "
            "same options to resume, or a new --out to start over."
        )


def write_json(path: Path, value: dict) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(value, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)
