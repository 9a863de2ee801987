"""The config file: one TOML file of documented keys, read with tomllib, written with tomlkit
(which keeps the user's comments and layout).

Where: `$COSPLAY_CONFIG` when set; else `config.toml` in the data directory when that is not
the platform default (`--home`, `$COSPLAY_HOME`: a data directory is a whole profile); else
the platform's user config dir (`~/.config/cosplay/config.toml` on Linux).

Every key is one `Key` row below (its table, type, default and what it does): `cosplay config
show` and the checks come from the table. A key with a wrong value is a warning naming the
file, the key and the problem, and its default is used; the file is never a reason not to
start. `[per_model."MODEL"]` tables hold the settings remembered for one model (template,
n_ctx, threads, GPU layers, quantization), written when a model is loaded with those flags.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from engines.errors import CosplayError
from engines.i18n import N_, _

CONFIG_VARIABLE = "COSPLAY_CONFIG"
FILE_NAME = "config.toml"
PER_MODEL = "per_model"
ENGINES = ("auto", "cpu", "gpu", "remote")  # engines/registry.py's names (not imported: fast)
QUANTIZATIONS = ("", "8bit", "4bit")


@dataclass(frozen=True)
class Key:
    name: str  # "table.key"
    default: object
    doc: str
    check: Callable[[object], str | None]  # None when the value is right, else the problem

    @property
    def table(self) -> str:
        return self.name.partition(".")[0]

    @property
    def short(self) -> str:
        return self.name.partition(".")[2]


def _text(value: object) -> str | None:
    return None if isinstance(value, str) else _("must be a string")


def _count(low: int, high: int = 2**31 - 1) -> Callable[[object], str | None]:
    def check(value: object) -> str | None:
        if isinstance(value, bool) or not isinstance(value, int):
            return _("must be a whole number")
        return (
            None
            if low <= value <= high
            else _("must be between {low} and {high}", low=low, high=high)
        )

    return check


def _one_of(*choices: str) -> Callable[[object], str | None]:
    def check(value: object) -> str | None:
        if value in choices:
            return None
        return _("must be one of {choices}", choices=", ".join(repr(choice) for choice in choices))

    return check


def _folders(value: object) -> str | None:
    if isinstance(value, list) and all(isinstance(item, str) and item.strip() for item in value):
        return None
    return _('must be a list of folder paths, like ["~/models"]')


def _keymap(value: object) -> str | None:
    if isinstance(value, dict) and all(
        isinstance(keys, str) and keys.strip() for keys in value.values()
    ):
        return None
    return _('must be a table of action id = "keys", like regenerate = "f12"')


KEYS: tuple[Key, ...] = (
    Key(
        "model.default",
        "",
        N_(
            "the model to load when none is named (a .gguf file, a Hugging "
            "Face directory or repo id, or a server URL); empty: the last one used"
        ),
        _text,
    ),
    Key(
        "model.engine",
        "auto",
        N_("the engine: auto (from the model), cpu, gpu or remote"),
        _one_of(*ENGINES),
    ),
    Key(
        "model.n_ctx",
        0,
        N_("context window in tokens; 0: the model's, at most 4096"),
        _count(0, 2**32 - 1),
    ),
    Key("model.threads", 0, N_("CPU engine threads; 0: llama.cpp's choice"), _count(0)),
    Key(
        "model.gpu_layers",
        0,
        N_("layers to offload to a GPU (CPU engine built with GPU support); -1: all"),
        _count(-1),
    ),
    Key("models.dirs", [], N_("extra folders `cosplay models list` looks in for models"), _folders),
    Key(
        "chat.preset",
        "",
        N_(
            "the sampling preset new chats start with (`cosplay ask --preset` "
            "names them); empty: the parameters you last set"
        ),
        _text,
    ),
    Key("chat.user_name", "", N_("your name ({{user}}) in new chats; empty: User"), _text),
    Key("chat.user_persona", "", N_("a description of you, for the characters"), _text),
    Key(
        "ui.language",
        "auto",
        N_(
            "the language of screens and messages: en, zh (简体中文) or auto (COSPLAY_LANG, "
            "else the locale: LANG=zh_CN.UTF-8 → 中文)"
        ),
        _one_of("auto", "en", "zh"),
    ),
    Key(
        "ui.theme",
        "",
        N_("a Textual theme (textual-dark, nord, gruvbox, …); empty: the default"),
        _text,
    ),
    Key(
        "ui.keys",
        {},
        N_(
            'key rebindings by action id (tui/actions.py), like regenerate = "f12"; '
            "keys.toml in the data directory is read when this is empty"
        ),
        _keymap,
    ),
    Key(
        "lore.placement",
        "cache",
        N_(
            "where fired lore meant for before/after the character goes: cache (at depth 4, near "
            "the end, so the CPU engine keeps the history cached) or card (in the system text, "
            "as SillyTavern does); a chat's own setting overrides it"
        ),
        _one_of("cache", "card"),
    ),
    Key(
        "storage.kv_cache_mb",
        2048,
        N_(
            "disk cap of the saved KV caches in MB; 0 saves none (COSPLAY_KV_CACHE_MB overrides it)"
        ),
        _count(0),
    ),
)
BY_NAME = {key.name: key for key in KEYS}

# Per-model remembered settings: the ModelSpec field each stands for, and its check.
MODEL_SETTINGS: dict[str, tuple[str, Callable[[object], str | None]]] = {
    "template": ("template", _text),
    "n_ctx": ("n_ctx", _count(16, 2**32 - 1)),
    "threads": ("n_threads", _count(1)),
    "gpu_layers": ("n_gpu_layers", _count(-1)),
    "quantization": ("quantization", _one_of(*QUANTIZATIONS)),
}


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
