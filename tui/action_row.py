"""One row of the action table (tui/actions.py, tui/dialog_actions.py): what an action is, its
binding, and how its keys are written for people (`ctrl+r,f5` → `Ctrl+R / F5`)."""

from __future__ import annotations

from dataclasses import dataclass

from textual.binding import Binding


@dataclass(frozen=True)
class Action:
    id: str  # the binding id, the name to rebind it with in keys.toml
    action: str  # the Textual action: a method `action_<name>` of the screen or the app
    keys: str  # the default keys, comma separated ("" for palette-only actions)
    title: str  # the footer label and the palette entry (English, the message id: N_())
    help: str  # what it does, for the palette and the README (English; _(help) where shown)
    footer: bool = True  # shown in the footer
    priority: bool = False  # wins over the focused widget's own binding (the input box's)
    palette: bool = True  # listed in the command palette

    def binding(self, namespace: str = "") -> Binding:
        """The key binding; `namespace` ("screen.") when a widget binds a screen's action."""
        return Binding(
            self.keys,
            namespace + self.action,
            self.title,
            show=self.footer,
            priority=self.priority,
            id=self.id,
        )


KEY_NAMES = {
    "escape": "Esc",
    "left": "←",
    "right": "→",
    "up": "↑",
    "down": "↓",
    "ctrl": "Ctrl",
    "alt": "Alt",
    "shift": "Shift",
}


def key_label(keys: str) -> str:
    """`ctrl+r,f5` → `Ctrl+R / F5`, as people write keys."""

    def one(key: str) -> str:
        if len(key.strip()) == 1:  # a letter: as typed; a capital one needs Shift
            return f"Shift+{key.strip()}" if key.strip().isupper() else key.strip()
        parts = key.strip().split("+")
        return "+".join(
            KEY_NAMES.get(p, p.upper() if len(p) <= 3 else p.capitalize()) for p in parts
        )

    return " / ".join(one(key) for key in keys.split(",") if key.strip())
