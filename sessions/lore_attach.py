"""Attaching a standalone lorebook (by name, from the data directory's `lorebooks/`) to a
session (`settings["lorebooks"]`) or to a persona (`data.extensions.cosplay.lorebooks` of its
card): the one way `cosplay lore attach|detach` and the TUI's lorebook screen do it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from engines.errors import CosplayError
from engines.i18n import _

if TYPE_CHECKING:
    from sessions.personas import PersonaStore
    from sessions.store import Store


def attached_names(value: Any) -> list[str]:
    """The book names in a `lorebooks` setting (anything else in it is ignored)."""
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def changed(names: list[str], name: str, attach: bool, where: str) -> list[str]:
    """`names` with `name` added (attach) or taken out (detach: it must be there)."""
    if attach:
        return names if name in names else [*names, name]
    if name not in names:
        raise CosplayError(
            _("The lorebook {name} is not attached to {where}.", name=repr(name), where=where)
        )
    return [n for n in names if n != name]


def attach_to_session(store: Store, session_id: int, name: str, attach: bool) -> list[str]:
    """Attach (or detach) the book `name` to the session; the session's books now."""
    session = store.get_session(session_id)
    settings = dict(session.settings)
    names = changed(
        attached_names(settings.get("lorebooks")),
        name,
        attach,
        _("session {session_id}", session_id=session_id),
    )
    settings["lorebooks"] = names
    store.update_session(session_id, settings=settings)
    return names


def attach_to_persona(personas: PersonaStore, persona: str, name: str, attach: bool) -> list[str]:
    """Attach (or detach) the book `name` to the persona's card, saved in the persona store;
    the persona's books now."""
    card = personas.get(persona).card.model_copy(deep=True)
    extensions = dict(card.data.extensions)
    found = extensions.get("cosplay")
    cosplay = dict(found) if isinstance(found, dict) else {}
    names = changed(attached_names(cosplay.get("lorebooks")), name, attach, persona)
    if names:
        cosplay["lorebooks"] = names
    else:
        cosplay.pop("lorebooks", None)
    extensions["cosplay"] = cosplay
    card.data.extensions = extensions
    personas.save(card)
    return names
