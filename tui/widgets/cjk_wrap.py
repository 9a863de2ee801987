"""Line breaking by the basic CJK rules (kinsoku) for the transcript's Markdown.

A run of Chinese text has no spaces, so Textual folds it at whatever cell the width
falls on and a line can start with `，` or `。`. `kinsoku_breaks` moves such a break
back a character or two: no line starts with closing punctuation (`，。」…`, or `,.!?)`
right after a CJK character) and none ends with opening punctuation (`「（“…`). The
carried characters go down to the next line, so every line stays within the width.

Textual has no hook for the wrap of a `Content`: `Content._wrap_and_format` calls the
`divide_line` it imported from `rich._wrap`. `install()` puts a wrapper in its place, in
`textual.content` only, which applies the rules while a `KinsokuContent` is measured or
rendered and is Textual's own fold everywhere else. `TranscriptMarkdown` is a `Markdown`
whose paragraphs and headers hold `KinsokuContent`. tests/test_cjk_wrap.py fails if
Textual stops calling `textual.content.divide_line`.
"""

from __future__ import annotations

import unicodedata
from contextvars import ContextVar

import textual.content
from rich._wrap import divide_line as rich_divide_line
from textual.content import Content
from textual.widgets import Markdown
from textual.widgets._markdown import MarkdownBlock, MarkdownParagraph

# Never at the start of a line.
CLOSING = frozenset("，。、．：；！？）］｝〕〉》」』】〙〗〟’”…‥")
# Never at the start of a line when right after a CJK character (`你好,` written with ASCII).
ASCII_CLOSING = frozenset(",.;:!?)]}")
# Never at the end of a line.
OPENING = frozenset("（［｛〔〈《「『【〘〖〝‘“")


def _is_wide(char: str) -> bool:
    return unicodedata.east_asian_width(char) in "WF"


def _bad_break(text: str, index: int) -> bool:
    """Whether a line may not begin at `index` of `text` (0 < index < len(text))."""
    before, after = text[index - 1], text[index]
    if before.isspace():
        return False  # a break the writer made with a space stays where it is
    if after in CLOSING or before in OPENING:
        return True
    return after in ASCII_CLOSING and _is_wide(before)


def kinsoku_breaks(text: str, width: int, fold: bool = True) -> list[int]:
    """Where to break one line of `text` (indices, as rich's `divide_line` gives them) so it
    fits `width` cells and no line starts with closing or ends with opening punctuation.

    A break that would do that moves back to the nearest good place in the same line (the
    characters after it go down to the next line) and the rest is wrapped again from there;
    where no good place exists (a line of only punctuation), rich's break stays."""
    breaks = rich_divide_line(text, width, fold)
    result: list[int] = []
    line_start = 0
    position = 0
    while position < len(breaks):
        index = breaks[position]
        if _bad_break(text, index):
            better = index - 1
            while better > line_start and _bad_break(text, better):
                better -= 1
            if better > line_start:
                result.append(better)
                line_start = better
                rest = rich_divide_line(text[better:], width, fold)
                breaks = [better + offset for offset in rest]
                position = 0
                continue
        result.append(index)
        line_start = index
        position += 1
    return result


_kinsoku_on: ContextVar[bool] = ContextVar("kinsoku_on", default=False)


def _divide_line(text: str, width: int, fold: bool = True) -> list[int]:
    """`textual.content.divide_line`: the kinsoku rules for a `KinsokuContent`, rich's
    fold for anything else."""
    if _kinsoku_on.get():
        return kinsoku_breaks(text, width, fold)
    return rich_divide_line(text, width, fold)


def install() -> None:
    """Put `_divide_line` where Textual's Content looks up its wrap (once; idempotent)."""
    textual.content.divide_line = _divide_line


class KinsokuContent(Content):
    """Content that Textual wraps by the kinsoku rules."""

    @classmethod
    def of(cls, content: Content) -> KinsokuContent:
        if isinstance(content, KinsokuContent):
            return content
        return cls(content.plain, list(content.spans), strip_control_codes=False)

    def get_height(self, rules, width: int) -> int:
        token = _kinsoku_on.set(True)
        try:
            return super().get_height(rules, width)
        finally:
            _kinsoku_on.reset(token)

    def render_strips(self, width, height, style, options):
        token = _kinsoku_on.set(True)
        try:
            return super().render_strips(width, height, style, options)
        finally:
            _kinsoku_on.reset(token)


class KinsokuBlock(MarkdownBlock):
    """A Markdown block whose text is wrapped by the kinsoku rules."""

    def set_content(self, content: Content) -> None:
        super().set_content(KinsokuContent.of(content))


class KinsokuParagraph(KinsokuBlock, MarkdownParagraph):
    pass


def _kinsoku_blocks() -> dict[str, type[MarkdownBlock]]:
    blocks = dict(Markdown.BLOCKS)
    blocks["paragraph_open"] = KinsokuParagraph
    for name in ("h1", "h2", "h3", "h4", "h5", "h6"):
        header = Markdown.BLOCKS[name]
        blocks[name] = type(f"Kinsoku{header.__name__}", (KinsokuBlock, header), {})
    return blocks


class TranscriptMarkdown(Markdown):
    """The transcript's Markdown: paragraphs and headers break lines by the kinsoku rules."""

    BLOCKS = _kinsoku_blocks()


install()
