"""Who speaks in an exported chat: the user's and the character's names, a message's speaker."""

from __future__ import annotations

from sessions.chat_export.kept import st_header
from sessions.models import Message, Role, Session

USER_FALLBACK, CHAR_FALLBACK, NARRATOR = "You", "Assistant", "System"


def user_name(session: Session) -> str:
    header = st_header(session)
    if header and isinstance(header.get("user_name"), str) and header["user_name"]:
        return header["user_name"]
    user = session.settings.get("user")
    if isinstance(user, dict) and isinstance(user.get("name"), str) and user["name"].strip():
        return user["name"].strip()
    if isinstance(user, str) and user.strip():
        return user.strip()
    return USER_FALLBACK


def char_name(session: Session, branch: list[Message]) -> str:
    header = st_header(session)
    if header and isinstance(header.get("character_name"), str) and header["character_name"]:
        return header["character_name"]
    if session.persona:
        return session.persona
    for message in branch:
        if message.role == Role.ASSISTANT and message.name:
            return message.name
    return CHAR_FALLBACK


def speaker(message: Message, user: str, char: str) -> str:
    if message.name:
        return message.name
    return {Role.USER: user, Role.ASSISTANT: char}.get(message.role, NARRATOR)
