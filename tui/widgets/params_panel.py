"""Generation parameters for the current session, edited in place and validated as you type.

At the top, the sampling preset (sessions/presets.py): choosing one posts `PresetChosen`, "Save
as preset" posts `SaveAsPreset`; the screen stores them and hands the presets back down with
`show_presets` (the panel asks for them with `Loaded` each time it loads a session's values).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from rich.text import Text
from textual.containers import VerticalScroll
from textual.message import Message
from textual.widgets import Button, Input, Label, Select, Switch

from engines.base import GenerationParams
from sessions.presets import Preset

# (field, label, help) in display order; "max_history_rounds" is a session setting, not a sampling one.
FIELDS = [
    ("temperature", "Temperature", "0 = greedy"),
    ("top_p", "Top-p", "nucleus sampling"),
    ("top_k", "Top-k", "0 = off"),
    ("min_p", "Min-p", ""),
    ("repetition_penalty", "Repetition penalty", "1 = off"),
    ("max_new_tokens", "Max new tokens", ""),
    ("seed", "Seed", "empty = random"),
    ("num_beams", "Beams", "GPU engine only"),
    ("stop", "Stop strings", 'JSON list, e.g. ["\\n\\n"]'),
    ("max_history_rounds", "Max history rounds", "empty = as many as fit"),
]


def _shown(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


class ParamsPanel(VerticalScroll):
    DEFAULT_CSS = """
    ParamsPanel { width: 34; padding: 0 1; border-left: solid $primary; }
    ParamsPanel Label { margin-top: 1; }
    ParamsPanel Input { height: 3; }
    ParamsPanel Input.-invalid { border: tall $error; }
    ParamsPanel #save_preset { width: 100%; min-width: 0; }
    """

    @dataclass
    class Changed(Message):
        params: GenerationParams
        max_history_rounds: int | None

    @dataclass
    class PresetChosen(Message):
        name: str

    @dataclass
    class SaveAsPreset(Message):
        params: GenerationParams

    class Loaded(Message):
        """A session's values were loaded: the screen answers with `show_presets`."""

    def __init__(self, params: GenerationParams, max_history_rounds: int | None, **kwargs):
        super().__init__(**kwargs)
        self._params = params
        self._rounds = max_history_rounds
        self._presets: list[Preset] = []

    def compose(self):
        yield Label("[b]Generation[/b]  (Ctrl+T hides)")
        yield Label("Preset", id="preset_state", markup=False)
        yield Select[str]([], prompt="(none)", id="preset")
        yield Button("Save as preset…", id="save_preset", compact=True)
        yield Label("Sample (off = greedy)")
        yield Switch(self._params.do_sample, id="do_sample")
        for name, label, hint in FIELDS:
            yield Label(f"{label} [dim]{hint}[/dim]" if hint else label)
            value = self._rounds if name == "max_history_rounds" else getattr(self._params, name)
            yield Input(_shown(value), id=name)

    def load(self, params: GenerationParams, max_history_rounds: int | None) -> None:
        self._params, self._rounds = params, max_history_rounds
        self.query_one("#do_sample", Switch).value = params.do_sample
        for name, _, _ in FIELDS:
            value = max_history_rounds if name == "max_history_rounds" else getattr(params, name)
            field = self.query_one(f"#{name}", Input)
            with field.prevent(Input.Changed):
                field.value = _shown(value)
            field.remove_class("-invalid")
        self.post_message(self.Loaded())

    # --- presets ----------------------------------------------------------------------------

    def show_presets(self, presets: list[Preset], chosen: str | None) -> None:
        """List `presets` and select `chosen` (none chosen: one the values equal, if any)."""
        self._presets = list(presets)
        names = [preset.name for preset in self._presets]
        if chosen not in names:
            chosen = next((p.name for p in self._presets if p.matches(self._params)), None)
        select = self.query_one("#preset", Select)
        with select.prevent(Select.Changed):
            select.set_options((Text(name), name) for name in names)  # names are text
            select.value = chosen if chosen is not None else Select.NULL
        self._show_preset_state()

    def _show_preset_state(self) -> None:
        """ "Preset" while the values equal the selected one, "Preset · changed" after an edit."""
        value = self.query_one("#preset", Select).value
        preset = next((p for p in self._presets if p.name == value), None)
        changed = preset is not None and not preset.matches(self._params)
        self.query_one("#preset_state", Label).update("Preset · changed" if changed else "Preset")

    def on_select_changed(self, event: Select.Changed) -> None:
        event.stop()
        if isinstance(event.value, str):
            self.post_message(self.PresetChosen(event.value))

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "save_preset":
            event.stop()
            self.post_message(self.SaveAsPreset(self._params))

    def _read(self) -> tuple[GenerationParams, int | None]:
        values: dict[str, Any] = {"do_sample": self.query_one("#do_sample", Switch).value}
        rounds = None
        for name, _, _ in FIELDS:
            raw = self.query_one(f"#{name}", Input).value.strip()
            if name == "max_history_rounds":
                rounds = int(raw) if raw else None
                if rounds is not None and rounds < 0:
                    raise ValueError("max history rounds must be 0 or more")
            elif name == "stop":
                values["stop"] = json.loads(raw) if raw else []
            elif raw or name == "seed":
                values[name] = raw or None
        return GenerationParams(**values), rounds

    def _changed(self, field_id: str | None) -> None:
        try:
            params, rounds = self._read()
        except (ValidationError, ValueError) as exc:
            if field_id:
                self.query_one(f"#{field_id}").add_class("-invalid")
            reason = exc.errors()[0]["msg"] if isinstance(exc, ValidationError) else str(exc)
            self.notify(f"Not saved: {reason}", severity="warning", timeout=3)
            return
        for field in self.query(Input):
            field.remove_class("-invalid")
        self._params, self._rounds = params, rounds
        self._show_preset_state()
        self.post_message(self.Changed(params, rounds))

    # --- edits ------------------------------------------------------------------------------

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self._changed(event.input.id)

    def on_input_blurred(self, event: Input.Blurred) -> None:
        self._changed(event.input.id)

    def on_switch_changed(self, event: Switch.Changed) -> None:
        event.stop()
        self._changed(None)
