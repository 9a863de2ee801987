"""Where an import keeps what the original file said (message meta / session settings keys),
read back for an export to write it as it was."""

from __future__ import annotations

import hashlib

from sessions.models import Message, Session

ST_KEY = "sillytavern"  # meta: {"line": {...}, "swipe": i, "swipes": n}; settings: {"header"}
TGW_KEY = "text-generation-webui"  # meta: {"entry", "version", "visible", "greeting"}; settings
TGW_GREETING = "<|BEGIN-VISIBLE-CHAT|>"  # the user side of text-generation-webui's greeting row


def kept_meta(message: Message, key: str) -> dict:
    value = message.meta.get(key)
    return value if isinstance(value, dict) else {}


def st_header(session: Session) -> dict | None:
    """The header line of the SillyTavern file the session was imported from, if any."""
    kept = session.settings.get(ST_KEY)
    header = kept.get("header") if isinstance(kept, dict) else None
    return header if isinstance(header, dict) else None


def fingerprint(text: str) -> str:
    """A short hash of a message's text: a kept visible text is used only while it matches."""
    return hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]
