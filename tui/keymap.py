"""The user's key rebindings, by action id: `<data dir>/keys.toml` or the config's ui.keys,
checked against the action table (tui/actions.py) so a typo is one sentence, not a silent
no-op:

    regenerate = "f12"
    stop = "escape,f11"
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from engines.base import CosplayError
from engines.i18n import _
from tui.actions import ALL


def read_keymap(path: Path) -> dict[str, str]:
    """The user's rebindings from keys.toml ({} when there is none): action id → keys."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        raise CosplayError(
            _(
                "The key file {path} cannot be read ({problem}); fix or delete it.",
                path=path,
                problem=exc,
            )
        ) from exc
    try:
        table = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise CosplayError(
            _(
                "The key file {path} is not valid TOML ({problem}); fix or delete it.",
                path=path,
                problem=exc,
            )
        ) from exc
    return checked_keymap(table, _("The key file {path}", path=path))


def config_keymap(config) -> dict[str, str]:
    """The config's ui.keys (sessions/config.py), checked as keys.toml is ({}: none)."""
    table = config.get("ui.keys") or {}
    return checked_keymap(table, _("In {path}, ui.keys", path=config.path)) if table else {}


def checked_keymap(table: dict, where: str) -> dict[str, str]:
    """Rebindings (action id → keys), each id a bound action's; `where` names the source."""
    known = {a.id for a in ALL if a.keys}  # palette-only actions have no binding
    keymap = {}
    for name, keys in table.items():
        if name not in known:
            raise CosplayError(
                _(
                    "{where} names an unknown action {name!r}; use one of {known}.",
                    where=where,
                    name=name,
                    known=", ".join(sorted(known)),
                )
            )
        if not isinstance(keys, str) or not keys.strip():
            raise CosplayError(
                _(
                    '{where} gives {name!r} no keys; write them like "ctrl+g".',
                    where=where,
                    name=name,
                )
            )
        keymap[name] = keys
    return keymap
