"""The dialogs' keys: the scene dialog (tui/group_screen.py) and the lorebook dialog
(tui/lorebook_screen.py). Rows of the one action table: the README's key table, keys.toml's ids
and the bindings come from them as from tui/actions.py's."""

from __future__ import annotations

from engines.i18n import N_
from tui.action_row import Action

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
