"""Sampling presets: named sets of generation parameters a session, a persona or `cosplay ask`
can start from.

A preset names only the fields it sets (`values`, GenerationParams fields); applying it to a
session writes them into `settings["params"]` over what the session had (the seed, the stop
strings and anything else it does not name are kept) and records its name in
`settings["preset"]`, so the status line can say "平衡 Balanced" while the parameters still
equal it and "平衡 Balanced*" once one is changed. The built-in ones are below; custom ones are
saved in the store's settings (sessions/workspace.py); a persona carries one by name in its
card (`data.extensions.cosplay.preset`), applied when a session starts with it.

Nothing here touches storage or the UI.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from engines.base import CosplayError, GenerationParams
from engines.i18n import _

# The fields a saved preset keeps: how to sample, and how long a reply may be. The seed and the
# stop strings belong to a chat (or a persona), not to a way of sampling.
PRESET_FIELDS = (
    "do_sample",
    "temperature",
    "top_p",
    "top_k",
    "min_p",
    "typical_p",
    "repetition_penalty",
    "no_repeat_ngram_size",
    "num_beams",
    "max_new_tokens",
    "dry_multiplier",
    "dry_base",
    "dry_allowed_length",
    "dry_penalty_last_n",
    "dry_sequence_breakers",
    "xtc_threshold",
    "xtc_probability",
    "dynatemp_range",
    "dynatemp_exponent",
    "top_n_sigma",
    "mirostat_mode",
    "mirostat_tau",
    "mirostat_eta",
)
# The sampler with every filter off: each built-in names all of these, so switching from one
# preset to another leaves nothing of the first behind.
_NEUTRAL = {
    "top_p": 1.0,
    "top_k": 0,
    "min_p": 0.0,
    "typical_p": 1.0,
    "repetition_penalty": 1.0,
    "no_repeat_ngram_size": 0,
    "num_beams": 1,
    "dry_multiplier": 0.0,
    "xtc_probability": 0.0,
    "dynatemp_range": 0.0,
    "top_n_sigma": -1.0,
    "mirostat_mode": 0,
}


@dataclass(frozen=True)
class Preset:
    """A named set of sampling values (built-in or the user's)."""

    name: str
    values: dict[str, Any] = field(default_factory=dict)
    builtin: bool = False
    about: str = ""  # one line for the selector's help

    def matches(self, params: GenerationParams) -> bool:
        """Whether `params` still equal every value this preset sets."""
        for name, wanted in self.values.items():
            have = getattr(params, name, None)
            if isinstance(wanted, float) or isinstance(have, float):
                if not isinstance(have, int | float) or not math.isclose(have, wanted):
                    return False
            elif have != wanted:
                return False
        return True


BUILT_IN = (
    # Greedy: the most likely token every time, so the same prompt gives the same reply on the
    # same engine, with no seed needed. No penalty either: nothing but the model decides.
    Preset(
        "确定 Deterministic",
        {**_NEUTRAL, "do_sample": False, "temperature": 0.0},
        builtin=True,
        about="greedy: the same prompt gives the same reply",
    ),
    # The usual chat setting: a little below temperature 1 for coherence, min-p 0.05 to cut the
    # long tail (relative to the top token, so it adapts to how sure the model is), top-p 0.9
    # as a second guard, and a light repetition penalty against loops in long roleplay.
    Preset(
        "平衡 Balanced",
        {
            **_NEUTRAL,
            "do_sample": True,
            "temperature": 0.7,
            "top_p": 0.9,
            "min_p": 0.05,
            "repetition_penalty": 1.05,
        },
        builtin=True,
        about="coherent and varied: temperature 0.7, top-p 0.9, min-p 0.05",
    ),
    # The model's own distribution (temperature 1) with only the tail cut: min-p keeps it
    # sane at a temperature where top-k/top-p alone would let nonsense through.
    Preset(
        "创意 Creative",
        {
            **_NEUTRAL,
            "do_sample": True,
            "temperature": 1.0,
            "top_p": 0.95,
            "min_p": 0.05,
            "repetition_penalty": 1.05,
        },
        builtin=True,
        about="surprising: temperature 1.0, top-p 0.95, min-p 0.05",
    ),
    # Long roleplay: the model's own distribution with the tail cut by min-p, DRY against the
    # phrases a character falls back on turn after turn (p-e-w's recommended 0.8 / 1.75 / 2),
    # and XTC (threshold 0.1, half the time) against the most predictable wording. No
    # repetition penalty: DRY does its work without punishing every repeated word.
    Preset(
        "角色 Roleplay",
        {
            **_NEUTRAL,
            "do_sample": True,
            "temperature": 1.0,
            "min_p": 0.05,
            "dry_multiplier": 0.8,
            "dry_base": 1.75,
            "dry_allowed_length": 2,
            "xtc_threshold": 0.1,
            "xtc_probability": 0.5,
        },
        builtin=True,
        about="long roleplay: min-p 0.05, DRY against repeated phrases, XTC against clichés",
    ),
    # What the seed's chat server (Cosplay-ChatGLM-LoRA, wellinxu/LLM_Custome chat_server.py)
    # opened with: "Do sample" unticked, temperature 0.1, top-p 0.75, top-k 40, beams 1,
    # max tokens 128 (its "max history 10" counts messages: our max history rounds 5, a
    # session setting, not a sampling one). No repetition penalty, no min-p: it set none.
    Preset(
        "原版 Seed server",
        {
            **_NEUTRAL,
            "do_sample": False,
            "temperature": 0.1,
            "top_p": 0.75,
            "top_k": 40,
            "max_new_tokens": 128,
        },
        builtin=True,
        about="the Cosplay-ChatGLM chat server's defaults: greedy, 128 tokens",
    ),
)


def preset_from_params(name: str, params: GenerationParams) -> Preset:
    """A custom preset holding `params`' sampling fields (PRESET_FIELDS)."""
    return Preset(name, {key: getattr(params, key) for key in PRESET_FIELDS})


def custom_preset(name: Any, values: Any) -> Preset | None:
    """A saved custom preset, or None when what was saved is damaged (it is then left out)."""
    if not isinstance(name, str) or not name.strip() or not isinstance(values, dict):
        return None
    values = {key: value for key, value in values.items() if key in PRESET_FIELDS}
    try:
        GenerationParams(**values)
    except (TypeError, ValueError):  # not a table, or a bad value
        return None
    return Preset(name, values)


def find_preset(presets: list[Preset] | tuple[Preset, ...], name: str) -> Preset:
    """The preset called `name`: its whole name or one word of it (`平衡`, `balanced`), any case."""
    wanted = " ".join(name.split()).casefold()
    for preset in presets:
        if preset.name.casefold() == wanted:
            return preset
    for preset in presets:
        if preset.builtin and wanted in preset.name.casefold().split():
            return preset
    known = ", ".join(preset.name for preset in presets)
    raise CosplayError(
        _("There is no preset named {name!r}; use one of: {known}.", name=name, known=known)
    )


def apply_preset(settings: dict, preset: Preset) -> dict:
    """Session settings with the preset's values written into its params (the params it does
    not name are kept) and its name recorded."""
    settings = dict(settings)
    params = settings.get("params")
    settings["params"] = {**(params if isinstance(params, dict) else {}), **preset.values}
    settings["preset"] = preset.name
    return settings


def session_params(settings: dict) -> GenerationParams:
    """The session's parameters (damaged ones read as the defaults)."""
    try:
        return GenerationParams(**(settings.get("params") or {}))
    except (TypeError, ValueError):  # not a table, or a bad value
        return GenerationParams()


def preset_label(settings: dict, presets: list[Preset] | tuple[Preset, ...]) -> str:
    """What the status line says about the session's preset: its name while the parameters
    equal it, `name*` once changed; with none chosen, the name of a preset they equal; "" else."""
    params = session_params(settings)
    chosen = settings.get("preset")
    if isinstance(chosen, str) and chosen:
        for preset in presets:
            if preset.name == chosen:
                return chosen if preset.matches(params) else f"{chosen}*"
        return f"{chosen}*"  # a custom preset deleted since: these are its values, changed or not
    for preset in presets:
        if preset.matches(params):
            return preset.name
    return ""


def card_preset(card: Any) -> str:
    """The preset a persona card names (`data.extensions.cosplay.preset`), or ""."""
    extension = card.data.extensions.get("cosplay")
    value = extension.get("preset") if isinstance(extension, dict) else None
    return value.strip() if isinstance(value, str) else ""
