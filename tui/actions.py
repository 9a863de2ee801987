"""Every action of the app in one table: the key bindings, the command palette and the
README's key table are all made from it (tests/test_actions.py compares the README).

Adding an action is one row here (a dialog's: in tui/dialog_actions.py) plus its `action_…`
method on the screen (or the app). A row is a tui.action_row.Action; each binding has an id,
so a user can rebind it in `<data dir>/keys.toml` (read by tui/keymap.py):

    regenerate = "f12"
    stop = "escape,f11"
"""

from __future__ import annotations

from engines.i18n import N_
from tui.action_row import Action, key_label
from tui.dialog_actions import LOREBOOK, SCENE

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

# Every action, in the README's order: the chat screen's, one message's, the dialogs', the app's.
ALL = CHAT + MESSAGE + SCENE + LOREBOOK + APP

# Keys that Textual or the input box own, listed in the README with the table's.
BUILT_IN_KEYS = (
    ("Enter", "send the message"),
    ("Ctrl+J (Shift+Enter / Alt+Enter where the terminal reports them)", "new line in the message"),
    ("Ctrl+P", "command palette: every action here, including those with no key"),
    ("Ctrl+Q", "quit (a reply being written stops and is kept, marked stopped)"),
)


def markdown_table() -> str:
    """The README's key table."""
    rows = ["| key | action |", "|---|---|"]
    rows += [f"| {key} | {text} |" for key, text in BUILT_IN_KEYS[:2]]
    rows += [f"| {key_label(a.keys)} | {a.help} |" for a in ALL if a.keys]
    rows += [f"| {key} | {text} |" for key, text in BUILT_IN_KEYS[2:]]
    return "\n".join(rows)
