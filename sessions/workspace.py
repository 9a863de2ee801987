"""One data directory, opened: where Cosplay keeps its data, the session store, the personas
and the app-wide settings (the last model and session, the parameters new chats start with).

The directory is platformdirs' user data dir by default, `$COSPLAY_HOME` when set, `--home`
when given; every command and the TUI resolve it here, and only here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from engines.base import CosplayError
from sessions.models import Session
from sessions.personas import PersonaStore
from sessions.store import Store

# Settings keys (the store's settings table).
LAST_MODEL = "last_model"  # the model spec of the last model loaded
LAST_SESSION = "last_session"
DEFAULT_PARAMS = "default_params"  # the generation parameters new sessions start with
NEW_TITLE = "New chat"  # a session's title until its first message names it


@dataclass(frozen=True)
class DataPaths:
    root: Path

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

        home = user_data_dir("cosplay", appauthor=False)
    if not str(home).strip():
        raise CosplayError("The data directory is empty (--home or COSPLAY_HOME); give a path.")
    path = Path(home).expanduser()
    if path.exists() and not path.is_dir():
        raise CosplayError(
            f"The data directory {path} is a file (--home or COSPLAY_HOME); give a directory."
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
        self.personas = PersonaStore(self.paths.personas)

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

    def new_session(self, personas: str | list[str] | None = None) -> Session:
        """A new session with the default parameters; with personas it opens with their
        greetings (several: a group scene)."""
        from sessions.group import start_session

        settings = {"params": self.default_params()}
        if personas:
            names = [personas] if isinstance(personas, str) else personas
            cards = [self.personas.get(name).card for name in names]
            return start_session(self.store, cards, settings=settings)
        return self.store.create_session(NEW_TITLE, settings=settings)
