"""The models screen: every model and adapter on this machine, one selection away.

Models (engines/catalog.py, plus the recommended downloads): Enter loads the highlighted one
in a thread worker, with the settings in the row below it (template, context, threads, GPU
layers, quantization; filled with what was remembered for that model, and remembered again
when it loads: sessions/config.py's per_model), then swaps it into the chat, which closes the
old engine (a reply under way is stopped first). A download shows its progress; Esc stops it.

Adapters, for the model in use: the ones it has loaded and the ones here in the form its engine
takes (a GGUF LoRA or a PEFT directory for llama.cpp, a PEFT directory for transformers). Enter
loads and activates one for chats with no persona adapter, `u` unloads it, `p` writes it into
the session's persona (its card, through the persona store).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.screen import Screen
from textual.widgets import Input, OptionList, ProgressBar, Static
from textual.widgets.option_list import Option

from engines.errors import CosplayError
from engines.i18n import N_, _
from sessions.workspace import Workspace
from tui.model_loading import ModelLoading, local_entries, spec_for

# The per-model settings in the row under the list: config name, placeholder, is a number.
SETTINGS = (
    ("template", N_("template"), False),
    ("n_ctx", N_("context"), True),
    ("threads", N_("threads"), True),
    ("gpu_layers", N_("GPU layers"), True),
    ("quantization", "8bit/4bit", False),
)


@dataclass(frozen=True)
class ModelChoice:
    label: str
    model: str = ""  # a path to load
    source: str = ""  # a download (`cosplay models pull` form)
    flags: str = ""  # the chat flags it needs once downloaded
    problem: str = ""  # why it cannot be loaded


@dataclass(frozen=True)
class AdapterChoice:
    label: str
    name: str  # the name it is (or will be) loaded under
    path: str
    kind: str  # "gguf-lora" or "peft"
    loaded: bool


class ModelsScreen(ModelLoading, Screen[None]):
    BINDINGS = [
        Binding("escape", "leave", N_("Back")),
        Binding("u", "unload_adapter", N_("Unload adapter")),
        Binding("p", "persona_adapter", N_("Use for this persona")),
    ]

    def __init__(self, workspace: Workspace, chat):
        super().__init__()
        self.workspace = workspace
        self.chat = chat
        entries = local_entries(workspace)
        self.models = model_choices(entries)
        self.adapter_entries = [e for e in entries if e.kind in ("gguf-lora", "peft")]
        self.adapters: list[AdapterChoice] = []

    def compose(self):
        with Vertical(id="models-screen"):
            yield Static(id="models-current", markup=False)
            yield OptionList(*self._model_options(), id="models")
            with Horizontal(id="model-settings"):
                for name, placeholder, _number in SETTINGS:
                    yield Input(placeholder=_(placeholder), id=f"setting-{name}")
            yield ProgressBar(id="load-progress", show_eta=False)
            yield Static(id="load-status", markup=False)
            yield Static(_("Adapters for the model in use:"), markup=False)
            yield OptionList(id="adapters")
            yield Static(
                _("Enter: load · u: unload adapter · p: adapter for this persona · Esc: back"),
                id="models-keys",
                markup=False,
            )

    def on_mount(self) -> None:
        self.hide_progress()
        self.refresh_engine()
        self.query_one("#models", OptionList).focus()

    def _model_options(self) -> list[Option]:
        current = self._current_path()
        return [
            Option(
                Content(
                    ("● " if choice.model and choice.model == current else "  ") + choice.label
                ),
                id=str(i),
                disabled=bool(choice.problem),
            )
            for i, choice in enumerate(self.models)
        ]

    def _current_path(self) -> str:
        engine = self.chat.engine
        if engine is None:
            return ""
        return str(getattr(engine, "model_path", None) or engine.model_name)

    def refresh_engine(self) -> None:
        """The title and the adapter list, for the engine the chat uses now."""
        engine = self.chat.engine
        if engine is None:
            title = _("No model loaded: choose one (Enter).")
        else:
            adapter = engine.active_adapter or _("no adapter")
            title = _(
                "In use: {model} ({kind} engine) · {adapter}",
                model=engine.model_name,
                kind=engine.kind,
                adapter=adapter,
            )
        self.query_one("#models-current", Static).update(title)
        self.adapters = adapter_choices(engine, self.adapter_entries)
        listing = self.query_one("#adapters", OptionList)
        listing.clear_options()
        listing.add_options(
            [Option(Content(a.label), id=str(i)) for i, a in enumerate(self.adapters)]
            or [Option(_("(none here for this engine)"), disabled=True)]
        )

    # --- models ----------------------------------------------------------------------------

    def on_option_list_option_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        if event.option_list.id != "models" or event.option.id is None:
            return
        choice = self.models[int(event.option.id)]
        from tui.cli_model import model_key

        remembered = self.workspace.config.model_settings(model_key(choice.model or "?"))
        for name, _placeholder, _number in SETTINGS:
            value = remembered.get(name)
            self.query_one(f"#setting-{name}", Input).value = "" if value is None else str(value)

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        if event.option.id is None:
            return
        if event.option_list.id == "adapters":
            self.use_adapter(self.adapters[int(event.option.id)])
            return
        choice = self.models[int(event.option.id)]
        if choice.source:
            self.begin_download(choice.source, choice.label.split(" · ")[0], choice.flags)
            return
        try:
            spec = spec_for(choice.model, self.workspace, self.settings())
        except CosplayError as exc:
            self.notify(str(exc), severity="error", timeout=10)
            return
        self.begin_load(spec)

    def settings(self) -> dict[str, object]:
        """The settings row, checked: a wrong value is one sentence (CosplayError)."""
        values: dict[str, object] = {}
        for name, placeholder, number in SETTINGS:
            text = self.query_one(f"#setting-{name}", Input).value.strip()
            if not text:
                continue
            if number:
                try:
                    values[name] = int(text)
                except ValueError:
                    raise CosplayError(
                        _(
                            "The {setting} setting must be a whole number, not {text}.",
                            setting=_(placeholder),
                            text=repr(text),
                        )
                    ) from None
            elif name == "quantization" and text not in ("8bit", "4bit"):
                raise CosplayError(
                    _("Quantization is 8bit or 4bit (GPU engine), not {text}.", text=repr(text))
                )
            else:
                values[name] = text
        return values

    def model_loaded(self, engine) -> None:
        self.refresh_engine()
        models = self.query_one("#models", OptionList)
        highlighted = models.highlighted
        models.clear_options()
        models.add_options(self._model_options())
        models.highlighted = highlighted
        self.hide_progress()

    # --- adapters --------------------------------------------------------------------------

    def use_adapter(self, choice: AdapterChoice) -> None:
        """Load (if needed) and activate `choice` for chats whose persona names no adapter."""
        engine = self.chat.engine
        if engine is None or self._refuse_while_replying():
            return
        try:
            if not choice.loaded:
                engine.load_adapter(choice.name, choice.path)
            engine.default_adapter = choice.name
            engine.set_adapter(choice.name)
        except CosplayError as exc:
            self.notify(str(exc), severity="error", timeout=10)
            return
        self.notify(
            _("Adapter {name} in use (a persona's own adapter still wins).", name=choice.name)
        )
        self._engine_changed()

    def action_unload_adapter(self) -> None:
        choice = self._highlighted_adapter()
        engine = self.chat.engine
        if choice is None or engine is None or self._refuse_while_replying():
            return
        if not choice.loaded:
            self.notify(_("{name} is not loaded.", name=choice.name))
            return
        unload = getattr(engine, "unload_adapter", None)
        if unload is not None:
            unload(choice.name)
            said = _("unloaded")
        else:  # this engine keeps it in memory: it is only no longer used
            if engine.default_adapter == choice.name:
                engine.default_adapter = None
            if engine.active_adapter == choice.name:
                engine.set_adapter(None)
            said = _("no longer used (this engine frees adapters with the model)")
        self.notify(
            _("Adapter {name} {said}; the base model answers.", name=choice.name, said=said)
        )
        self._engine_changed()

    def action_persona_adapter(self) -> None:
        """Write the highlighted adapter into the session's persona card."""
        choice = self._highlighted_adapter()
        session = self.chat.session
        if choice is None:
            return
        if session is None or not session.persona:
            self.notify(_("This session has no persona; F3 starts a chat with one."))
            return
        personas = self.workspace.personas
        try:
            card = personas.get(session.persona).card
            extension = card.cosplay
            field = "adapter_gguf" if choice.kind == "gguf-lora" else "adapter"
            personas.save(card.with_cosplay(extension.model_copy(update={field: choice.path})))
        except CosplayError as exc:
            self.notify(str(exc), severity="error", timeout=10)
            return
        self.notify(
            _(
                "{persona} now uses the adapter {path} (from its next reply).",
                persona=session.persona,
                path=choice.path,
            )
        )

    def _highlighted_adapter(self) -> AdapterChoice | None:
        listing = self.query_one("#adapters", OptionList)
        if listing.highlighted is None or not self.adapters:
            self.notify(_("Highlight an adapter in the adapters list first."))
            return None
        return self.adapters[listing.highlighted]

    def _refuse_while_replying(self) -> bool:
        if self.chat.generating:
            self.notify(_("Still replying: Esc here, then Esc in the chat stops it first."))
            return True
        return False

    def _engine_changed(self) -> None:
        highlighted = self.query_one("#adapters", OptionList).highlighted
        self.refresh_engine()
        self.query_one("#adapters", OptionList).highlighted = highlighted
        self.chat.update_status()


def model_choices(entries) -> list[ModelChoice]:
    """The models here (a damaged one listed with its reason), then the recommended downloads."""
    from engines.catalog import source_label
    from engines.recommended import recommended
    from tui.cli_models import human_size

    choices: list[ModelChoice] = []
    names: set[str] = set()
    for entry in entries:
        if entry.kind not in ("gguf", "hf"):
            continue
        names.add(entry.path.name)
        facts = [
            source_label(entry.source),
            human_size(entry.size),
            entry.quantization or entry.kind,
        ]
        name = entry.path.name if entry.source == "built in" else _short(entry.name)
        label = f"{name} · {' · '.join(f for f in facts if f)}"
        if entry.problem:
            label += _(" · cannot load: {problem}", problem=entry.problem)
        choices.append(ModelChoice(label, str(entry.path), problem=entry.problem))
    for model in recommended()[1]:
        if model.builtin or model.source.partition(":")[2] in names:
            continue
        choices.append(
            ModelChoice(
                _(
                    "Download: {name} · {size} GB, RAM {ram} GB",
                    name=model.name,
                    size=f"{model.download_gb:g}",
                    ram=f"{model.ram_gb:g}",
                ),
                source=model.source,
                flags=model.flags,
            )
        )
    return choices


def adapter_choices(engine, entries) -> list[AdapterChoice]:
    """The engine's loaded adapters, then the ones here in a form it takes."""
    if engine is None:
        return []
    loaded = engine.adapter_sources
    choices = [
        AdapterChoice(
            ("● " if name == engine.active_adapter else "  ")
            + _("{name} · loaded · {path}", name=name, path=_short(path)),
            name,
            path,
            "gguf-lora" if path.lower().endswith(".gguf") else "peft",
            True,
        )
        for name, path in loaded.items()
    ]
    form = engine.adapter_format
    kinds = {"gguf": ("gguf-lora", "peft"), "peft": ("peft",), None: ("gguf-lora", "peft")}
    known = {str(Path(p)) for p in loaded.values()}
    for entry in entries:
        if entry.kind not in kinds.get(form, ()) or str(entry.path) in known or entry.problem:
            continue
        base = _(" · for {base}", base=entry.base) if entry.base else ""
        name = entry.path.stem if entry.kind == "gguf-lora" else entry.path.name
        choices.append(
            AdapterChoice(
                f"  {name} · {entry.kind}{base}", name, str(entry.path), entry.kind, False
            )
        )
    return choices


def _short(text: str, width: int = 60) -> str:
    """A long path's end, which names it."""
    return text if len(text) <= width else "…" + text[-(width - 1) :]
