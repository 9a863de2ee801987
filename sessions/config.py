"""The config file: one TOML file of documented keys, read with tomllib, written with tomlkit
(which keeps the user's comments and layout).

Where: `$COSPLAY_CONFIG` when set; else `config.toml` in the data directory when that is not
the platform default (`--home`, `$COSPLAY_HOME`: a data directory is a whole profile); else
the platform's user config dir (`~/.config/cosplay/config.toml` on Linux).

Every key is one `Key` row of sessions/config_keys.py (its table, type, default and what it
does): `cosplay config show` and the checks come from the table. A key with a wrong value is a
warning naming the file, the key and the problem, and its default is used; the file is never a
reason not to start. `[per_model."MODEL"]` tables hold the settings remembered for one model
(template, n_ctx, threads, GPU layers, quantization), written when a model is loaded with those
flags. Reading and `config show` are here; `config set` and the writing (tomlkit, keeping the
user's comments) are sessions/config_write.py.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from engines.i18n import _
from sessions.config_keys import BY_NAME, KEYS, MODEL_SETTINGS, PER_MODEL
from sessions.config_write import parse_value, remember_model_settings, write_value

__all__ = [
    "Config",
    "config_path",
    "describe",
    "load_config",
    "parse_value",
    "remember_model_settings",
    "write_value",
]

CONFIG_VARIABLE = "COSPLAY_CONFIG"
FILE_NAME = "config.toml"


@dataclass
class Config:
    """The values of every key (defaults where the file has none or a wrong one), the
    remembered per-model settings, and the warnings reading the file gave."""

    path: Path
    values: dict[str, object] = field(default_factory=dict)
    per_model: dict[str, dict[str, object]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def get(self, name: str) -> object:
        return self.values.get(name, BY_NAME[name].default)

    def model_settings(self, model: str) -> dict[str, object]:
        """What was remembered for `model` (setting name -> value), {} when nothing."""
        return dict(self.per_model.get(model, {}))


def config_path(data_root: Path, *, default_root: bool) -> Path:
    """The config file for the data directory `data_root` (see the module's docstring)."""
    explicit = os.environ.get(CONFIG_VARIABLE, "").strip()
    if explicit:
        return Path(explicit).expanduser()
    if not default_root:
        return data_root / FILE_NAME
    from platformdirs import user_config_dir

    return Path(user_config_dir("cosplay", appauthor=False)) / FILE_NAME


def load_config(path: Path) -> Config:
    """The config in `path` (defaults when there is none); never raises for its content."""
    config = Config(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return config
    except (OSError, UnicodeDecodeError) as exc:
        config.warnings.append(
            _(
                "The config file {path} cannot be read ({problem}); using defaults.",
                path=path,
                problem=exc,
            )
        )
        return config
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        config.warnings.append(
            _(
                "The config file {path} is not valid TOML ({problem}); using defaults until it "
                "is fixed.",
                path=path,
                problem=exc,
            )
        )
        return config
    for table, content in document.items():
        if table == PER_MODEL:
            _read_per_model(config, content)
            continue
        if not isinstance(content, dict):
            config.warnings.append(_unknown(path, table))
            continue
        for short, value in content.items():
            name = f"{table}.{short}"
            key = BY_NAME.get(name)
            if key is None:
                config.warnings.append(_unknown(path, name))
            elif (problem := key.check(value)) is not None:
                config.warnings.append(
                    _(
                        "In {path}, {name} {problem} (got {value}); using {default}.",
                        path=path,
                        name=name,
                        problem=problem,
                        value=repr(value),
                        default=repr(key.default),
                    )
                )
            else:
                config.values[name] = value
    return config


def _unknown(path: Path, name: str) -> str:
    return _(
        "In {path}, {name} is not a setting Cosplay knows; it is ignored "
        "(`cosplay config show` lists them).",
        path=path,
        name=name,
    )


def _read_per_model(config: Config, content: object) -> None:
    path = config.path
    if not isinstance(content, dict):
        config.warnings.append(
            _("In {path}, {table} must be a table of tables; ignored.", path=path, table=PER_MODEL)
        )
        return
    for model, settings in content.items():
        if not isinstance(settings, dict):
            config.warnings.append(
                _(
                    "In {path}, {table} must be a table; ignored.",
                    path=path,
                    table=f'{PER_MODEL}."{model}"',
                )
            )
            continue
        kept = {}
        for name, value in settings.items():
            known = MODEL_SETTINGS.get(name)
            problem = _("is not a setting Cosplay knows") if known is None else known[1](value)
            if problem is None:
                kept[name] = value
            else:
                config.warnings.append(
                    _(
                        "In {path}, {name} {problem}; it is ignored.",
                        path=path,
                        name=f'{PER_MODEL}."{model}".{name}',
                        problem=problem,
                    )
                )
        config.per_model[model] = kept


def describe(config: Config) -> str:
    """Every key with its value and what it does, as TOML a user can copy into the file."""
    written = config.path.exists()
    lines = [f"# {config.path}" + ("" if written else " " + _("(not written yet)"))]
    table = None
    for key in KEYS:
        if key.table != table:
            table = key.table
            lines += ["", f"[{table}]"]
        value = config.get(key.name)
        lines.append(f"# {_(key.doc)}")
        lines.append(f"{key.short} = {_toml(value)}")
    for model, settings in config.per_model.items():
        lines += ["", f"[{PER_MODEL}.{_toml(model)}]"]
        lines += [f"{name} = {_toml(value)}" for name, value in settings.items()]
    return "\n".join(lines)


def _toml(value: object) -> str:
    import tomlkit

    if isinstance(value, dict):  # inline, so `keys = {}` stays on its key's line
        table = tomlkit.inline_table()
        table.update(value)
        return table.as_string()
    return tomlkit.item(value).as_string()
