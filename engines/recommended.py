"""The curated list of models to download (engines/data/recommended.json), its human text in
the language in use: `cosplay models recommended`, the first-start screen and the models screen
show it."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from engines.i18n import language


@dataclass(frozen=True)
class Recommended:
    name: str
    source: str  # "builtin", or what `cosplay models pull` takes: OWNER/REPO[:FILE]
    engine: str
    languages: str
    purpose: str
    download_gb: float  # approximate
    ram_gb: float  # approximate
    flags: str = ""  # the chat flags it needs

    @property
    def builtin(self) -> bool:
        return self.source == "builtin"

    def record(self) -> dict:
        return asdict(self) | {"builtin": self.builtin}


def recommended() -> tuple[str, list[Recommended]]:
    """(the note on the numbers, the models recommended), from the shipped list, their human
    text in the language in use (`KEY_zh` beside each `KEY` in the list)."""
    from importlib.resources import files

    data = json.loads(files("engines").joinpath("data/recommended.json").read_text("utf-8"))
    models = [
        Recommended(
            name=localized(item, "name"),
            source=item["source"],
            engine=item["engine"],
            languages=localized(item, "languages"),
            purpose=localized(item, "for"),
            download_gb=float(item["download_gb"]),
            ram_gb=float(item["ram_gb"]),
            flags=item.get("flags", ""),
        )
        for item in data["models"]
    ]
    return localized(data, "note"), models


def localized(item: dict, key: str) -> str:
    """`item[key]`, or its translation `item[key + "_" + language]` where the list has one."""
    return item.get(f"{key}_{language()}", item[key])
