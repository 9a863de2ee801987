"""Pydantic's validation errors in the user's language.

Pydantic writes its own English (`Input should be greater than or equal to 1`); `describe`
rebuilds the problem from the error's `type` and `ctx` through the catalogue instead:
`must be ≥ 1 (got 0)` / `必须 ≥ 1（收到 0）`. A `value_error` carries our own
validator's sentence (already translated where it was raised); a type we do not know falls
back to pydantic's `msg`.

No pydantic import here: an error is the plain dict `ValidationError.errors()` yields.
"""

from __future__ import annotations

import re
from string import Formatter

from engines.i18n import N_, _

# error type -> the problem, its {placeholders} filled from the error's ctx
_PROBLEMS = {
    "greater_than": N_("must be > {gt}"),
    "greater_than_equal": N_("must be ≥ {ge}"),
    "less_than": N_("must be < {lt}"),
    "less_than_equal": N_("must be ≤ {le}"),
    "multiple_of": N_("must be a multiple of {multiple_of}"),
    "int_parsing": N_("must be a whole number"),
    "int_type": N_("must be a whole number"),
    "int_from_float": N_("must be a whole number"),
    "float_parsing": N_("must be a number"),
    "float_type": N_("must be a number"),
    "finite_number": N_("must be a finite number"),
    "bool_parsing": N_("must be true or false"),
    "bool_type": N_("must be true or false"),
    "string_type": N_("must be a string"),
    "string_too_short": N_("must be at least {min_length} characters long"),
    "string_too_long": N_("must be at most {max_length} characters long"),
    "too_short": N_("must have at least {min_length} items"),
    "too_long": N_("must have at most {max_length} items"),
    "list_type": N_("must be a list"),
    "dict_type": N_("must be an object (a table of names and values)"),
    "model_type": N_("must be an object (a table of names and values)"),
    "missing": N_("is required"),
    "extra_forbidden": N_("is not a known field"),
    "literal_error": N_("must be one of {expected}"),
    "enum": N_("must be one of {expected}"),
}
_EMPTY = N_("must not be empty")
_LONGEST_INPUT_SHOWN = 40


def describe(error: dict, *, show_input: bool = True) -> str:
    """The problem in one translated phrase, without the field's name (the caller names it):
    `must be ≥ 1 (got 0)`; `show_input=False` leaves out what was given."""
    kind, ctx = error.get("type", ""), dict(error.get("ctx") or {})
    if kind == "value_error":
        problem = str(ctx.get("error") or error.get("msg", ""))
        return problem + (_given(error) if show_input else "")
    if kind == "string_too_short" and ctx.get("min_length") == 1:
        return _(_EMPTY)
    template = _PROBLEMS.get(kind)
    if template is None:
        return str(error.get("msg", kind)) + (_given(error) if show_input else "")
    needed = {part[1] for part in Formatter().parse(template) if part[1]}
    if not needed <= ctx.keys():  # a ctx without the values the sentence names: pydantic's words
        return str(error.get("msg", kind)) + (_given(error) if show_input else "")
    if "expected" in ctx:  # "'a', 'b' or 'c'": the "or" is pydantic's English
        ctx["expected"] = str(ctx["expected"]).replace(" or ", ", ")
    problem = _(template, **{key: _shown(value) for key, value in ctx.items()})
    if kind in ("missing", "extra_forbidden") or not show_input:
        return problem
    return problem + _given(error)


# What pydantic adds to an error's location inside a union or a validator: the member's type
# (`entries.0.insertion_order.int`), not a field of the file.
_TYPE_TAG = re.compile(
    r"^(int|float|str|bool|bytes|none|list|dict|tuple|set|decimal|"
    r"(function|constrained|literal|tagged-union|union|nullable|lax|json)[-a-z]*)(\[.*\])?$"
)


def field_path(error: dict) -> str:
    """The error's field as `a.0.b`: its location without pydantic's type tags."""
    parts = [str(part) for part in error.get("loc") or ()]
    return ".".join(part for part in parts if not _TYPE_TAG.match(part))


def _given(error: dict) -> str:
    """` (got -5)` for a short plain value; nothing for a missing, empty or nested one."""
    value = error.get("input")
    if isinstance(value, (dict, list, tuple, set, type(None))) or value == "":
        return ""
    shown = repr(value) if isinstance(value, str) else _shown(value)
    if len(shown) > _LONGEST_INPUT_SHOWN:
        shown = shown[: _LONGEST_INPUT_SHOWN - 1] + "…"
    return _(" (got {value})", value=shown)


def _shown(value: object) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


__all__ = ["describe"]
