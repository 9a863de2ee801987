"""Every action of the app in one table: the key bindings, the command palette and the
README's key table are all made from it (tests/test_actions.py compares the README).

Adding an action is one row here plus its `action_…` method on the screen (or the app).
Each binding has an id, so a user can rebind it in `<data dir>/keys.toml`:

    regenerate = "f12"
    stop = "escape,f11"
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from textual.binding import Binding

from engines.base import CosplayError
from engines.i18n import N_


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


# The chat screen's actions (methods of tui.chat_screen.ChatScreen and its mixins).
CHAT = (
    Action(
        "stop",
        "stop",
        "escape",
        N_("Stop"),
        N_("stop generating (the partial reply is kept, marked stopped)"),
    ),
    Action(
        "regenerate",
        "regenerate",
        "ctrl+r",
        N_("Regenerate"),
        N_("write the last reply again (the old one is kept as another version)"),
        priority=True,
    ),
    Action(
        "edit_last",
        "edit_last",
        "ctrl+e",
        N_("Edit last"),
        N_(
            "edit your last message: Enter sends it as a new version (the old one and its replies are kept); the key again cancels"
        ),
        priority=True,
    ),
    Action(
        "continue",
        "continue_reply",
        "ctrl+o",
        N_("Continue"),
        N_(
            "write more of the last reply, into the same message (a reply cut at max new tokens says so in its header); Esc stops, keeping what was written"
        ),
        priority=True,
        footer=False,
    ),
    Action(
        "impersonate",
        "impersonate",
        "ctrl+g",
        N_("Draft my message"),
        N_(
            "the model drafts your next message, in your persona's name and style, into the input box (after what you typed); edit it, Enter sends; Esc stops"
        ),
        priority=True,
        footer=False,
    ),
    Action(
        "previous_version",
        "switch_version(-1)",
        "alt+left",
        N_("Previous version"),
        N_(
            "show the previous version of the last reply, or of your last message when the reply has one version"
        ),
        footer=False,
    ),
    Action(
        "next_version",
        "switch_version(1)",
        "alt+right",
        N_("Next version"),
        N_("show the next version of the last reply, or of your last message"),
        footer=False,
    ),
    Action(
        "focus_messages",
        "focus_messages",
        "alt+up",
        N_("Messages"),
        N_(
            "go to the messages (or click one): ↑/↓ move between them, the keys below act on the one focused, Esc goes back to typing"
        ),
        footer=False,
        priority=True,
    ),
    Action(
        "inspect_prompt",
        "inspect_prompt",
        "f4",
        N_("Prompt"),
        N_(
            "the prompt inspector: the exact text the engine gets for the next reply (your typed message included), tokens per part, where history was cut, the lore that fired"
        ),
        priority=True,
        footer=False,
    ),
    Action(
        "search",
        "search",
        "ctrl+f",
        N_("Search"),
        N_(
            "search every session (Chinese words of any length); Enter opens the chat at the message, on its branch"
        ),
        priority=True,
        footer=False,
    ),
    Action(
        "new_session",
        "new_session",
        "ctrl+n",
        N_("New chat"),
        N_("start a new session"),
        priority=True,
    ),
    Action(
        "export_session",
        "export_session",
        "ctrl+s",
        N_("Export chat"),
        N_(
            "save the chat to a file: Markdown, text, Cosplay JSON, SillyTavern or text-generation-webui"
        ),
        priority=True,
        footer=False,
    ),
    Action(
        "import_chat",
        "import_chat",
        "ctrl+l",
        N_("Import chat"),
        N_("open a SillyTavern, text-generation-webui or Cosplay chat file as a new session"),
        priority=True,
        footer=False,
    ),
    Action(
        "rename_session",
        "rename_session",
        "f2",
        N_("Rename"),
        N_("rename the session"),
        footer=False,
    ),
    Action(
        "delete_session",
        "delete_session",
        "f8",
        N_("Delete chat"),
        N_("delete the session (asks first)"),
        footer=False,
    ),
    Action(
        "personas",
        "personas",
        "f3",
        N_("Personas"),
        N_(
            "personas: browse, search, view, create, edit, duplicate, import, export, delete; Enter starts a chat; Space marks several for a group scene"
        ),
    ),
    Action(
        "toggle_params",
        "toggle_params",
        "ctrl+t",
        N_("Parameters"),
        N_(
            "generation parameters (temperature, top-p, top-k, min-p, repetition penalty, max new tokens, seed, sampling on/off, beams, stop strings, max history rounds; folded below: DRY, XTC, dynamic temperature, top-nσ, mirostat)"
        ),
        priority=True,
    ),
    Action(
        "toggle_sidebar",
        "toggle_sidebar",
        "ctrl+b",
        N_("Sessions"),
        N_("show / hide the session list (in the list: `n` new, `r` rename, Delete deletes)"),
        priority=True,
        footer=False,
    ),
    Action(
        "add_character",
        "add_character",
        "f5",
        N_("Add character to scene"),
        N_("add a persona to this session: a group scene"),
        priority=True,
        footer=False,
    ),
    Action(
        "remove_character",
        "remove_character",
        "f6",
        N_("Remove character from scene"),
        N_("take a persona out of this session"),
        priority=True,
        footer=False,
    ),
    Action(
        "scene",
        "scene",
        "f10",
        N_("Scene"),
        N_(
            "the group scene: its reply order (natural, list, manual, pooled) and, per character, mute, reply only when mentioned, speak now"
        ),
        priority=True,
        footer=False,
    ),
    Action(
        "toggle_memory",
        "toggle_memory",
        "alt+m",
        N_("Memory on/off"),
        N_(
            "memory of dropped turns on / off: what falls out of the context window is summarized by the model while it idles (never holding up a reply) and kept at the top of the prompt"
        ),
        priority=True,
        footer=False,
    ),
    Action(
        "edit_notes",
        "edit_notes",
        "alt+n",
        N_("Memory and note"),
        N_(
            "show and edit the memory (the summary of dropped turns) and the Author's Note (text, every N turns, depth, position, role)"
        ),
        priority=True,
        footer=False,
    ),
    Action(
        "lorebooks",
        "lorebooks",
        "alt+l",
        N_("Lorebooks"),
        N_(
            "lorebooks (World Info): the books kept and the card's own, which are attached to this chat and to the persona; attach / detach, import a file, read the entries, switch one on or off"
        ),
        priority=True,
        footer=False,
    ),
    Action(
        "user_persona",
        "user_persona",
        "f9",
        N_("Your persona"),
        N_(
            "who you are ({{user}}): your name and a description, in this chat and as the default for new chats"
        ),
        priority=True,
        footer=False,
    ),
)

# Actions on one message, bound on a focused message (tui.widgets.message_view.MessageView) and
# run by the chat screen (tui.message_actions.MessageActions); from the palette, or with no
# message focused, they act on the latest message they fit.
MESSAGE = (
    Action(
        "message_up",
        "message_step(-1)",
        "up,k",
        N_("Previous message"),
        N_("focus the message above"),
        footer=False,
    ),
    Action(
        "message_down",
        "message_step(1)",
        "down,j",
        N_("Next message"),
        N_("focus the message below"),
        footer=False,
    ),
    Action(
        "message_previous_version",
        "message_version(-1)",
        "left",
        N_("‹ Version"),
        N_("show the message's previous version (the conversation below it follows that version)"),
    ),
    Action(
        "message_next_version",
        "message_version(1)",
        "right",
        N_("Version ›"),
        N_("show the message's next version"),
    ),
    Action(
        "message_edit",
        "message_edit",
        "e,enter",
        N_("Edit"),
        N_(
            "edit the message in the input box: Enter saves it as a new version (a message of yours is then answered again); Ctrl+E cancels"
        ),
    ),
    Action(
        "message_regenerate",
        "message_regenerate",
        "r",
        N_("Regenerate it"),
        N_("write this reply again as a new version (on your message: a new reply to it)"),
    ),
    Action(
        "message_reroll_same_seed",
        "message_regenerate(True)",
        "R",
        N_("Same seed"),
        N_(
            "regenerate this reply with its own parameters and seed: the same text again on the same engine"
        ),
        footer=False,
    ),
    Action(
        "message_delete",
        "message_delete",
        "delete",
        N_("Delete"),
        N_("delete the message and everything below it (asks first)"),
    ),
    Action(
        "message_branch",
        "message_branch",
        "b",
        N_("Branch"),
        N_("start a new session from the conversation up to this message"),
    ),
    Action(
        "message_copy",
        "message_copy",
        "c",
        N_("Copy"),
        N_("copy the message's text to the clipboard"),
    ),
    Action(
        "message_info",
        "message_info",
        "i",
        N_("Info"),
        N_(
            "how the message was made: model, adapter, template, parameters, seed, token counts, timings"
        ),
    ),
)

# The scene dialog's keys (methods of tui.group_screen.SceneScreen), on its highlighted character.
SCENE = (
    Action(
        "scene_order",
        "next_order",
        "o",
        N_("Order"),
        N_("scene dialog: the next reply order (natural → list → manual → pooled)"),
    ),
    Action(
        "scene_mute",
        "toggle_mute",
        "m",
        N_("Mute"),
        N_("scene dialog: mute the character, or let them speak again"),
    ),
    Action(
        "scene_mention_only",
        "toggle_mention_only",
        "w",
        N_("When mentioned"),
        N_(
            "scene dialog: the character replies only when mentioned (again: whenever the order picks them)"
        ),
    ),
    Action(
        "scene_speak",
        "speak_now",
        "enter",
        N_("Speak now"),
        N_("scene dialog: the character replies now, after the last message, whatever the order"),
        priority=True,
    ),
)

# The lorebook dialog's keys (methods of tui.lorebook_screen.LorebookScreen): on its highlighted
# book, or entry.
LOREBOOK = (
    Action(
        "lore_chat",
        "toggle_chat",
        "a",
        N_("Chat"),
        N_("lorebook dialog: attach the highlighted book to this chat, or detach it"),
    ),
    Action(
        "lore_persona",
        "toggle_persona",
        "p",
        N_("Persona"),
        N_("lorebook dialog: attach the book to the persona (all its chats), or detach it"),
    ),
    Action(
        "lore_entry",
        "toggle_entry",
        "space",
        N_("Entry on/off"),
        N_(
            "lorebook dialog: switch the highlighted entry of a kept book on or off (saved in the book)"
        ),
    ),
    Action(
        "lore_import",
        "import_book",
        "i",
        N_("Import"),
        N_(
            "lorebook dialog: import a World Info JSON, a character_book JSON or a card (PNG or JSON) with a book, by its path"
        ),
    ),
)

# The app's own actions (methods of tui.app.CosplayApp).
APP = (
    Action(
        "models",
        "models",
        "alt+e",
        N_("Models"),
        N_(
            "models and adapters: switch model or engine without restarting (Enter loads; its settings are remembered), download a recommended one, load / unload a LoRA adapter, set this persona's adapter"
        ),
        priority=True,
        footer=False,
    ),
    Action(
        "training_monitor",
        "training_monitor",
        "f7",
        N_("Training monitor"),
        N_("watch a `cosplay train` run: its loss curve, live"),
        priority=True,
        footer=False,
    ),
)

# Keys that Textual or the input box own, listed in the README with the table's.
BUILT_IN_KEYS = (
    ("Enter", "send the message"),
    ("Ctrl+J (Shift+Enter / Alt+Enter where the terminal reports them)", "new line in the message"),
    ("Ctrl+P", "command palette: every action here, including those with no key"),
    ("Ctrl+Q", "quit (a reply being written stops and is kept, marked stopped)"),
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


def markdown_table() -> str:
    """The README's key table."""
    rows = ["| key | action |", "|---|---|"]
    rows += [f"| {key} | {text} |" for key, text in BUILT_IN_KEYS[:2]]
    rows += [
        f"| {key_label(a.keys)} | {a.help} |"
        for a in CHAT + MESSAGE + SCENE + LOREBOOK + APP
        if a.keys
    ]
    rows += [f"| {key} | {text} |" for key, text in BUILT_IN_KEYS[2:]]
    return "\n".join(rows)


def read_keymap(path: Path) -> dict[str, str]:
    """The user's rebindings from keys.toml ({} when there is none): action id → keys."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        raise CosplayError(
            f"The key file {path} cannot be read ({exc}); fix or delete it."
        ) from exc
    try:
        table = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise CosplayError(
            f"The key file {path} is not valid TOML ({exc}); fix or delete it."
        ) from exc
    return checked_keymap(table, f"The key file {path}")


def config_keymap(config) -> dict[str, str]:
    """The config's ui.keys (sessions/config.py), checked as keys.toml is ({}: none)."""
    table = config.get("ui.keys") or {}
    return checked_keymap(table, f"In {config.path}, ui.keys") if table else {}


def checked_keymap(table: dict, where: str) -> dict[str, str]:
    """Rebindings (action id → keys), each id a bound action's; `where` names the source."""
    # palette-only actions have no binding
    known = {a.id for a in CHAT + MESSAGE + SCENE + LOREBOOK + APP if a.keys}
    keymap = {}
    for name, keys in table.items():
        if name not in known:
            raise CosplayError(
                f"{where} names an unknown action {name!r}; use one of {', '.join(sorted(known))}."
            )
        if not isinstance(keys, str) or not keys.strip():
            raise CosplayError(f'{where} gives {name!r} no keys; write them like "ctrl+g".')
        keymap[name] = keys
    return keymap
