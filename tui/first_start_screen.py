"""The first start: `cosplay` with no model named or remembered (or one remembered that is gone).

One list to choose from: the built-in SmolLM2 ("try it now", no download), the models already
on this machine, and the recommended downloads (engines/data/recommended.json) with their size
and RAM. Enter loads the choice, downloading it first with a progress bar (Esc stops the
download, keeping the part for the next try); the chat opens once the model is in. Offline, the
screen says how to point Cosplay at a file, and takes a path typed below the list. Everything
wraps, and the list scrolls, at 80x24.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from textual.binding import Binding
from textual.containers import Vertical
from textual.content import Content
from textual.screen import Screen
from textual.widgets import Input, OptionList, ProgressBar, Static
from textual.widgets.option_list import Option

from engines.errors import CosplayError
from engines.i18n import N_, _
from sessions.workspace import Workspace
from tui.model_loading import ModelLoading, local_entries, spec_for


@dataclass(frozen=True)
class Choice:
    label: str
    model: str = ""  # what to load (a path)
    source: str = ""  # what to download first (`cosplay models pull` form)
    flags: str = ""  # the chat flags it needs once downloaded


class FirstStartScreen(ModelLoading, Screen[None]):
    BINDINGS = [Binding("escape", "leave", N_("Browse sessions"))]

    def __init__(self, workspace: Workspace, notice: str = ""):
        super().__init__()
        self.workspace = workspace
        self.notice = notice
        self.choices = first_start_choices(workspace)

    def compose(self):
        with Vertical(id="first-start"):
            yield Static(
                _("Welcome to Cosplay: role-play chat with a model on this machine."),
                id="first-title",
                markup=False,
            )
            if self.notice:
                yield Static(self.notice, id="first-notice", markup=False)
            yield Static(_("Choose a model (↑/↓, Enter):"), markup=False)
            yield OptionList(
                *(
                    Option(Content(choice.label), id=str(i))
                    for i, choice in enumerate(self.choices)
                ),
                id="choices",
            )
            yield ProgressBar(id="load-progress", show_eta=False)
            yield Static(id="load-status", markup=False)
            yield Static(
                offline_text(self.workspace, self.app.keys_of_id("models")),
                id="first-offline",
                markup=False,
            )
            yield Input(
                placeholder=_("or a .gguf file, model folder or server URL; Enter loads it"),
                id="model-path",
            )
            yield Static(
                _("Esc: your saved sessions, no model · Ctrl+Q: quit"),
                markup=False,
                id="first-keys",
            )

    def on_mount(self) -> None:
        self.hide_progress()
        self.query_one("#choices", OptionList).focus()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        choice = self.choices[int(event.option.id)]
        if choice.source:
            self.begin_download(choice.source, choice.label.split(" · ")[0], choice.flags)
        else:
            self.load_model(choice.model)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        value = event.value.strip()
        if not value:
            self.notify(_("Type a model's path (a .gguf file or a model folder) or a server URL."))
            return
        path = Path(value).expanduser()
        if "://" not in value and not path.exists():
            self.notify(_("{path} does not exist; check the path.", path=value), severity="error")
            return
        self.load_model(value)

    def load_model(self, model: str) -> None:
        try:
            spec = spec_for(model, self.workspace)
        except CosplayError as exc:
            self.notify(str(exc), severity="error", timeout=10)
            return
        self.begin_load(spec)


def first_start_choices(workspace: Workspace) -> list[Choice]:
    """Try it now (the built-in model), the models here, then the recommended downloads."""
    from engines.catalog import builtin_model
    from engines.recommended import recommended
    from tui.cli_models import human_size

    choices: list[Choice] = []
    builtin = builtin_model()
    if builtin is not None:
        choices.append(
            Choice(_("Try it now: SmolLM2 135M, built in · English · no download"), str(builtin))
        )
    here: set[str] = set()
    for entry in local_entries(workspace):
        if entry.kind not in ("gguf", "hf") or entry.problem or entry.source == "built in":
            continue
        here.add(entry.path.name)
        facts = [human_size(entry.size), entry.quantization or entry.kind]
        choices.append(
            Choice(
                _("On this machine: {name} · {facts}", name=entry.name, facts=" · ".join(facts)),
                str(entry.path),
            )
        )
    for model in recommended()[1]:
        if model.builtin or model.source.partition(":")[2] in here:
            continue
        engine = _("needs a GPU") if model.engine == "gpu" else "CPU"
        choices.append(
            Choice(
                _(
                    "Download: {name} · {size} GB, RAM {ram} GB · {engine} · {languages} · "
                    "{purpose}",
                    name=model.name,
                    size=f"{model.download_gb:g}",
                    ram=f"{model.ram_gb:g}",
                    engine=engine,
                    languages=model.languages,
                    purpose=model.purpose,
                ),
                source=model.source,
                flags=model.flags,
            )
        )
    return choices


def offline_text(workspace: Workspace, models_key: str) -> str:
    return _(
        "Offline? Put a .gguf file in {folder} (it is listed here next time), type its path "
        "below, or start with `cosplay chat --model PATH`. {keys} in the chat changes the model "
        "later.",
        folder=workspace.paths.models,
        keys=models_key,
    )
