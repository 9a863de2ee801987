"""Where Cosplay keeps its data: platformdirs by default, everything under $COSPLAY_HOME when set."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from engines.base import CosplayError


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
