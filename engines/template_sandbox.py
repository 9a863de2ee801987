"""A Jinja sandbox for chat templates, which come from model files and are untrusted code.

Jinja's sandbox stops attribute escapes but not a template that never ends or eats
memory (`range(100000)` nested, `10**100000000`, `'x'*3000000000`). Here every render is
bounded: `range` is lazy and checks a deadline, `*`, `**` and `+` refuse results past a
size, every call checks the deadline, and the output is cut off past a length. A bound
hit, like any other failure inside the template, is a `TemplateLimitError`.
"""

from __future__ import annotations

import json
import threading
import time
from datetime import datetime
from functools import lru_cache

from jinja2 import TemplateError as JinjaTemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from engines.i18n import _

MAX_SECONDS = 2.0  # a chat template renders in milliseconds
MAX_OUTPUT = 4_000_000  # characters of rendered prompt (a 1M-token context is ~4M characters)
MAX_RANGE = 100_000  # items one range() may yield
MAX_INT_BITS = 4096  # integers a template may compute


class TemplateLimitError(Exception):
    """The template hit a bound (time, size) or failed inside (1/0, bad call, recursion)."""


class _Budget(threading.local):
    """The running render's deadline, per thread (a compiled template is shared)."""

    deadline = float("inf")

    def check(self) -> None:
        if time.monotonic() > self.deadline:
            raise TemplateLimitError(_("it ran longer than {seconds:g} s", seconds=MAX_SECONDS))


class BoundedEnvironment(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**", "+"})

    def __init__(self) -> None:
        super().__init__(
            trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"]
        )
        self.budget = _Budget()
        self.filters["tojson"] = lambda value, indent=None: json.dumps(
            value, ensure_ascii=False, indent=indent
        )
        self.globals["raise_exception"] = _raise_exception
        self.globals["strftime_now"] = lambda fmt: datetime.now().strftime(str(fmt))
        self.globals["range"] = self._range

    def _range(self, *args):
        numbers = range(*args)
        if len(numbers) > MAX_RANGE:
            raise TemplateLimitError(
                _("range() of {count} items (at most {most})", count=len(numbers), most=MAX_RANGE)
            )
        for count, number in enumerate(numbers):
            if count % 256 == 0:
                self.budget.check()
            yield number

    def call_binop(self, context, operator, left, right):
        self.budget.check()
        if operator == "**":
            if isinstance(left, int) and isinstance(right, int):
                if (
                    right > 0
                    and abs(left) > 1
                    and right * max(abs(left).bit_length(), 1) > MAX_INT_BITS
                ):
                    raise TemplateLimitError(_("an integer power too large"))
        elif operator == "*":
            for sized, count in ((left, right), (right, left)):
                if isinstance(sized, (str, list, tuple)) and isinstance(count, int):
                    if len(sized) * count > MAX_OUTPUT:
                        raise TemplateLimitError(_("a repeated string or list too large"))
            if isinstance(left, int) and isinstance(right, int):
                if left.bit_length() + right.bit_length() > MAX_INT_BITS:
                    raise TemplateLimitError(_("an integer product too large"))
        elif operator == "+":
            if isinstance(left, (str, list, tuple)) and isinstance(right, (str, list, tuple)):
                if len(left) + len(right) > MAX_OUTPUT:
                    raise TemplateLimitError(_("a concatenation too large"))
        return super().call_binop(context, operator, left, right)

    def call(__self, __context, __obj, *args, **kwargs):  # noqa: N805 (Jinja's signature)
        __self.budget.check()
        return super().call(__context, __obj, *args, **kwargs)


def _raise_exception(message: str) -> None:
    raise JinjaTemplateError(message)


@lru_cache(maxsize=32)
def compile_template(source: str):
    """Parse a template once; JinjaTemplateError when it does not parse."""
    return BoundedEnvironment().from_string(source)


def render_bounded(source: str, **context) -> str:
    """Render within the bounds above; TemplateLimitError naming what went wrong otherwise."""
    template = compile_template(source)
    budget = template.environment.budget
    budget.deadline = time.monotonic() + MAX_SECONDS
    pieces, size = [], 0
    try:
        for piece in template.generate(**context):
            pieces.append(piece)
            size += len(piece)
            if size > MAX_OUTPUT:
                raise TemplateLimitError(
                    _("its output passed {most:,} characters", most=MAX_OUTPUT)
                )
            budget.check()
    except TemplateLimitError:
        raise
    except RecursionError:
        raise TemplateLimitError(_("it recursed too deeply")) from None
    except MemoryError:
        raise
    except Exception as exc:  # 1/0, a bad call, a missing include, raise_exception(...)
        raise TemplateLimitError(f"{type(exc).__name__}: {exc}") from exc
    finally:
        budget.deadline = float("inf")
    return "".join(pieces)
