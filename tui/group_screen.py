"""The scene dialog (F10): a group scene's reply order, and for each character: muted, replies
only when mentioned, speak now.

Every change is saved to the session at once (sessions.group.set_scene_rules); the dialog
returns the character to speak now, or None. Its keys are the SCENE rows of tui/dialog_actions.py.
"""

from __future__ import annotations

from rich.text import Text
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Footer, Label, OptionList, Static
from textual.widgets.option_list import Option

from engines.base import CosplayError
from engines.i18n import N_, _
from sessions.group import (
    ReplyOrder,
    scene_members,
    scene_rules,
    session_cast,
    set_scene_rules,
)
from sessions.personas import PersonaStore
from sessions.store import Store
from tui.dialog_actions import SCENE
from tui.translated import TranslatedBindings

ORDERS = list(dict.fromkeys(ReplyOrder))  # natural, list, manual, pooled (no alias)


class SceneScreen(TranslatedBindings, ModalScreen[str | None]):
    BINDINGS = [Binding("escape", "dismiss(None)", N_("Close")), *(a.binding() for a in SCENE)]

    def __init__(self, store: Store, session_id: int, personas: PersonaStore):
        super().__init__()
        self.store = store
        self.session_id = session_id
        self.members = scene_members(session_cast(store.get_session(session_id)), personas)

    def compose(self):
        with Vertical(classes="dialog scene"):
            yield Label(_("Scene"), classes="title")
            yield Static(id="scene-order", markup=False)
            yield OptionList(id="scene-members")
            yield Static(id="scene-help", markup=False)
        yield Footer()

    def on_mount(self) -> None:
        labels = [f"{self.app.keys_of(action)} {_(action.title).lower()}" for action in SCENE]
        self.query_one("#scene-help", Static).update(" · ".join(labels) + _(" · Esc close"))
        self.refresh_members()
        self.query_one(OptionList).focus()

    @property
    def rules(self):
        return scene_rules(self.store.get_session(self.session_id))

    def refresh_members(self) -> None:
        rules = self.rules
        self.query_one("#scene-order", Static).update(
            _(
                "Reply order: {order} — {summary}. @名字 always picks who answers.",
                order=rules.order.value,
                summary=rules.order.summary,
            )
        )
        options = self.query_one(OptionList)
        highlighted = options.highlighted
        options.clear_options()
        for member in self.members:
            line = Text(member.name, style="bold")
            if member.aliases:
                line.append(f" ({'、'.join(member.aliases)})", style="dim")
            flags = []
            if member.name in rules.muted:
                flags.append(_("muted"))
            if member.name in rules.mention_only:
                flags.append(_("only when mentioned"))
            if rules.order == ReplyOrder.NATURAL:
                flags.append(_("talkativeness {value}", value=f"{member.talkativeness:g}"))
            if flags:
                line.append("  · " + " · ".join(flags))
            options.add_option(Option(line, id=member.name))
        if self.members:
            options.highlighted = min(highlighted or 0, len(self.members) - 1)

    def _highlighted(self) -> str | None:
        options = self.query_one(OptionList)
        if options.highlighted is None or not self.members:
            return None
        return self.members[options.highlighted].name

    def _save(self, **change) -> None:
        try:
            set_scene_rules(self.store, self.session_id, **change)
        except CosplayError as exc:
            self.notify(str(exc), severity="error")
        self.refresh_members()

    def action_next_order(self) -> None:
        order = self.rules.order
        self._save(order=ORDERS[(ORDERS.index(order) + 1) % len(ORDERS)])

    def action_toggle_mute(self) -> None:
        name = self._highlighted()
        if name is not None:
            self._save(muted=self.rules.muted ^ {name})

    def action_toggle_mention_only(self) -> None:
        name = self._highlighted()
        if name is not None:
            self._save(mention_only=self.rules.mention_only ^ {name})

    def action_speak_now(self) -> None:
        name = self._highlighted()
        if name is not None:
            self.dismiss(name)

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        self.action_speak_now()
