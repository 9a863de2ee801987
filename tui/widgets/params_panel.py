"""Generation parameters for the current session, edited in place and validated as you type."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from textual.containers import VerticalScroll
from textual.message import Message
from textual.widgets import Input, Label, Switch

from engines.base import GenerationParams

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
    """

    @dataclass
    class Changed(Message):
        params: GenerationParams
        max_history_rounds: int | None

    def __init__(self, params: GenerationParams, max_history_rounds: int | None, **kwargs):
        super().__init__(**kwargs)
        self._params = params
        self._rounds = max_history_rounds

    def compose(self):
        yield Label("[b]Generation[/b]  (Ctrl+T hides)")
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
        self.post_message(self.Changed(params, rounds))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self._changed(event.input.id)

    def on_input_blurred(self, event: Input.Blurred) -> None:
        self._changed(event.input.id)

    def on_switch_changed(self, event: Switch.Changed) -> None:
        event.stop()
        self._changed(None)
