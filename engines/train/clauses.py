"""The words around a quote that say who speaks: `瑜大笑曰：`, `玄德问孔明曰：`, `“……”她笑道。`

This module finds the attribution clause of a quote and takes the grammar off it
(connectives before the name, verbs and adverbs after it, the person addressed); who the
name is belongs to `speakers.py`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache

QUOTE = re.compile(r"“([^“”]+)”|「([^「」]+)」")
# A clause ends at these; a sentence at the second set.
CLAUSE_STOP = "，,。！？!?；;：:\n“”「」‘’"
SENTENCE_STOP = "。！？!?\n“”「」"
_VERB_CHARS = "曰道说云言问答叫笑喝叹嚷喊骂吼唤思想"
_VERB = rf"(?:忖度|寻思|思忖)着?|[{_VERB_CHARS}]+"
_SUFFIX = r"(?:了一句|了一声|一声|一句|着|了)?"
_BEFORE = re.compile(
    rf"(?P<clause>[^{CLAUSE_STOP}]{{0,20}}?)(?P<verb>{_VERB}){_SUFFIX}\s*[：:；;，,]?\s*$"
)
# `又问黛玉：`, `黛玉因含笑问他：` — a verb of asking with its object, then the colon.
_BEFORE_ASKING = re.compile(
    rf"(?P<clause>[^{CLAUSE_STOP}]{{0,20}}?)(?P<verb>问|告诉|吩咐|嘱咐|唤|叫)"
    rf"(?P<object>[^{CLAUSE_STOP}]{{1,4}})\s*[：:]\s*$"
)
_AFTER = re.compile(
    rf"[ \t　]*(?P<clause>[^{CLAUSE_STOP}]{{1,20}}?)(?P<verb>{_VERB}){_SUFFIX}"
    r"(?=[。，,！？!?…\s]|$)"
)

# Words before the name: `却说`, `只见`, `于是`, `那` (`那长老`)…
CONNECTIVES = sorted(
    "却说 且说 话说 只见 忽见 但见 只听 于是 原来 当下 随后 随即 此时 这时 那时 当时 次日 后来 "
    "有一回 有一日 过了一会儿 一会儿 须臾 少顷 良久 半晌 忽然 不想 谁知 正说处 正说间 一面 一边 "
    "又 却 便 乃 遂 因 即 忽 只 单 但 也 就 那 这 故 复 再 亦 仍 还 正 且".split(),
    key=len,
    reverse=True,
)
# `遂解佩剑付太史慈曰`: a clause that starts with one of these goes on with the last subject.
CONTINUING = ("遂", "便", "乃", "又", "因", "即", "随即", "于是", "却", "复", "再", "一面", "一边")
# Titles before a name the table may not know: `骁将牛金`, `房东王阿姨`.
TITLES = sorted(
    "骁将 大将 上将 部将 副将 偏将 裨将 谋士 参谋 军师 都督 丞相 将军 太守 房东 老板 老师 先生".split(),
    key=len,
    reverse=True,
)
# What can stand between a name and the verb, or be all there is: `大笑`, `愕然`, `奋然进`…
ADVERBS = sorted(
    "笑 大笑 冷笑 微笑 含笑 笑着 陪笑 陪着笑 怒 大怒 惊 大惊 喜 大喜 叹 叹息 问 答 回 应 低头 点头 "
    "摇头 低声 高声 大声 轻声 厉声 连声 自言自语 故意 故意的 仍然 独自 急 忙 连忙 急忙 口里 心中 "
    "心下 暗 暗暗 在旁 在马上 上前 向前 进 奋然 愕然 欣然 接口 接着 抢着 佯 佯醉 又 便 乃 遂 因 "
    "亦 也 却 再 复 皆 都 齐 同 只 单 还 就 争辩 分辩 说 道 曰".split(),
    key=len,
    reverse=True,
)
# Subjects that are nobody in particular: the clause has a subject, and it is not a name.
NOBODY = tuple(
    sorted(
        "有的 有人 有一人 一人 众人 众将 众官 众 旁人 大家 人们 他们 她们 我们 你们 咱们 那人 这人 "
        "此人 女子 我 你 吾 汝".split(),
        key=len,
        reverse=True,
    )
)
_ADDRESSED = re.compile(
    r"(?:问|谓|对|向|顾|告|告诉|嘱咐|吩咐|唤|叫)(?P<whom>[^问谓对向顾告]{1,4})$"
)


@dataclass
class Clause:
    """The attribution of a quote: the words before the verb, where they start, the verb."""

    text: str
    start: int
    verb: str
    end: int  # where the verb (and its suffix) ends
    after_quote: bool  # `“……”她笑道` rather than `她笑道：“……”`
    addressee_word: str | None = None  # `问孔明` → 孔明, `又问黛玉：` → 黛玉


def clause_before(text: str, quote_start: int) -> Clause | None:
    """`瑜大笑曰：` right before the quote, or None."""
    line_start = text.rfind("\n", 0, quote_start) + 1
    window_start = max(line_start, quote_start - 40)
    tail = text[window_start:quote_start]
    match = _BEFORE.search(tail)
    asking = None if match else _BEFORE_ASKING.search(tail)
    match = match or asking
    if not match:
        return None
    clause = Clause(
        match["clause"],
        window_start + match.start("clause"),
        match["verb"],
        window_start + match.end("verb"),
        after_quote=False,
    )
    if asking:
        clause.addressee_word = asking["object"]
    else:
        clause.addressee_word = addressed(clause.text)
    return clause


def clause_after(text: str, quote_end: int) -> Clause | None:
    """`她笑道。` right after the quote, or None."""
    match = _AFTER.match(text, quote_end, min(len(text), quote_end + 30))
    if not match:
        return None
    return Clause(
        match["clause"],
        match.start("clause"),
        match["verb"],
        match.end("verb"),
        after_quote=True,
        addressee_word=addressed(match["clause"]),
    )


def addressed(clause: str) -> str | None:
    """The one spoken to: `玄德问孔明` → 孔明, `笑谓诸将` → 诸将."""
    match = _ADDRESSED.search(clause)
    return match["whom"] if match else None


@cache
def _leading_words(words: tuple[str, ...]) -> re.Pattern:
    return re.compile("(?:(?:" + "|".join(map(re.escape, words)) + ")(?=.))*", re.S)


def strip_words(text: str, words: list[str]) -> tuple[str, int]:
    """`text` without the leading `words` (repeatedly, longest first, never all of it), and
    how many characters went."""
    cut = _leading_words(tuple(words)).match(text).end()
    return text[cut:], cut


def strip_leading(text: str) -> tuple[str, int]:
    """Without connectives and titles: `却说鲁肃` → 鲁肃, `骁将牛金奋然进` → 牛金奋然进."""
    spaces = len(text) - len(text.lstrip(" \t　"))
    stripped, cut = strip_words(text[spaces:], CONNECTIVES + TITLES)
    return stripped, spaces + cut


# Who speaks, but not by name: left out rather than learned as a name.
ROLES = frozenset(
    "酒家 店家 掌柜 店小二 小二 军士 军校 小校 探子 使者 左右 从人 丫头 丫鬟 婆子 小厮 家人 客人 "
    "客官 和尚 道人 妇人 老者 老人 后生 汉子 大汉 公差 差人 衙役 太监 宫女 长老 先生 众将 众官 "
    "童子 小童 书童 门吏 守门 老爷 夫人 太太 姑娘".split()
)


def speech_word_at(text: str, at: int) -> bool:
    """True when a speech verb or adverb starts at `at` of `text` (`瑜惊曰` at 1: 惊)."""
    return (at < len(text) and text[at] in _VERB_CHARS) or text.startswith(tuple(ADVERBS), at)


def bare_name(clause: str) -> str | None:
    """The clause as a name when it is two or three characters once the verbs and adverbs
    after it are gone (`宝玉笑` → 宝玉), else None; roles (`酒家`) are not names, nor is a
    one-character name with its verb (`瑜惊` is 瑜, no new name)."""
    text = clause.strip(" \t　")
    changed = True
    while changed:
        changed = False
        for word in ADVERBS:
            if text.endswith(word) and len(text) > len(word):
                text, changed = text[: -len(word)], True
                break
    if not 2 <= len(text) <= 3 or text in ROLES or text in ADVERBS or text.startswith(NOBODY):
        return None
    if not re.fullmatch(r"[\u4e00-\u9fffA-Za-z]+", text) or set(text) & set("的了着在把被对向与和"):
        return None
    return text


def continues_subject(clause: str) -> bool:
    """True when the clause names nobody and goes on with the last subject: `又问`, `因笑`,
    `笑谓诸将`, `口里骂`, `很恳切的`, `遂解佩剑付太史慈`."""
    text = re.sub(r"^[\s　]+", "", clause)
    if text.startswith(CONTINUING):
        return True
    whom = addressed(text)
    if whom:
        text = text[: -len(whom) - 1]
    while True:
        rest, cut = strip_words(text, CONNECTIVES + ADVERBS)
        if not cut:
            break
        text = rest
    if text in ADVERBS or text in CONNECTIVES:
        return True
    return text == "" or text.endswith(("的", "地", "着"))


def earlier_clauses(text: str, start: int) -> tuple[list[tuple[str, int]], str]:
    """The clauses of the sentence before `start`, nearest first, each with its start; and
    the character before the sentence ('' at the start of a paragraph or the text)."""
    sentence_start = start
    while sentence_start > 0 and text[sentence_start - 1] not in SENTENCE_STOP:
        sentence_start -= 1
    before = text[sentence_start - 1] if sentence_start > 0 else ""
    clauses = []
    piece_start = sentence_start
    for match in re.finditer(r"[，,；;：:]", text[sentence_start:start]):
        end = sentence_start + match.start()
        if text[piece_start:end].strip():
            clauses.append((text[piece_start:end], piece_start))
        piece_start = sentence_start + match.end()
    return clauses[::-1], before


# A clause starting with one of these (past connectives and time words) has no subject of its
# own: `次日至馆驿中见孔明`, `辞了玄德`, `引孔明至幕下`.
_VERB_FIRST = set("至到往回入出进见引领带把与同随辞起坐走行转登奔望")


def starts_with_verb(clause: str) -> bool:
    stripped, _ = strip_leading(clause)
    return stripped[:1] in _VERB_FIRST


def previous_sentence_clauses(
    text: str, start: int, *, across_paragraphs: bool = False
) -> list[tuple[str, int]]:
    """The clauses of the sentence before the one holding `start`, nearest first: in the
    same paragraph, or also the last sentence of the paragraph before."""
    sentence_start = start
    while sentence_start > 0 and text[sentence_start - 1] not in SENTENCE_STOP:
        sentence_start -= 1
    end = sentence_start - 1
    if across_paragraphs and end >= 0 and text[end] == "\n":
        while end > 0 and text[end - 1] in " \t　\r":
            end -= 1
        end -= 1
    if end < 0 or text[end] not in "。！？!?":
        return []
    return clauses_ending_at(text, end)


# ----- lines with no speech verb: introduced by an action, or followed by one -----

# Kin and companions between a possessive pronoun and a name: `她哥哥沈明`, `他同桌刘芳芳`.
KIN = sorted(
    "哥哥 姐姐 弟弟 妹妹 父亲 母亲 爸爸 妈妈 儿子 女儿 丈夫 妻子 老婆 老公 爷爷 奶奶 外婆 外公 "
    "叔叔 阿姨 舅舅 姑姑 表哥 表姐 表妹 表弟 同桌 同学 同事 朋友 邻居 男友 女友 师父 徒弟 哥 姐 弟 妹".split(),
    key=len,
    reverse=True,
)
# `坐在后排的赵小军`, `同桌的刘芳芳`: a short modifier ending in 的 before the subject.
MODIFIER = re.compile(r"[^，,。！？!?“”「」的]{1,8}的")
# A colon after these introduces writing, not speech: `纸条上写着：`, `屏幕上显示：`.
_WRITING = re.compile("写着|写道|写的是|印着|贴着|刻着|标着|显示|上面是|内容是|如下")
# In the narration right after a line, these are the listener's, not the speaker's.
LISTENER = re.compile("听了|听罢|听完|听见|听到|闻言|闻听|一听|愣|没接话|不接话|没说话|不说话")
# A person said to keep quiet is not the one who speaks next.
SILENT = re.compile(
    "没接话|不接话|没说话|不说话|没吭声|不吭声|不语|没有回答|不回答|沉默|什么也没说"
)


def colon_lead(text: str, quote_start: int) -> tuple[list[tuple[str, int]], bool] | None:
    """`沈青在床边坐下，替他掖好被角：“……”`: the clauses of the sentence the colon ends,
    nearest first, and whether it introduces writing rather than speech; None when the
    quote does not follow a colon in its paragraph."""
    colon = quote_start - 1
    while colon >= 0 and text[colon] in " \t　":
        colon -= 1
    if colon < 0 or text[colon] not in "：:":
        return None
    clauses = clauses_ending_at(text, colon)
    return clauses, bool(_WRITING.search(clauses[0][0]))


def clauses_ending_at(text: str, end: int) -> list[tuple[str, int]]:
    """The clauses of the sentence that ends at `end`, nearest first, each with its start."""
    clauses, _ = earlier_clauses(text, end)
    low = max(0, end - 200)  # a clause is never this long: rfind need not scan the novel
    last_start = max(text.rfind(mark, low, end) for mark in "，,；;：:" + SENTENCE_STOP) + 1
    last_start = max(last_start, low)
    return [(text[last_start:end], last_start), *clauses]


def sentence_after(text: str, quote_end: int) -> tuple[str, int] | None:
    """`“……”赵小军的声音更小了。`: the narration after a quote up to the end of its sentence,
    when it is a whole sentence in the quote's paragraph (not a beat leading into another
    quote of the same sentence), with where it starts."""
    match = re.compile(r"[^。！？!?\n“”「」]{2,40}(?:[。！？!?]|$|(?=\n))").match(text, quote_end)
    if not match or text[quote_end] in "，,。：:；;\n":
        return None
    return match.group(), quote_end


def sentence_before(text: str, quote_start: int) -> tuple[str, int] | None:
    """`下课后，周老师把赵小军叫到办公室。“……”`: the narration sentence right before a quote
    in its paragraph, with where it starts; None when the quote follows anything else."""
    end = quote_start
    if end == 0 or text[end - 1] not in "。！？!?":
        return None
    start = end - 1
    while start > 0 and text[start - 1] not in SENTENCE_STOP:
        start -= 1
    if start and text[start - 1] in "”」":
        return None  # right after another line: a beat, not a lead-in
    return text[start : end - 1], start
