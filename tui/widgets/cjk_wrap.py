"""Line breaking by the basic CJK rules (kinsoku) for the transcript's Markdown.

A run of Chinese text has no spaces, so Textual folds it at whatever cell the width
falls on and a line can start with `，` or `。`. `kinsoku_breaks` moves such a break
back a character or two: no line starts with closing punctuation (`，。」…`, or `,.!?)`
right after a CJK character) and none ends with opening punctuation (`「（“…`). The
carried characters go down to the next line, so every line stays within the width.

Textual has no hook for the wrap of a `Content`: `Content._wrap_and_format` calls the
`divide_line` it imported from `rich._wrap`. `install()` puts a wrapper in its place, in
`textual.content` only, which applies the rules while a `KinsokuContent` is measured or
rendered and is rich's `divide_line` everywhere else. `TranscriptMarkdown` is a `Markdown`
whose paragraphs and headers hold `KinsokuContent`. tests/test_cjk_wrap.py fails if
Textual stops calling `textual.content.divide_line`.
"""

from __future__ import annotations

import unicodedata
from contextvars import ContextVar

import textual.content
from rich._wrap import divide_line as rich_divide_line
from rich._wrap import words
from rich.cells import cell_len, split_graphemes
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

    rich's `divide_line`, step for step, but for a word longer than the width (a run of CJK
    text) it is folded by `_fold_word` instead of `chop_cells`. Breaks between words always
    follow a space, which the rules leave alone."""
    breaks: list[int] = []
    cell_offset = 0
    for start, end, word in words(text):
        word_length = cell_len(word.rstrip())
        if width - cell_offset >= word_length:
            cell_offset += cell_len(word)
        elif word_length > width:
            if fold:
                starts, cell_offset = _fold_word(text, start, end, width)
                breaks.extend(line_start for line_start in starts if line_start)
            else:
                if start:
                    breaks.append(start)
                cell_offset = cell_len(word)
        elif cell_offset and start:
            breaks.append(start)
            cell_offset = cell_len(word)
    return breaks


def _fold_word(text: str, start: int, end: int, width: int) -> tuple[list[int], int]:
    """Fold `text[start:end]` into lines of `width` cells, grapheme by grapheme: where a line
    would start badly, the last graphemes of the line before go down with it (when they fit).
    Returns where each line starts and the cells of the last line."""
    spans, _ = split_graphemes(text[start:end])
    starts = [start]
    first = 0  # the span that starts the current line
    cells = 0
    for index, (_, _, size) in enumerate(spans):
        if cells + size > width and index > first:
            cut, carried = index, 0
            while _bad_break(text, start + spans[cut][0]):
                cut -= 1
                carried += spans[cut][2]
                if cut == first or carried + size > width:
                    cut, carried = index, 0  # no good place: the width wins
                    break
            starts.append(start + spans[cut][0])
            first, cells = cut, carried
        cells += size
    return starts, cells


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
