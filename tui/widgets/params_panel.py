"""Generation parameters for the current session, edited in place and validated as you type.

At the top, the sampling preset (sessions/presets.py): choosing one posts `PresetChosen`, "Save
as preset" posts `SaveAsPreset`; the screen stores them and hands the presets back down with
`show_presets` (the panel asks for them with `Loaded` each time it loads a session's values).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from rich.text import Text
from textual.containers import VerticalScroll
from textual.message import Message
from textual.widgets import Button, Collapsible, Input, Label, Select, Switch

from engines.base import GenerationParams
from engines.i18n import N_, _
from sessions.presets import Preset

# (field, label, help) in display order; "max_history_rounds" is a session setting, not a sampling one.
FIELDS = [
    ("temperature", N_("Temperature"), N_("0 = greedy")),
    ("top_p", N_("Top-p"), N_("nucleus sampling")),
    ("top_k", N_("Top-k"), N_("0 = off")),
    ("min_p", N_("Min-p"), ""),
    ("repetition_penalty", N_("Repetition penalty"), N_("1 = off")),
    ("max_new_tokens", N_("Max new tokens"), ""),
    ("seed", N_("Seed"), N_("empty = random")),
    ("num_beams", N_("Beams"), N_("GPU engine only")),
    ("stop", N_("Stop strings"), N_('JSON list, e.g. ["\\n\\n"]')),
    ("max_history_rounds", N_("Max history rounds"), N_("empty = as many as fit")),
]
# The other samplers, each group folded under its name (the title says when it is on), so the
# panel stays short at 80×24: (title, the field that switches it on, its fields).
GROUPS = [
    (N_("DRY: no repeats"), "dry_multiplier", [
        ("dry_multiplier", N_("Multiplier"), N_("0 = off, 0.8 usual")),
        ("dry_base", N_("Base"), N_("growth per token")),
        ("dry_allowed_length", N_("Allowed length"), N_("repeats up to this")),
        ("dry_penalty_last_n", N_("Range"), N_("tokens; -1 = all, 0 = off")),
        ("dry_sequence_breakers", N_("Sequence breakers"), N_("JSON list")),
    ]),
    (N_("XTC: no top choices"), "xtc_probability", [
        ("xtc_probability", N_("Probability"), N_("0 = off")),
        ("xtc_threshold", N_("Threshold"), N_("above 0.5 = off")),
    ]),
    (N_("Dynamic temperature"), "dynatemp_range", [
        ("dynatemp_range", N_("Range"), N_("± temperature, 0 = off")),
        ("dynatemp_exponent", N_("Exponent"), ""),
    ]),
    (N_("Top-nσ"), "top_n_sigma", [("top_n_sigma", "n", N_("0 or -1 = off"))]),
    (N_("Mirostat (CPU, server)"), "mirostat_mode", [
        ("mirostat_mode", N_("Mode"), N_("0 = off, 1 or 2")),
        ("mirostat_tau", N_("Tau"), N_("target surprise")),
        ("mirostat_eta", N_("Eta"), N_("learning rate")),
    ]),
]  # fmt: skip
LIST_FIELDS = ("stop", "dry_sequence_breakers")  # typed as JSON lists
ALL_FIELDS = FIELDS + [field for _title, _switch, fields in GROUPS for field in fields]


def _group_on(switch: str, params: GenerationParams) -> bool:
    return params.dry_enabled if switch == "dry_multiplier" else getattr(params, switch) > 0


def _shown(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def _json_list(raw: str, name: str) -> Any:
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        label = next(_(label) for field, label, _hint in ALL_FIELDS if field == name).lower()
        raise ValueError(
            _('{label} must be a JSON list of strings, e.g. ["\\n", ":"]', label=label)
        ) from None


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
        yield Label(_("[b]Generation[/b]  (Ctrl+T hides)"))
        yield Label(_("Preset"), id="preset_state", markup=False)
        yield Select[str]([], prompt=_("(none)"), id="preset")
        yield Button(_("Save as preset…"), id="save_preset", compact=True)
        yield Label(_("Sample (off = greedy)"))
        yield Switch(self._params.do_sample, id="do_sample")
        for name, label, hint in FIELDS:
            yield from self._field(name, label, hint)
        for index, (title, switch, fields) in enumerate(GROUPS):
            with Collapsible(title=self._group_title(title, switch), id=f"group_{index}"):
                for name, label, hint in fields:
                    yield from self._field(name, label, hint)

    def _field(self, name: str, label: str, hint: str):
        yield Label(f"{_(label)} [dim]{_(hint)}[/dim]" if hint else _(label))
        value = self._rounds if name == "max_history_rounds" else getattr(self._params, name)
        yield Input(_shown(value), id=name)

    def _group_title(self, title: str, switch: str) -> str:
        return _("{title} · on", title=_(title)) if _group_on(switch, self._params) else _(title)

    def _show_group_states(self) -> None:
        for index, (title, switch, _fields) in enumerate(GROUPS):
            self.query_one(f"#group_{index}", Collapsible).title = self._group_title(title, switch)

    def load(self, params: GenerationParams, max_history_rounds: int | None) -> None:
        self._params, self._rounds = params, max_history_rounds
        self.query_one("#do_sample", Switch).value = params.do_sample
        self._show_group_states()
        for name, _label, _hint in ALL_FIELDS:
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
        self.query_one("#preset_state", Label).update(
            _("Preset · changed") if changed else _("Preset")
        )

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
        for name, _label, _hint in ALL_FIELDS:
            raw = self.query_one(f"#{name}", Input).value.strip()
            if name == "max_history_rounds":
                rounds = int(raw) if raw else None
                if rounds is not None and rounds < 0:
                    raise ValueError(_("max history rounds must be 0 or more"))
            elif name in LIST_FIELDS:
                if raw:
                    values[name] = _json_list(raw, name)
                elif name == "stop":
                    values[name] = []
            elif raw or name == "seed":
                values[name] = raw or None
        return GenerationParams(**values), rounds

    def _changed(self, field_id: str | None) -> None:
        try:
            params, rounds = self._read()
        except ValueError as exc:
            if field_id:
                self.query_one(f"#{field_id}").add_class("-invalid")
            self.notify(_("Not saved: {reason}", reason=str(exc)), severity="warning", timeout=3)
            return
        for field in self.query(Input):
            field.remove_class("-invalid")
        self._params, self._rounds = params, rounds
        self._show_preset_state()
        self._show_group_states()
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
