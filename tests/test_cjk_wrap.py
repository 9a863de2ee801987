"""Line breaking in the transcript by the basic CJK (kinsoku) rules: no line starts with
closing punctuation, none ends with opening punctuation, every line within the width."""

from __future__ import annotations

import pytest
import textual.content
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from rich._wrap import divide_line as rich_divide_line
from rich.cells import cell_len, get_character_cell_size
from textual.content import Content
from textual.geometry import Region
from textual.style import Style
from textual.visual import RenderOptions
from textual.widgets._markdown import MarkdownBlock

from engines.fake import FakeEngine
from sessions.store import Store
from tests.conftest import wait_until
from tui.app import make_app
from tui.widgets.cjk_wrap import (
    ASCII_CLOSING,
    CLOSING,
    OPENING,
    KinsokuContent,
    TranscriptMarkdown,
    kinsoku_breaks,
)
from tui.widgets.message_view import MessageView

PASSAGE = (
    "子曰：「学而时习之，不亦说乎？有朋自远方来，不亦乐乎？人不知而不愠，不亦君子乎？」"
    "诸葛亮曰：“亮闻：‘天下大势，分久必合，合久必分。’今东风已至，将军何不速发兵？”"
    "玄德问曰：「此计可行否？」孔明笑曰：（此乃天时也）……《三国演义》云：【赤壁之战】，"
    "曹操败走华容道。Cao Cao fled, 他说: 好!走吧."
)
DIALOGUE = (
    "宝玉听了，忙问：“妹妹可曾读书？”黛玉道：“不曾读，只上了一年学，些须认得几个字。”"
    "宝玉又道：“妹妹尊名是那两个字？”黛玉便说了名。宝玉又问表字，黛玉道：“无字。”"
    "宝玉笑道：“我送妹妹一妙字，莫若‘颦颦’二字极妙。”"
)


def lines_of(text: str, breaks: list[int]) -> list[str]:
    return [text[a:b] for a, b in zip([0, *breaks], [*breaks, len(text)], strict=True)]


def violations(lines: list[str]) -> list[tuple[str, str]]:
    """Pairs of neighbouring lines where the second starts with closing punctuation or the
    first ends with opening punctuation."""
    bad = []
    for before, after in zip(lines, lines[1:], strict=False):
        if not before or not after or before[-1].isspace():
            continue
        starts_closed = after[0] in CLOSING or (
            after[0] in ASCII_CLOSING and get_character_cell_size(before[-1]) == 2
        )
        if starts_closed or before[-1] in OPENING:
            bad.append((before, after))
    return bad


@pytest.mark.parametrize(
    ("text", "width", "expected"),
    [
        # a line would start with `，`: the character before it goes down with it
        ("天下大势，分久必合", 8, ["天下大", "势，分久", "必合"]),
        # would start with `。`
        ("合久必分。天下", 8, ["合久必", "分。天下"]),
        # would start with `」`, then `。」`: carried down with the character before them
        ("他说「好了」。走吧", 10, ["他说「好", "了」。走吧"]),
        ("四个汉字。」后来", 8, ["四个汉", "字。」后", "来"]),
        # a line would end with `「`: it goes down to the line it opens
        ("一二三「四五」", 8, ["一二三", "「四五」"]),
        ("ab（cd）", 4, ["ab", "（c", "d）"]),
        # ASCII punctuation right after a CJK character counts as closing
        ("你好你好,再见", 8, ["你好你", "好,再见"]),
        ("你好你好!", 8, ["你好你", "好!"]),
        # a good break needs no change
        ("天下大势分久必合", 8, ["天下大势", "分久必合"]),
    ],
)
def test_kinsoku_moves_breaks_off_punctuation(text, width, expected):
    assert lines_of(text, kinsoku_breaks(text, width)) == expected
    assert violations(lines_of(text, kinsoku_breaks(text, width))) == []


@pytest.mark.parametrize(
    "text",
    [
        "The quick brown fox jumps over the lazy dog, again and again (and again).",
        "Well... said he: no! Never; (never) [bold]not[/bold] a chance, she replied.",
        "supercalifragilisticexpialidocious,antidisestablishmentarianism.",
        "a b c d e f g h i j k l m n o p , . ; : ! ?",
    ],
)
@pytest.mark.parametrize("width", [1, 2, 3, 5, 8, 13, 20, 40])
def test_latin_text_wraps_exactly_as_textual_wraps_it(text, width):
    assert kinsoku_breaks(text, width) == rich_divide_line(text, width)


@pytest.mark.parametrize(
    "text", ["。。。。。。。。", "，。、：；！？）」』”’》〉】…", "「「「「「「"]
)
@pytest.mark.parametrize("width", [1, 2, 3, 4, 6])
def test_a_line_of_only_punctuation_keeps_the_width_and_ends(text, width):
    breaks = kinsoku_breaks(text, width)
    assert breaks == sorted(set(breaks)) and all(0 < b < len(text) for b in breaks)
    assert "".join(lines_of(text, breaks)) == text
    assert all(cell_len(line) <= max(width, 2) for line in lines_of(text, breaks))


@pytest.mark.parametrize("width", [1, 2])
def test_widths_of_one_and_two_cells_never_loop_or_overflow(width):
    breaks = kinsoku_breaks(PASSAGE, width)
    lines = lines_of(PASSAGE, breaks)
    assert "".join(lines) == PASSAGE
    # A wide character alone on a line is the only thing allowed past a 1-cell width.
    assert all(cell_len(line) <= width or len(line) == 1 for line in lines)


@pytest.mark.parametrize("width", range(6, 61))
def test_a_chinese_passage_obeys_the_rules_at_every_width(width):
    """From 6 cells on: its longest unbreakable run (`乎？」`, `也）……`) is 6 cells; at a
    narrower width the rules give way to the width."""
    lines = lines_of(PASSAGE, kinsoku_breaks(PASSAGE, width))
    assert "".join(lines) == PASSAGE
    assert all(cell_len(line.rstrip()) <= width for line in lines)
    assert violations(lines) == []


def test_the_passage_does_break_badly_without_the_rules():
    """The widths tested above are ones where Textual's own fold goes wrong."""
    bad_widths = [
        w for w in range(6, 61) if violations(lines_of(PASSAGE, rich_divide_line(PASSAGE, w)))
    ]
    assert len(bad_widths) > 30


ALPHABET = "天下大势分久必合ab cd，。、！？」』）「『（“”,.!"


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=ALPHABET, max_size=80), st.integers(min_value=1, max_value=30))
def test_any_text_keeps_every_character_in_order_within_the_width(text, width):
    breaks = kinsoku_breaks(text, width)
    # In order (rich itself repeats a break now and then at width 1: an empty line).
    assert breaks == sorted(breaks) and all(0 < b < len(text) for b in breaks)
    lines = lines_of(text, breaks)
    assert "".join(lines) == text
    assert all(cell_len(line.rstrip()) <= max(width, 2) for line in lines)


@settings(max_examples=300, deadline=None)
@given(
    # the skin-tone modifier only where it belongs, after its emoji (a stray one on `?` is a
    # grapheme cluster rich cuts apart and we keep whole)
    st.lists(st.sampled_from([*"abc XYZ,.!?()[]天下大势分久必合👍é", "👍🏽"]), max_size=120).map(
        "".join
    ),
    st.integers(min_value=2, max_value=30),
)
def test_text_without_cjk_punctuation_wraps_as_textual_wraps_it(text, width):
    """kinsoku_breaks follows rich's divide_line step for step where the rules have nothing
    to say (ASCII punctuation counts only after a CJK character, so none here after one)."""
    # a modifier joins its emoji, so the character before `,` in `👍🏽,` is the wide 👍
    bases = text.replace("🏽", "")
    pairs = zip(bases, bases[1:], strict=False)
    assume(not any(p in ASCII_CLOSING and get_character_cell_size(c) == 2 for c, p in pairs))
    assert kinsoku_breaks(text, width) == rich_divide_line(text, width)


def test_ascii_punctuation_after_a_modified_emoji_does_not_start_a_line():
    """`,` after 👍🏽 follows a wide character (the modifier is part of it): rich would put the
    comma alone at the head of the next line; the rule carries the emoji down with it."""
    assert rich_divide_line("aaa天👍🏽,", 7) == [6]
    assert kinsoku_breaks("aaa天👍🏽,", 7) == [4]


def test_textual_still_wraps_content_through_the_function_we_replace():
    """cjk_wrap replaces `textual.content.divide_line`; if Textual stops calling it (a new
    version), this fails instead of the rules silently doing nothing."""
    assert "divide_line" in Content._wrap_and_format.__code__.co_names
    assert textual.content.divide_line.__module__ == "tui.widgets.cjk_wrap"
    text = "一二三四，五六七"

    def rendered(content: Content) -> list[str]:
        options = RenderOptions(Style.parse, {})
        return [strip.text.rstrip() for strip in content.render_strips(8, None, Style(), options)]

    assert rendered(Content(text)) == ["一二三四", "，五六七"]
    assert rendered(KinsokuContent(text)) == ["一二三", "四，五六", "七"]
    assert Content(text).get_height({}, 8) == 2
    assert KinsokuContent(text).get_height({}, 8) == 3
    # The rules apply only while a KinsokuContent is measured or drawn.
    assert rendered(Content(text)) == ["一二三四", "，五六七"]


def test_kinsoku_content_is_plain_text_and_keeps_its_styles():
    content = Content("[bold]东风[/bold]，已至", spans=[])
    assert KinsokuContent.of(content).plain == "[bold]东风[/bold]，已至"
    styled = Content.from_markup("[bold]东风[/bold]，已至")
    assert KinsokuContent.of(styled).spans == styled.spans


def rendered_lines(block: MarkdownBlock) -> list[str]:
    strips = block.render_lines(Region(0, 0, block.size.width, block.size.height))
    return [strip.text.rstrip() for strip in strips]


@pytest.mark.parametrize(
    ("size", "hide_sessions"),
    [((80, 24), False), ((80, 24), True), ((50, 24), False), ((40, 24), True)],
)
async def test_a_chinese_reply_in_the_transcript_has_no_line_starting_with_punctuation(
    tmp_path, size, hide_sessions
):
    reply = f"{PASSAGE}{DIALOGUE}\n\n# 第一回　{PASSAGE[:40]}\n\n- {PASSAGE[40:120]}\n\n> {PASSAGE[:60]}"
    store = Store(tmp_path / "c.db")
    app = make_app(store=store, engine=FakeEngine([reply]))
    async with app.run_test(size=size) as pilot:
        if hide_sessions:
            await pilot.press("ctrl+b")  # the transcript gets the whole width
        await pilot.click("#input")
        await pilot.press("h", "i", "enter")
        await wait_until(
            pilot,
            lambda: not app.chat.generating and len(app.chat.query(MessageView)) == 2,
        )
        reply_view = app.chat.query(MessageView).last()
        await wait_until(pilot, lambda: reply_view.body.source == reply)
        await pilot.pause()
        body = reply_view.body
        assert isinstance(body, TranscriptMarkdown)
        blocks = [b for b in body.query(MarkdownBlock) if isinstance(b.visual, KinsokuContent)]
        assert len(blocks) == 4  # paragraph, header, list item's and quote's paragraphs
        for block in blocks:
            lines = rendered_lines(block)
            text = block.visual.plain
            assert "".join(lines).replace(" ", "") == text.replace(" ", "")  # nothing lost
            assert violations([line.strip() for line in lines]) == []
            assert all(cell_len(line) <= block.size.width for line in lines)
        # Textual's own fold would have started some line of this width with punctuation.
        text, width = blocks[0].visual.plain, blocks[0].size.width
        assert violations(lines_of(text, rich_divide_line(text, width)))


async def test_markup_in_a_reply_still_shows_as_text(tmp_path):
    reply = "诸葛亮曰：[bold]东风[/bold]已至，[red]将军[/red]速发兵。"
    store = Store(tmp_path / "c.db")
    app = make_app(store=store, engine=FakeEngine([reply]))
    async with app.run_test(size=(30, 24)) as pilot:
        await pilot.press("ctrl+b")
        await pilot.click("#input")
        await pilot.press("h", "i", "enter")
        await wait_until(pilot, lambda: len(app.chat.query(MessageView)) == 2)
        reply_view = app.chat.query(MessageView).last()
        await wait_until(pilot, lambda: reply_view.body.source == reply)
        await pilot.pause()
        (block,) = [b for b in reply_view.body.query(MarkdownBlock)]
        lines = [line.strip() for line in rendered_lines(block)]
        assert len(lines) > 1 and "".join(lines) == reply
        assert violations(lines) == []
