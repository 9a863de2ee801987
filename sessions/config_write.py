"""Changing the config file: `cosplay config set`'s value parsed as its key's type, and
values written with tomlkit, which keeps the user's comments and layout (atomically: a failed
write leaves the file as it was); the settings remembered for a model when it is loaded."""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from pathlib import Path

from engines.errors import CosplayError
from engines.i18n import _
from sessions.config_keys import BY_NAME, PER_MODEL


def parse_value(name: str, text: str) -> object:
    """`cosplay config set NAME TEXT`'s value as its key's type (CosplayError when it is not
    one: the same checks as reading the file)."""
    key = BY_NAME.get(name)
    if key is None:
        known = ", ".join(BY_NAME)
        raise CosplayError(
            _("{name} is not a setting; use one of {known}.", name=repr(name), known=known)
        )
    value: object = text
    if isinstance(key.default, int):
        try:
            value = int(text)
        except ValueError:
            raise CosplayError(
                _("{name} must be a whole number (got {text}).", name=name, text=repr(text))
            ) from None
    elif isinstance(key.default, list):
        value = [part.strip() for part in text.split(",") if part.strip()]
    elif isinstance(key.default, dict):
        value = _parse_table(name, text)
    problem = key.check(value)
    if problem is not None:
        raise CosplayError(
            _("{name} {problem} (got {text}).", name=name, problem=problem, text=repr(text))
        )
    return value


def _parse_table(name: str, text: str) -> dict:
    """A table value given as inline TOML, e.g. `{ regenerate = "f12" }`."""
    try:
        return tomllib.loads(f"value = {text}")["value"]
    except (tomllib.TOMLDecodeError, KeyError):
        raise CosplayError(
            _(
                "{name} is a table; write it as TOML, like {example}.",
                name=name,
                example='{ regenerate = "f12" }',
            )
        ) from None


def write_value(path: Path, name: str, value: object) -> None:
    """Set `name` in the file, keeping everything else in it as it was (comments included)."""
    table, _dot, short = name.partition(".")
    _edit(path, lambda document: _table(document, table).__setitem__(short, value))


def remember_model_settings(path: Path, model: str, settings: dict[str, object]) -> None:
    """Write the settings remembered for `model` (replacing what was there for it)."""
    import tomlkit

    def edit(document) -> None:
        models = _table(document, PER_MODEL)
        models[model] = tomlkit.table()
        for name, value in settings.items():
            models[model][name] = value

    _edit(path, edit)


def _table(document, name: str):
    import tomlkit

    if name not in document:
        document[name] = tomlkit.table()
    table = document[name]
    if not isinstance(table, dict):
        raise CosplayError(
            _("In the config file, {name} is not a table; fix or remove it.", name=name)
        )
    return table


def _edit(path: Path, change: Callable[[object], None]) -> None:
    """Read the file with tomlkit, apply `change`, write it back atomically."""
    import tomlkit

    from engines.atomic import written_atomically

    try:
        text = path.read_text(encoding="utf-8") if path.exists() else ""
        document = tomlkit.parse(text)
    except (OSError, UnicodeDecodeError, tomlkit.exceptions.ParseError) as exc:
        raise CosplayError(
            _(
                "The config file {path} cannot be changed ({problem}); fix it or delete it.",
                path=path,
                problem=exc,
            )
        ) from None
    change(document)
    try:
        with written_atomically(path) as temporary:
            temporary.write_text(tomlkit.dumps(document), encoding="utf-8")
    except OSError as exc:
        raise CosplayError(
            _(
                "Cannot write the config file {path} ({problem}); check the folder.",
                path=path,
                problem=exc.strerror or exc,
            )
        ) from None
