"""The persona editor: every card field, multi-line ones in text areas. Ctrl+S saves."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, TextArea

from engines import registry
from engines.i18n import N_, _
from sessions.cards import CharacterCard, CosplayExtension

GREETING_SEPARATOR = "\n---\n"  # between alternate greetings in their text area

# (field, label) of the multi-line card fields, in the order they are shown.
TEXT_FIELDS = [
    ("description", N_("Description")),
    ("personality", N_("Personality")),
    ("scenario", N_("Scenario")),
    ("first_mes", N_("First message (greeting)")),
    ("alternate_greetings", N_("Alternate greetings (separate them with a line of ---)")),
    ("mes_example", N_("Example dialogues (<START> blocks of {{user}}: / {{char}}: lines)")),
    ("system_prompt", N_("System prompt ({{original}} = the default)")),
    ("post_history_instructions", N_("Post-history instructions")),
    ("creator_notes", N_("Creator notes (never sent to the model)")),
]

# What runs the persona (`extensions.cosplay`): field -> label.
RUNTIME_FIELDS = {
    "adapter": N_("LoRA adapter (PEFT directory or repo id; empty = base model)"),
    "adapter_gguf": N_("GGUF LoRA for the CPU engine (empty = exported from the adapter)"),
    "template": N_("Chat template (empty = the adapter's or the model's; cosplay = 某某曰：)"),
    "speaker": N_("Speaker name the template writes before replies (empty = the persona's name)"),
    "engine": N_("Engine to load when no --model is given (cpu, gpu or empty)"),
}


class PersonaEditor(ModalScreen[CharacterCard | None]):
    """Edit a copy of `card`; dismisses with the edited card, or None when cancelled."""

    DEFAULT_CSS = """
    PersonaEditor { align: center middle; }
    PersonaEditor > VerticalScroll {
        width: 90%; height: 90%; border: thick $primary; background: $surface; padding: 0 1;
    }
    PersonaEditor Label { margin-top: 1; color: $text-muted; }
    PersonaEditor TextArea { height: 6; }
    PersonaEditor #editor-buttons { height: auto; margin-top: 1; }
    """
    BINDINGS = [
        Binding("ctrl+s", "save", N_("Save"), id="persona_editor.save"),
        Binding("escape", "cancel", N_("Cancel"), id="persona_editor.cancel"),
    ]

    def __init__(self, card: CharacterCard, *, title: str = ""):
        super().__init__()
        self.card = card.model_copy(deep=True)
        self.title_text = title or _("Edit persona")

    def compose(self) -> ComposeResult:
        data, extension = self.card.data, self.card.cosplay
        with VerticalScroll():
            yield Label(self.title_text, markup=False)
            yield Label(_("Name"))
            yield Input(data.name, id="field-name")
            yield Label(_("Tags (comma separated)"))
            yield Input(", ".join(data.tags), id="field-tags")
            for field, label in TEXT_FIELDS:
                value = getattr(data, field)
                if field == "alternate_greetings":
                    value = GREETING_SEPARATOR.join(value)
                yield Label(_(label), markup=False)
                yield TextArea(value, id=f"field-{field}", soft_wrap=True)
            for field, label in RUNTIME_FIELDS.items():
                yield Label(_(label), markup=False)
                yield Input(getattr(extension, field), id=f"field-{field}")
            with Horizontal(id="editor-buttons"):
                yield Button(_("Save (Ctrl+S)"), variant="primary", id="editor-save")
                yield Button(_("Cancel (Esc)"), id="editor-cancel")

    def on_mount(self) -> None:
        self.query_one("#field-name", Input).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "editor-save":
            self.action_save()
        elif event.button.id == "editor-cancel":
            self.action_cancel()

    def action_cancel(self) -> None:
        self.dismiss(None)

    def edited_card(self) -> CharacterCard:
        card = self.card.model_copy(deep=True)
        data = card.data
        data.name = self.query_one("#field-name", Input).value.strip()
        tags = self.query_one("#field-tags", Input).value.replace("，", ",").split(",")
        data.tags = [tag.strip() for tag in tags if tag.strip()]
        for field, _label in TEXT_FIELDS:
            text = self.query_one(f"#field-{field}", TextArea).text
            if field == "alternate_greetings":
                parts = text.replace("\r\n", "\n").split(GREETING_SEPARATOR.strip("\n"))
                setattr(data, field, [part.strip() for part in parts if part.strip()])
            else:
                setattr(data, field, text)
        extension = card.cosplay.model_copy(
            update={
                field: self.query_one(f"#field-{field}", Input).value.strip()
                for field in RUNTIME_FIELDS
            }
        )
        return card.with_cosplay(CosplayExtension.model_validate(extension.model_dump()))

    def action_save(self) -> None:
        if not self.query_one("#field-name", Input).value.strip():
            self.notify(_("A persona needs a name."), severity="error")
            self.query_one("#field-name", Input).focus()
            return
        engine = self.query_one("#field-engine", Input)
        if engine.value.strip().lower() not in ("", *registry.local_names()):
            choices = ", ".join(registry.local_names())
            self.notify(_("Engine must be {choices} or empty.", choices=choices), severity="error")
            engine.focus()
            return
        self.dismiss(self.edited_card())
