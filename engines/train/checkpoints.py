"""The output directory of a training run: its run file, checkpoints, and what is in it.

`cosplay_run.json` is written when a run starts: the options and the data
hash. Resuming compares against it, so a checkpoint is never continued with
different data or a different LoRA shape by accident.
"""

from __future__ import annotations

import errno
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from engines.i18n import N_, _
from engines.train import TrainingError
from engines.train.options import soft_options

RUN_FILE = "cosplay_run.json"
RESULT_FILE = "cosplay.json"
# Options that may change between an interrupted run and its resumption (`Cli(soft=True)`;
# `data` among them: the path may move, the hash is compared instead).
SOFT_OPTIONS = soft_options()
_DISK_FULL = (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))
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
            _(
                "The checkpoint {path} is incomplete (missing {files}); delete it to resume from "
                "the one before, or start over with a new --out.",
                path=path,
                files=", ".join(missing),
            )
        )
    try:
        state = json.loads((path / "trainer_state.json").read_text(encoding="utf-8"))
        return int(state["global_step"])
    except (OSError, ValueError, KeyError, TypeError):
        raise TrainingError(
            _(
                "The checkpoint {path} has an unreadable trainer_state.json; delete the "
                "checkpoint to resume from the one before, or start over with a new --out.",
                path=path,
            )
        ) from None


def read_json(path: Path, fix: str) -> dict | None:
    """The JSON object in `path`; None when there is no such file, and a TrainingError
    (ending with `fix`, a string marked with N_) when the file is there but unreadable or
    damaged."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or type(exc).__name__
        raise TrainingError(
            _("{path} cannot be read ({reason}); {fix}.", path=path, reason=reason, fix=_(fix))
        ) from None
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise TrainingError(
            _(
                "{path} is corrupt (not valid JSON: {problem}); {fix}.",
                path=path,
                problem=exc,
                fix=_(fix),
            )
        ) from None
    if not isinstance(value, dict):
        raise TrainingError(
            _("{path} is corrupt (not a JSON object); {fix}.", path=path, fix=_(fix))
        )
    return value


def check_same_run(out: Path, run: dict) -> None:
    """Refuse to resume a checkpoint made with other data or options."""
    previous = read_json(
        out / RUN_FILE,
        N_("delete it to resume without comparing the options, or start over with a new --out"),
    )
    if previous is None:
        return
    changed = sorted(
        key
        for key in set(previous.get("params", {})) | set(run["params"])
        if key not in SOFT_OPTIONS and previous.get("params", {}).get(key) != run["params"].get(key)
    )
    if previous.get("data_sha256") != run["data_sha256"]:
        changed.insert(0, _("data (its contents changed)"))
    if changed:
        raise TrainingError(
            _(
                "The checkpoints in {out} come from a run with different {changed}; use the same "
                "options to resume, or a new --out to start over.",
                out=out,
                changed=", ".join(changed),
            )
        )


@contextmanager
def disk_space_guard(out: Path) -> Iterator[None]:
    """A full disk while saving checkpoints or the adapter is one sentence, not a traceback."""
    try:
        yield
    except OSError as exc:
        if exc.errno not in _DISK_FULL:
            raise
        raise _disk_full(out) from None
    except RuntimeError as exc:  # torch.save reports a failed write as RuntimeError
        message = str(exc)
        if "No space left on device" not in message and "file write failed" not in message:
            raise
        raise _disk_full(out) from None


def _disk_full(out: Path) -> TrainingError:
    return TrainingError(
        _(
            "The disk holding {out} is full, so the checkpoint or adapter could not be saved; "
            "free space there (or delete old checkpoint-* directories) and run the same command "
            "again to resume.",
            out=out,
        )
    )


def write_json(path: Path, value: dict) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(value, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)
