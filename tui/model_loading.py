"""Loading a model (or downloading one first) from inside the TUI, for the first-start screen
and the models screen.

The spec is built as `cosplay chat --model …` builds it (tui/cli_model.py: the flags over the
model's remembered settings over the config's), and loaded by the same `load`, which remembers
the model as the last one used and the settings given as the model's. The load runs in a thread
worker; llama.cpp's own silencing (`verbose=False` points file descriptors 1 and 2 at /dev/null
while a model loads) is switched off for it, since Textual draws the screen on fd 2: its log
already goes to our logger (engines/llamacpp_setup.py), so nothing reaches the terminal.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from textual import work
from textual.message import Message
from textual.widgets import ProgressBar, Static
from textual.worker import get_current_worker

from engines.errors import CosplayError, LoadCancelled
from engines.i18n import N_, _

if TYPE_CHECKING:
    from engines.base import Engine
    from engines.catalog import ModelEntry
    from engines.hub import Progress
    from engines.llamacpp_setup import LoadProgress
    from engines.loader import ModelSpec
    from sessions.workspace import Workspace

# The per-model settings the screens edit, as `cosplay chat` flags (sessions/config_keys.py names).
SETTING_FLAGS = {
    "template": "template",
    "n_ctx": "n_ctx",
    "threads": "threads",
    "gpu_layers": "gpu_layers",
}


# What a second load or download hears while one runs (by `ModelLoading.busy`).
STILL_BUSY = {
    "loading": N_("Still loading; wait for it (Esc stops the load)."),
    "downloading": N_("Still downloading; wait for it (Esc stops a download)."),
}


class LoadProgressed(Message):
    """(Posted from the load worker.) The share of the model's weights loaded, 0 to 1."""

    def __init__(self, fraction: float) -> None:
        super().__init__()
        self.fraction = fraction


def catalog_folders(workspace: Workspace) -> list[tuple[Path, str]]:
    """Where the TUI looks for models: as `cosplay models list` (its models/ and adapters/,
    the config's models.dirs)."""
    folders = [(workspace.paths.models, "models dir"), (workspace.paths.adapters, "adapters dir")]
    dirs = workspace.config.get("models.dirs") or []
    return folders + [(Path(folder).expanduser(), "folder") for folder in dirs]


def local_entries(workspace: Workspace) -> list[ModelEntry]:
    """Every model and adapter on this machine (engines/catalog.py)."""
    from engines.catalog import local_models

    return local_models(catalog_folders(workspace))


def model_flags(model: str, settings: dict[str, object] | None = None) -> argparse.Namespace:
    """The `cosplay chat` model flags for `model`, with `settings` (template, n_ctx, threads,
    gpu_layers, quantization) given as flags: they become the model's remembered settings."""
    settings = settings or {}
    quantization = settings.get("quantization") or ""
    return argparse.Namespace(
        model=model,
        engine=None,
        api_key_env=None,
        template=settings.get("template") or None,
        n_ctx=settings.get("n_ctx"),
        threads=settings.get("threads"),
        gpu_layers=settings.get("gpu_layers"),
        adapter=[],
        load_8bit=quantization == "8bit",
        load_4bit=quantization == "4bit",
        trust_remote_code=bool(settings.get("trust_remote_code")),
    )


def flags_settings(flags: str) -> dict[str, object]:
    """The settings a recommended model's `flags` give (recommended.json's `flags`)."""
    words = flags.split()
    settings: dict[str, object] = {"trust_remote_code": "--trust-remote-code" in words}
    if "--template" in words[:-1]:
        settings["template"] = words[words.index("--template") + 1]
    return settings


def spec_for(
    model: str, workspace: Workspace, settings: dict[str, object] | None = None
) -> ModelSpec:
    from tui.cli_model import model_spec

    with contextlib.redirect_stderr(_Discard()):  # the config's warnings: shown at start
        return model_spec(model_flags(model, settings), workspace)


@contextlib.contextmanager
def terminal_kept() -> Iterator[None]:
    """Inside: llama-cpp-python loads without pointing fds 1 and 2 at /dev/null."""
    if "llama_cpp" not in sys.modules:
        try:
            import llama_cpp  # noqa: F401 - only to patch its silencing below
        except ImportError:
            yield
            return
    import llama_cpp._internals as internals
    import llama_cpp.llama as high

    originals = (high.suppress_stdout_stderr, internals.suppress_stdout_stderr)
    high.suppress_stdout_stderr = internals.suppress_stdout_stderr = _NotSilenced
    try:
        yield
    finally:
        high.suppress_stdout_stderr, internals.suppress_stdout_stderr = originals


class _NotSilenced(contextlib.nullcontext):
    def __init__(self, disable: bool = True):
        super().__init__()


def load_in_tui(
    spec: ModelSpec, workspace: Workspace, progress: LoadProgress | None = None
) -> Engine:
    """Load the model as `cosplay chat` does (remembering it), the terminal left alone."""
    from tui.cli_model import load

    with terminal_kept(), contextlib.redirect_stderr(_Discard()):
        return load(spec, workspace, progress)


class _Discard:
    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        return None


def error_text(exc: BaseException, what: str) -> str:
    if isinstance(exc, CosplayError):
        return str(exc)
    return _("{what} failed ({kind}: {error}).", what=what, kind=type(exc).__name__, error=exc)


class ModelLoading:
    """For a screen with a `ProgressBar#load-progress` and a `Static#load-status`: download a
    model (with a cancel), load one in a thread worker, then hand it to the chat screen."""

    workspace: Workspace
    busy: str = ""  # "downloading" or "loading" while a worker runs
    _pull_cancel: threading.Event | None = None
    _load_cancel: threading.Event | None = None
    _load_text = ""  # what the status line says while a model loads

    def show_progress(self, text: str, total: float | None = None, done: float = 0) -> None:
        bar = self.query_one("#load-progress", ProgressBar)
        bar.display = True
        bar.update(total=total, progress=done)
        status = self.query_one("#load-status", Static)
        status.display = True
        status.update(text)

    def hide_progress(self) -> None:
        self.query_one("#load-progress", ProgressBar).display = False
        self.query_one("#load-status", Static).display = False

    # --- loading ------------------------------------------------------------------------------

    def begin_load(self, spec: ModelSpec) -> None:
        if self.busy:
            self.notify(_(STILL_BUSY[self.busy]))
            return
        self.busy = "loading"
        from engines.room import must_free_first

        known = self.app.engine_spec is not None  # else it could not be loaded again
        free_first = known and must_free_first(self.app.engine, spec)
        if free_first:
            text = _(
                "Unloading {old} to make room, then loading {model} …",
                old=self.app.engine.model_name,
                model=spec.model,
            )
        else:
            text = _("Loading {model} …", model=spec.model)
        self._load_text = text + " " + _("(Esc stops)")
        self._load_cancel = threading.Event()
        self.show_progress(self._load_text)
        self._load_worker(spec, free_first, self._load_cancel)

    def on_load_progressed(self, message: LoadProgressed) -> None:
        if self.busy == "loading":
            self.show_progress(self._load_text, total=100, done=round(100 * message.fraction))

    @work(thread=True, exclusive=True, group="model-load", exit_on_error=False)
    def _load_worker(self, spec: ModelSpec, free_first: bool, cancel: threading.Event) -> None:
        """Load `spec`; normally the old model stays in use until it has loaded (and after a
        failure). With `free_first` (both would not fit in memory) the old one is closed
        first and, if the new one fails, loaded again. A GGUF load reports its progress and
        stops at Esc (`cancel`) or when the app quits; another engine is freed once loaded."""
        worker = get_current_worker()
        previous = self._free_old_engine() if free_first else None
        if worker.is_cancelled:  # the app is quitting: load nothing
            return

        def progress(fraction: float) -> bool:
            self.post_message(LoadProgressed(fraction))
            return not (cancel.is_set() or worker.is_cancelled)

        def until_quit(_fraction: float) -> bool:  # the old model again: Esc was for the new
            return not worker.is_cancelled

        engine, error = None, None
        try:
            engine = load_in_tui(spec, self.workspace, progress)
        except Exception as exc:  # one sentence in a notification
            error = exc
            if previous is not None:
                try:
                    engine = load_in_tui(previous, self.workspace, until_quit)
                except Exception:  # said in the notification: no model is loaded
                    engine = None
        try:
            self.app.call_from_thread(self._loaded, spec, engine, error, previous)
        except RuntimeError:  # the app is gone
            if engine is not None:
                engine.close()

    def _free_old_engine(self) -> ModelSpec | None:
        """(In the load worker.) Take the model away from the chat and wait until it is
        closed; the spec that loads it again."""
        previous, worker, closed = self.app.engine_spec, get_current_worker(), threading.Event()
        self.app.call_from_thread(self.app.chat.swap_engine, None, closed)
        while not closed.wait(0.05) and not worker.is_cancelled:
            pass
        return previous

    def _loaded(
        self,
        spec: ModelSpec,
        engine: Engine | None,
        error: Exception | None,
        previous: ModelSpec | None = None,
    ) -> None:
        self.busy = ""
        self.app.refresh(repaint=True)
        if error is not None or engine is None:
            self.hide_progress()
            text = error_text(error, _("Loading {model}", model=spec.model))
            severity = "information" if isinstance(error, LoadCancelled) else "error"
            if previous is not None and engine is not None:  # the old model, loaded again
                self.app.chat.swap_engine(engine)
                self.app.engine_spec = previous
                text += " " + _("{model} is loaded again.", model=engine.model_name)
            elif previous is not None:
                self.app.engine_spec = None
                text += " " + _(
                    "{model} was unloaded to make room and could not be loaded again; pick a "
                    "model here.",
                    model=previous.model,
                )
            self.notify(text, severity=severity, timeout=10)
            return
        if not self.is_attached and previous is None:  # closed meanwhile: keep the old model
            engine.close()
            return
        self.app.chat.swap_engine(engine)
        self.app.engine_spec = spec
        self.app.notify(_("Loaded {model}.", model=engine.model_name))
        self.model_loaded(engine)

    def model_loaded(self, engine: Engine) -> None:
        """What the screen does once the model is in the chat (default: close)."""
        self.dismiss(None)

    # --- downloading -----------------------------------------------------------------------

    def begin_download(self, source: str, name: str, flags: str = "") -> None:
        """Download `source`, then load it with the chat flags the recommended list gives it
        (`--trust-remote-code --template chatglm`)."""
        if self.busy:
            self.notify(_(STILL_BUSY[self.busy]))
            return
        self.busy = "downloading"
        self._pull_cancel = threading.Event()
        self.show_progress(
            _("Downloading {name} … (Esc stops; the same choice continues it)", name=name)
        )
        self._pull_worker(source, name, self._pull_cancel, flags_settings(flags))

    def action_leave(self) -> None:
        """Esc: stop a download or a load first; else close the screen."""
        if self.cancel_download() or self.cancel_load():
            return
        self.dismiss(None)

    def cancel_load(self) -> bool:
        """Stop the model load under way (the model in use stays); whether there was one."""
        if self.busy == "loading" and self._load_cancel is not None:
            if not self._load_cancel.is_set():
                self._load_cancel.set()
                self._load_text = _("Stopping the load …")
                self.query_one("#load-status", Static).update(self._load_text)
            return True
        return False

    def cancel_download(self) -> bool:
        """Stop the download under way (its partial file is kept); whether there was one."""
        if self.busy == "downloading" and self._pull_cancel is not None:
            self._pull_cancel.set()
            return True
        return False

    @work(thread=True, exclusive=True, group="model-pull", exit_on_error=False)
    def _pull_worker(
        self, source: str, name: str, cancel: threading.Event, settings: dict[str, object]
    ) -> None:
        from engines.hub import pull

        models = self.workspace.paths.models
        result, error = None, None
        try:
            result = pull(source, models, progress=self._pull_progress, cancel=cancel)
        except Exception as exc:
            error = exc
        try:
            self.app.call_from_thread(self._pulled, name, result, error, settings)
        except RuntimeError:
            pass

    def _pull_progress(self, progress: Progress) -> None:
        try:
            self.app.call_from_thread(self._show_pull, progress)
        except RuntimeError:
            pass

    def _show_pull(self, progress: Progress) -> None:
        from tui.cli_models import human_size

        total = _(" of {size}", size=human_size(progress.total)) if progress.total else ""
        part = (
            _(" (file {index} of {count})", index=progress.index, count=progress.count)
            if progress.count > 1
            else ""
        )
        self.show_progress(
            _(
                "{file}{part}: {done}{total}, {speed}/s · Esc stops",
                file=progress.filename,
                part=part,
                done=human_size(progress.done),
                total=total,
                speed=human_size(progress.speed),
            ),
            progress.total,
            progress.done,
        )

    def _pulled(self, name: str, result, error: Exception | None, settings: dict) -> None:
        self.busy = ""
        if error is not None or result is None:
            self.hide_progress()
            self.notify(
                error_text(error, _("Downloading {name}", name=name)),
                severity="error",
                timeout=12,
            )
            return
        try:
            spec = spec_for(str(result.path), self.workspace, settings)
        except CosplayError as exc:
            self.hide_progress()
            self.notify(str(exc), severity="error", timeout=10)
            return
        self.begin_load(spec)
