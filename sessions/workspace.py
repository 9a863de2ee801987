"""One data directory, opened: where Cosplay keeps its data, the session store, the personas
and the app-wide settings (the last model and session, the parameters new chats start with).

The directory is platformdirs' user data dir by default, `$COSPLAY_HOME` when set, `--home`
when given; every command and the TUI resolve it here, and only here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from engines.errors import CosplayError
from engines.i18n import _
from sessions.config import Config, config_path, load_config, write_value
from sessions.models import Session
from sessions.store import Store

if TYPE_CHECKING:  # imported where used: `cosplay sessions list` needs none of them (pydantic)
    from engines.base import GenerationParams
    from sessions.personas import PersonaStore
    from sessions.presets import Preset
    from sessions.prompt import UserPersona

# Settings keys (the store's settings table).
LAST_MODEL = "last_model"  # the model spec of the last model loaded
LAST_SESSION = "last_session"
DEFAULT_PARAMS = "default_params"  # the generation parameters new sessions start with
NEW_TITLE = "New chat"  # a session's title until its first message names it
CUSTOM_PRESETS = "presets"  # the user's own sampling presets: {name: {field: value}}
USER_PERSONA = "user_persona"  # who you are in new chats ({{user}}): {"name", "description"}


@dataclass(frozen=True)
class DataPaths:
    """A data dir and where it keeps the database, personas, adapters, models and config."""

    root: Path
    default_root: bool = False  # the platform's user data dir (the config is then elsewhere)

    @property
    def database(self) -> Path:
        return self.root / "cosplay.db"

    @property
    def personas(self) -> Path:
        return self.root / "personas"

    @property
    def adapters(self) -> Path:
        return self.root / "adapters"

    @property
    def models(self) -> Path:
        return self.root / "models"  # what `cosplay models pull` downloads

    @property
    def config(self) -> Path:
        return config_path(self.root, default_root=self.default_root)  # sessions/config.py

    @property
    def keymap(self) -> Path:
        return self.root / "keys.toml"  # the user's key rebindings (tui/actions.py)

    def ensure(self) -> DataPaths:
        self.root.mkdir(parents=True, exist_ok=True)
        self.personas.mkdir(exist_ok=True)
        return self


def data_paths(home: str | Path | None = None) -> DataPaths:
    """The explicit home, else $COSPLAY_HOME, else the platform's user data dir."""
    if home is None:
        home = os.environ.get("COSPLAY_HOME") or None  # set but empty: as if unset
    if home is None:
        from platformdirs import user_data_dir

        return DataPaths(Path(user_data_dir("cosplay", appauthor=False)), default_root=True)
    if not str(home).strip():
        raise CosplayError(_("The data directory is empty (--home or COSPLAY_HOME); give a path."))
    path = Path(home).expanduser()
    if path.exists() and not path.is_dir():
        raise CosplayError(
            _(
                "The data directory {path} is a file (--home or COSPLAY_HOME); give a directory.",
                path=path,
            )
        )
    return DataPaths(path)


class Workspace:
    """The store and the personas of one data directory, and its settings.

    `Workspace(home)` opens the directory (created if new); `Workspace.of(store)` wraps a
    store already open (tests), with the personas next to its database. Close it when done.
    """

    def __init__(self, home: str | Path | None = None, *, store: Store | None = None):
        self.paths = DataPaths(Path(store.path).parent) if store else data_paths(home).ensure()
        self.store = store if store is not None else Store(self.paths.database)

    @cached_property
    def personas(self) -> PersonaStore:
        from sessions.personas import PersonaStore

        return PersonaStore(self.paths.personas)

    @cached_property
    def config(self) -> Config:
        """The config file's values (sessions/config.py); read once, warnings in it."""
        return load_config(self.paths.config)

    @classmethod
    def of(cls, store: Store) -> Workspace:
        return cls(store=store)

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- settings ---------------------------------------------------------------------------

    def last_model(self) -> object:
        """The remembered model spec as saved (engines.loader.ModelSpec.from_setting reads it)."""
        return self.store.get_setting(LAST_MODEL)

    def remember_model(self, spec: dict) -> None:
        self.store.set_setting(LAST_MODEL, spec)

    def last_session(self) -> int | None:
        value = self.store.get_setting(LAST_SESSION)
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    def remember_session(self, session_id: int) -> None:
        self.store.set_setting(LAST_SESSION, session_id)

    def default_params(self) -> dict:
        value = self.store.get_setting(DEFAULT_PARAMS, {})
        return value if isinstance(value, dict) else {}

    def set_default_params(self, values: dict) -> None:
        self.store.set_setting(DEFAULT_PARAMS, values)

    # --- sessions ---------------------------------------------------------------------------

    def new_session(
        self,
        personas: str | list[str] | None = None,
        *,
        user: UserPersona | None = None,
        reuse_empty: bool = False,
    ) -> Session:
        """A new session with the default parameters and your default persona (`user`, when
        given, instead); with personas it opens with their greetings (several: a group scene)
        and a persona's preset. `reuse_empty`: a plain chat takes over an empty "New chat"
        instead of piling up another (the TUI's Ctrl+N; not `cosplay ask --new`, where two
        processes could take the same one)."""
        from sessions.group import start_session

        settings: dict = self._with_default_preset({"params": self.default_params()})
        user = user or self.default_user_persona()
        if user is not None:  # copied: the chat keeps who you were when it began
            settings["user"] = user.to_value()
        if personas:
            names = [personas] if isinstance(personas, str) else personas
            cards = [self.personas.get(name).card for name in names]
            if len(cards) == 1:  # a scene's speakers keep the session's parameters
                settings = self._with_card_preset(settings, cards[0])
            return start_session(self.store, cards, settings=settings, user=user)
        if reuse_empty:
            empty = self.empty_session()
            if empty is not None:
                return self.store.update_session(empty.id, settings=settings)
        return self.store.create_session(NEW_TITLE, settings=settings)

    def empty_session(self) -> Session | None:
        """The most recent plain "New chat" with no messages, if there is one."""
        for session in self.store.list_sessions():
            if (
                session.title == NEW_TITLE
                and not session.persona
                and session.leaf_id is None
                and not session.settings.get("cast")
            ):
                return session
        return None

    # --- sampling presets (sessions/presets.py) -------------------------------------------

    def presets(self) -> list[Preset]:
        """The built-in presets, then yours (a damaged saved one is left out)."""
        from sessions.presets import BUILT_IN, custom_preset

        saved = self.store.get_setting(CUSTOM_PRESETS, {})
        saved = saved if isinstance(saved, dict) else {}
        custom = [custom_preset(name, values) for name, values in saved.items()]
        return [*BUILT_IN, *(preset for preset in custom if preset is not None)]

    def preset(self, name: str) -> Preset:
        """The preset called `name` (CosplayError naming the known ones if none is)."""
        from sessions.presets import find_preset

        return find_preset(self.presets(), name)

    def save_preset(self, name: str, params: GenerationParams) -> Preset:
        """Save `params`' sampling fields as your preset `name` (replacing yours of that name)."""
        from sessions.presets import BUILT_IN, preset_from_params

        name = " ".join(name.split())
        if not name:
            raise CosplayError(_("A preset needs a name."))
        taken = {word for preset in BUILT_IN for word in [preset.name, *preset.name.split()]}
        if name.casefold() in {word.casefold() for word in taken}:
            raise CosplayError(
                _("{name} is a built-in preset's name; choose another.", name=repr(name))
            )
        preset = preset_from_params(name, params)
        saved = self.store.get_setting(CUSTOM_PRESETS, {})
        saved = dict(saved) if isinstance(saved, dict) else {}
        saved[name] = preset.values
        self.store.set_setting(CUSTOM_PRESETS, saved)
        return preset

    def delete_preset(self, name: str) -> None:
        saved = self.store.get_setting(CUSTOM_PRESETS, {})
        if not isinstance(saved, dict) or name not in saved:
            raise CosplayError(_("There is no preset of yours named {name}.", name=repr(name)))
        self.store.set_setting(CUSTOM_PRESETS, {k: v for k, v in saved.items() if k != name})

    def apply_preset(self, session_id: int, name: str) -> Session:
        """Write the preset's values into the session's parameters (the others are kept), and
        make them the parameters new chats start with, as any change in the panel does."""
        from sessions.presets import apply_preset

        preset = self.preset(name)
        settings = apply_preset(self.store.get_session(session_id).settings, preset)
        self.set_default_params(settings["params"])
        return self.store.update_session(session_id, settings=settings)

    def _with_default_preset(self, settings: dict) -> dict:
        """The config's chat.preset over the settings; an unknown name is a config warning."""
        from sessions.presets import apply_preset

        name = self.config.get("chat.preset")
        if not name:
            return settings
        try:
            return apply_preset(settings, self.preset(str(name)))
        except CosplayError as exc:
            warning = f"In {self.paths.config}, chat.preset: {exc}"
            if warning not in self.config.warnings:
                self.config.warnings.append(warning)
            return settings

    def _with_card_preset(self, settings: dict, card) -> dict:
        """A persona's preset (by name, in its card) over the settings, its own `sampling`
        values over that; an unknown name is passed over (a card from another machine)."""
        from sessions.presets import apply_preset, card_preset

        name = card_preset(card)
        if not name:
            return settings
        try:
            preset = self.preset(name)
        except CosplayError:
            return settings
        settings = apply_preset(settings, preset)
        settings["params"] |= card.cosplay.sampling
        return settings

    # --- your persona ({{user}}) ----------------------------------------------------------
    # New chats copy it into settings["user"]: changing it later leaves earlier chats as they
    # began (their greetings already say the name they were started with).

    def default_user_persona(self) -> UserPersona | None:
        """Who you are in new chats: the config's chat.user_name and chat.user_persona, else
        what an older version saved in the database, else None (the prompt says "User")."""
        from sessions.prompt import UserPersona

        name, about = self.config.get("chat.user_name"), self.config.get("chat.user_persona")
        if name or about:
            return UserPersona(" ".join(str(name).split()) or "User", str(about))
        value = self.store.get_setting(USER_PERSONA)
        return UserPersona.from_value(value) if value else None

    def set_default_user_persona(self, user: UserPersona) -> None:
        """Write it to the config file (the one place for it; an older database copy goes)."""
        path = self.paths.config
        write_value(path, "chat.user_name", user.name)
        write_value(path, "chat.user_persona", user.description)
        self.config.values["chat.user_name"] = user.name
        self.config.values["chat.user_persona"] = user.description
        self.store.set_setting(USER_PERSONA, None)

    def session_user_persona(self, session: Session) -> UserPersona:
        """Who you are in this chat: its own, else (a chat from before you set one) "User"."""
        from sessions.prompt import UserPersona

        return UserPersona.from_value(session.settings.get("user"))

    def set_session_user_persona(self, session_id: int, user: UserPersona) -> Session:
        """Be `user` in this chat from now on. While the chat holds nothing but its greetings,
        they are written again with the new name (the persona has not been answered yet)."""
        from sessions.prompt import greetings

        session = self.store.get_session(session_id)
        settings = dict(session.settings)
        settings["user"] = user.to_value()
        session = self.store.update_session(session_id, settings=settings)
        messages = self.store.all_messages(session_id)
        if not messages or any("greeting" not in m.meta or not m.name for m in messages):
            return session
        cards = {}
        for message in messages:
            if message.name not in cards:
                try:
                    cards[message.name] = self.personas.get(message.name).card
                except CosplayError:
                    return session
            texts = greetings(cards[message.name], user)
            index = message.meta.get("greeting")
            if isinstance(index, int) and 0 <= index < len(texts):
                self.store.update_message(message.id, content=texts[index])
        return session
