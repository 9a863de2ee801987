"""The config file's keys: one `Key` row each (its table, type, default, what it does, and the
check of its value), and the settings remembered per model in `[per_model."MODEL"]` tables.
Reading (sessions/config.py), `cosplay config set` and writing (sessions/config_write.py) and
`cosplay config show` all come from these tables."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from engines.i18n import N_, _

PER_MODEL = "per_model"
ENGINES = ("auto", "cpu", "gpu", "remote")  # engines/registry.py's names (not imported: fast)
QUANTIZATIONS = ("", "8bit", "4bit")


@dataclass(frozen=True)
class Key:
    """One config key: its default, its help line and its check."""

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
