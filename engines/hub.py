"""`cosplay models pull`: download a model from the Hugging Face Hub into the models folder.

`pull("owner/repo")` picks what to fetch: in a GGUF repo the Q4_K_M file (every part of a split
one), else the file named (`owner/repo:FILE`); in a Hugging Face model repo its config,
tokenizer, code and one format of weights. A GGUF lands in `<models>/FILE.gguf`, a model repo
in `<models>/owner--repo/`.

Each file is fetched with huggingface_hub's own pieces (`get_hf_file_metadata` for size, ETag
and the download URL; `http_get` for the transfer, which asks for the rest with a Range header
and retries a dropped connection) into a `.part` file named after the file's ETag, kept when
the transfer stops: the next pull of the same file continues from where it stopped.
(`hf_hub_download` itself no longer keeps a partial file between calls since huggingface_hub
1.x, so it cannot resume an interrupted pull.) `progress` gets a `Progress` per chunk; setting
`cancel` stops at the next chunk (from another thread: the TUI), keeping the partial file.
Every Hub error becomes one sentence (`PullError`).
"""

from __future__ import annotations

import fnmatch
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from engines.errors import CosplayError
from engines.i18n import _

DEFAULT_QUANT = "q4_k_m"
# The files a Hugging Face model repo needs (weights chosen apart, see `_weights`).
NEEDED = ("*.json", "*.py", "*.model", "*.tiktoken", "*.txt", "*.jinja", "tokenizer*")
SKIPPED = ("README*", ".gitattributes", "*.md", "onnx/*", "original/*", "*.png", "*.jpg")


class PullError(CosplayError):
    """A pull that cannot be done: one sentence naming the repo or file and what to do."""


class PullCancelled(PullError):
    """The pull was stopped (the partial file is kept for the next pull)."""


@dataclass(frozen=True)
class Progress:
    filename: str
    done: int  # bytes of this file on disk (earlier pulls' included)
    total: int | None
    speed: float  # bytes per second in this pull
    index: int = 1  # which file of `count`
    count: int = 1


@dataclass
class PullResult:
    path: Path  # what --model takes: the GGUF file (the first part) or the model folder
    files: list[str]
    others: list[tuple[str, int | None]] = field(default_factory=list)  # other GGUF files


def parse_source(source: str) -> tuple[str, str | None]:
    """ "owner/repo[:FILE]" → (repo id, file or None)."""
    repo, _colon, filename = source.strip().partition(":")
    parts = repo.split("/")
    if len(parts) != 2 or not all(parts) or any(c.isspace() for c in repo):
        raise PullError(
            _(
                "{source} is not a Hub repo; write it as OWNER/NAME[:FILE], e.g. "
                "Qwen/Qwen2.5-0.5B-Instruct-GGUF:qwen2.5-0.5b-instruct-q4_k_m.gguf.",
                source=repr(source),
            )
        )
    return repo, filename.strip() or None


def endpoint() -> str:
    """The Hub to use: $HF_ENDPOINT read now (huggingface_hub reads it once, at import)."""
    from huggingface_hub import constants

    return (os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")


def repo_files(repo: str, revision: str | None = None) -> list[tuple[str, int | None]]:
    """The repo's files with their sizes (one API call, no download)."""
    from huggingface_hub import HfApi

    with hub_errors(repo):
        info = HfApi(endpoint=endpoint()).model_info(repo, revision=revision, files_metadata=True)
    return [(s.rfilename, s.size) for s in info.siblings or []]


def choose_files(
    repo: str, files: list[tuple[str, int | None]], wanted: str | None
) -> tuple[list[str], list[tuple[str, int | None]]]:
    """(the files to fetch, the repo's other GGUF files to mention)."""
    names = [name for name, _size in files]
    ggufs = [(name, size) for name, size in files if name.lower().endswith(".gguf")]
    if wanted:
        chosen = [name for name in names if name == wanted or _is_part_of(name, wanted)]
        if not chosen:
            listed = ", ".join(name for name, _size in ggufs[:12]) or ", ".join(names[:12])
            raise PullError(
                _(
                    "{repo} has no file {file}; it has {listed}.",
                    repo=repo,
                    file=wanted,
                    listed=listed,
                )
            )
        return chosen, [g for g in ggufs if g[0] not in chosen]
    if ggufs:
        models = [g for g in ggufs if "mmproj" not in g[0].lower()]
        chosen = [name for name, _size in models if DEFAULT_QUANT in name.lower()]
        if not chosen and len(models) == 1:
            chosen = [models[0][0]]
        if not chosen:
            listed = ", ".join(name for name, _size in models)
            raise PullError(
                _(
                    "{repo} has no Q4_K_M file; choose one with {repo}:FILE from: {listed}.",
                    repo=repo,
                    listed=listed,
                )
            )
        first = sorted(chosen)[0]
        chosen = [name for name in chosen if name == first or _is_part_of(name, first)]
        return sorted(chosen), [g for g in models if g[0] not in chosen]
    if "config.json" not in names:
        raise PullError(
            _("{repo} holds neither a GGUF file nor a config.json; it is not a model.", repo=repo)
        )
    return _model_repo_files(names), []


def _is_part_of(name: str, first: str) -> bool:
    """Whether `name` is a later part of the split GGUF whose first part is `first`."""
    stem, marker, _rest = first.rpartition("-00001-of-")
    return bool(marker) and name.startswith(stem + "-") and "-of-" in name


def _model_repo_files(names: list[str]) -> list[str]:
    def any_match(name: str, patterns) -> bool:
        return any(fnmatch.fnmatch(name, p) for p in patterns)

    kept = [n for n in names if any_match(n, NEEDED) and not any_match(n, SKIPPED)]
    return sorted(set(kept) | set(_weights(names)))


def _weights(names: list[str]) -> list[str]:
    """One format of weights: safetensors when there are, else PyTorch .bin files."""
    top = [n for n in names if "/" not in n]
    safetensors = [n for n in top if n.endswith(".safetensors")]
    return safetensors or [n for n in top if n.endswith(".bin") and "training" not in n]


def pull(
    source: str,
    models_dir: Path,
    *,
    progress: Callable[[Progress], None] | None = None,
    cancel: threading.Event | None = None,
) -> PullResult:
    """Download what `source` names into `models_dir` (see the module's docstring)."""
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        raise PullError(_offline(source, _("HF_HUB_OFFLINE is set")))
    repo, wanted = parse_source(source)
    files = repo_files(repo)
    chosen, others = choose_files(repo, files, wanted)
    gguf = chosen[0].lower().endswith(".gguf")
    target = models_dir if gguf else models_dir / repo.replace("/", "--")
    for index, name in enumerate(chosen, 1):
        destination = target / (Path(name).name if gguf else name)
        _fetch(repo, name, destination, progress, cancel, index, len(chosen))
    path = target / Path(chosen[0]).name if gguf else target
    return PullResult(path, chosen, others)


def _fetch(
    repo: str,
    name: str,
    destination: Path,
    progress: Callable[[Progress], None] | None,
    cancel: threading.Event | None,
    index: int,
    count: int,
) -> None:
    """One file, resumed from its .part file when an earlier pull stopped halfway."""
    from huggingface_hub import get_hf_file_metadata, hf_hub_url
    from huggingface_hub.file_download import http_get
    from huggingface_hub.utils import build_hf_headers

    url = hf_hub_url(repo, name, endpoint=endpoint())
    with hub_errors(repo, name):
        metadata = get_hf_file_metadata(url, endpoint=endpoint())
    if metadata.etag is None or metadata.commit_hash is None:
        raise PullError(
            _(
                "{endpoint} did not answer as the Hugging Face Hub does for {repo}.",
                endpoint=endpoint(),
                repo=repo,
            )
        )
    if destination.is_file() and destination.stat().st_size == metadata.size:
        return  # already here
    tag = "".join(c for c in metadata.etag if c.isalnum())[:16]
    part = destination.with_name(f".{destination.name}.{tag}.part")
    part.parent.mkdir(parents=True, exist_ok=True)
    meter = _meter(name, progress, cancel, index, count)
    same_host = metadata.location.startswith(endpoint())
    headers = build_hf_headers() if same_host else {}  # no token to a CDN
    try:
        with part.open("ab") as handle, hub_errors(repo, name):
            http_get(
                metadata.location,
                handle,
                resume_size=handle.tell(),
                headers=headers,
                expected_size=metadata.size,
                displayed_filename=name,
                tqdm_class=meter,
            )
    except OSError as exc:
        if isinstance(exc, CosplayError):
            raise
        raise PullError(
            _(
                "Cannot write {path} ({problem}); free some space and pull again: it continues "
                "where it stopped.",
                path=part,
                problem=exc.strerror or exc,
            )
        ) from None
    os.replace(part, destination)


def _meter(name, progress, cancel, index, count) -> type:
    """A tqdm-like class for `http_get` that reports to `progress` and checks `cancel`."""

    class Meter:
        def __init__(self, *, total=None, initial=0, **_):
            self.total, self.done, self.start_done, self.start = (
                total,
                initial,
                initial,
                time.monotonic(),
            )

        def update(self, n: int) -> None:
            if cancel is not None and cancel.is_set():
                raise PullCancelled(
                    _("The download of {name} stopped; pull again to continue it.", name=name)
                )
            self.done += n
            if progress is not None:
                elapsed = max(time.monotonic() - self.start, 1e-6)
                speed = (self.done - self.start_done) / elapsed
                progress(Progress(name, self.done, self.total, speed, index, count))

        def __enter__(self):
            return self

        def __exit__(self, *exc) -> None:
            return None

        def close(self) -> None:
            return None

    return Meter


class hub_errors:  # noqa: N801 - used as `with hub_errors(repo):`
    """Turn what huggingface_hub and its HTTP client raise into one PullError sentence."""

    def __init__(self, repo: str, filename: str | None = None):
        self.repo, self.filename = repo, filename

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind, exc, traceback) -> None:
        if exc is None or isinstance(exc, CosplayError) or not isinstance(exc, Exception):
            return None
        message = describe_error(exc, self.repo, self.filename)
        if message is None:
            return None
        raise PullError(message) from None


def describe_error(exc: Exception, repo: str, filename: str | None) -> str | None:
    import httpx2
    from huggingface_hub.errors import (
        EntryNotFoundError,
        GatedRepoError,
        HfHubHTTPError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    page = f"https://huggingface.co/{repo}"
    if isinstance(exc, GatedRepoError):
        return _(
            "{repo} is gated: accept its terms at {page} and log in with `hf auth login`, "
            "then pull again.",
            repo=repo,
            page=page,
        )
    if isinstance(exc, RepositoryNotFoundError):
        return _(
            "There is no model {repo} on the Hugging Face Hub (or it is private); check the "
            "name, or `cosplay models recommended` for ones that exist.",
            repo=repo,
        )
    if isinstance(exc, RevisionNotFoundError):
        return _("{repo} has no such revision; pull its main branch.", repo=repo)
    if isinstance(exc, EntryNotFoundError):
        return _(
            "{repo} has no file {file}; `cosplay models pull {repo}` lists its files.",
            repo=repo,
            file=filename,
        )
    if isinstance(exc, (OfflineModeIsEnabled, httpx2.TransportError)):
        return _offline(repo, str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    if isinstance(exc, HfHubHTTPError):
        status = exc.response.status_code if exc.response is not None else "an error"
        return _(
            "The Hugging Face Hub answered {status} for {repo}; try again later.",
            status=status,
            repo=repo,
        )
    return None


def _offline(what: str, reason: str) -> str:
    return _(
        "Cannot reach the Hugging Face Hub to pull {what} ({reason}); check the connection, "
        "or use a model already here (`cosplay models list`).",
        what=what,
        reason=reason,
    )
