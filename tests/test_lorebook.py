"""Lorebook activation as SillyTavern's checkWorldInfo does it, as pure units over a table of
cases; reading card entries (convertCharacterBook) and World Info files (both ways)."""

import json
import random
import time

import pytest

from engines.base import GenerationParams
from sessions.cards import BookEntry, CharacterBook, card_from_dict, load_card
from sessions.lore_keys import REGEX_TURN_BUDGET_S, RegexClock, key_matches
from sessions.lorebook import (
    Logic,
    LoreEntry,
    LoreRules,
    Position,
    activate,
    book_entries,
    book_rules,
    lore_entry,
    turn_seed,
)
from sessions.lorebook_files import (
    LorebookError,
    LorebookFolder,
    book_from_world_info,
    world_info_from_book,
)
from sessions.models import Role


def chars(text: str) -> int:  # a token counter for budgets: one per character
    return len(text)


DEFAULT_RULES = LoreRules()
PARAMS = GenerationParams(max_new_tokens=64)


def fired(entries, recent, *, budget=10_000, rules=DEFAULT_RULES, rng=None, groups=None):
    result = activate(
        groups or [entries], recent, count_tokens=chars, budget=budget, rules=rules, rng=rng
    )
    return [entry.content for entry in result]


def E(content, keys=(), **fields):  # noqa: N802  an entry, briefly
    return LoreEntry(content=content, keys=tuple(keys), **fields)


# (case, entries, recent messages newest first, rules, what fires in prompt order)
CASES = [
    ("substring, case-insensitive", [E("A", ["Dragon"])], ["a dragonfly"], LoreRules(), ["A"]),
    ("case-sensitive entry", [E("A", ["Dragon"], case_sensitive=True)], ["a dragon"],
     LoreRules(), []),
    ("case-sensitive rules", [E("A", ["Dragon"])], ["a dragon"], LoreRules(case_sensitive=True),
     []),
    ("whole words: not inside a word", [E("A", ["dragon"], whole_words=True)], ["dragonfly"],
     LoreRules(), []),
    ("whole words: between punctuation", [E("A", ["dragon"], whole_words=True)],
     ["the dragon!"], LoreRules(), ["A"]),
    ("whole words: a phrase is a substring", [E("A", ["red dragon"], whole_words=True)],
     ["a red dragonfly"], LoreRules(), ["A"]),
    ("whole words never split Chinese", [E("A", ["赤壁"], whole_words=True)],
     ["先生以为赤壁之战如何"], LoreRules(), ["A"]),
    ("Chinese key, Chinese text", [E("A", ["诸葛亮"])], ["孔明即诸葛亮也"], LoreRules(), ["A"]),
    ("regex key", [E("A", [r"/dra(g|k)on\d+/i"])], ["DRAKON7"], LoreRules(), ["A"]),
    ("regex key is case-sensitive without i", [E("A", ["/Dragon/"])], ["dragon"], LoreRules(),
     []),
    ("a bad regex is plain text", [E("A", ["/[unclosed/"])], ["x /[unclosed/ y"], LoreRules(),
     ["A"]),
    ("constant", [E("A", [], constant=True)], ["nothing"], LoreRules(), ["A"]),
    ("disabled", [E("A", ["x"], enabled=False)], ["x"], LoreRules(), []),
    ("no keys, not constant", [E("A")], ["x"], LoreRules(), []),
    ("scan depth 2: the third message back is not read", [E("A", ["old"])],
     ["new", "newer", "old"], LoreRules(), []),
    ("entry scan depth reaches further", [E("A", ["old"], scan_depth=3)],
     ["new", "newer", "old"], LoreRules(), ["A"]),
    ("scan depth 0 reads nothing", [E("A", ["new"], scan_depth=0)], ["new"], LoreRules(), []),
    ("AND_ANY", [E("A", ["k"], selective=True, secondary_keys=("s1", "s2"))], ["k s2"],
     LoreRules(), ["A"]),
    ("AND_ANY misses", [E("A", ["k"], selective=True, secondary_keys=("s1",))], ["k"],
     LoreRules(), []),
    ("NOT_ALL", [E("A", ["k"], selective=True, secondary_keys=("s1", "s2"),
                   logic=Logic.NOT_ALL)], ["k s1"], LoreRules(), ["A"]),
    ("NOT_ALL misses when all are there", [E("A", ["k"], selective=True,
     secondary_keys=("s1", "s2"), logic=Logic.NOT_ALL)], ["k s1 s2"], LoreRules(), []),
    ("NOT_ANY", [E("A", ["k"], selective=True, secondary_keys=("s1",), logic=Logic.NOT_ANY)],
     ["k"], LoreRules(), ["A"]),
    ("NOT_ANY misses", [E("A", ["k"], selective=True, secondary_keys=("s1",),
                          logic=Logic.NOT_ANY)], ["k s1"], LoreRules(), []),
    ("AND_ALL", [E("A", ["k"], selective=True, secondary_keys=("s1", "s2"),
                   logic=Logic.AND_ALL)], ["k s1 s2"], LoreRules(), ["A"]),
    ("AND_ALL misses", [E("A", ["k"], selective=True, secondary_keys=("s1", "s2"),
                          logic=Logic.AND_ALL)], ["k s1"], LoreRules(), []),
    ("secondary keys need selective", [E("A", ["k"], secondary_keys=("s1",))], ["k"],
     LoreRules(), ["A"]),
    ("prompt order: lower insertion order first",
     [E("late", ["k"], order=200), E("early", ["k"], order=10)], ["k"], LoreRules(),
     ["early", "late"]),
    ("no recursion by default", [E("A from-a", ["k"]), E("B", ["from-a"])], ["k"],
     LoreRules(), ["A from-a"]),
    ("recursion: lore fires lore", [E("A from-a", ["k"], order=1), E("B", ["from-a"], order=2)],
     ["k"], LoreRules(recursive=True), ["A from-a", "B"]),
    ("equal orders: the later activated goes first, as SillyTavern builds it",
     [E("A from-a", ["k"]), E("B", ["from-a"])], ["k"], LoreRules(recursive=True),
     ["B", "A from-a"]),
    ("prevent_recursion: its text is not scanned",
     [E("A from-a", ["k"], prevent_recursion=True), E("B", ["from-a"])], ["k"],
     LoreRules(recursive=True), ["A from-a"]),
    ("exclude_recursion: fires only from the chat",
     [E("A from-a", ["k"]), E("B", ["from-a"], exclude_recursion=True)], ["k"],
     LoreRules(recursive=True), ["A from-a"]),
    ("delay_until_recursion: not from the chat", [E("B", ["k"], delay_until_recursion=1)],
     ["k"], LoreRules(), []),
    ("delay_until_recursion: from lore", [E("A k2", ["k"]), E("B", ["k2"], order=101,
     delay_until_recursion=1)], ["k"], LoreRules(recursive=True), ["A k2", "B"]),
    ("probability 0 never fires", [E("A", ["k"], probability=0)], ["k"], LoreRules(), []),
]  # fmt: skip


@pytest.mark.parametrize(
    ("entries", "recent", "rules", "expected"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_activation(entries, recent, rules, expected):
    assert fired(entries, recent, rules=rules) == expected


def test_keys_expand_macros_before_matching():
    entry = E("A", ["{{char}}"])
    result = activate(
        [[entry]], ["诸葛亮曰"], count_tokens=chars, budget=100,
        expand=lambda text: text.replace("{{char}}", "诸葛亮"),
    )  # fmt: skip
    assert result == [entry]


def test_the_budget_is_filled_in_priority_order_and_stops_at_the_first_that_does_not_fit():
    entries = [E("x" * 10, ["k"], order=3), E("y" * 10, ["k"], order=2), E("z", ["k"], order=1)]
    # each costs its length + 1 (the newline SillyTavern joins with): 11, 11, 2
    assert fired(entries, ["k"], budget=23) == ["y" * 10, "x" * 10]
    assert fired(entries, ["k"], budget=22) == ["x" * 10]  # reaching the budget is over it
    assert fired(entries, ["k"], budget=5) == []  # the first that does not fit ends it all


def test_the_session_books_come_before_the_characters_in_the_budget():
    session = [E("session", ["k"], order=1)]
    character = [E("character", ["k"], order=500)]
    result = fired(None, ["k"], budget=10, groups=[session, character])
    assert result == ["session"]


def test_the_budget_is_a_percentage_of_the_context_with_a_cap():
    assert LoreRules().budget(4096) == 1024
    assert LoreRules(budget_percent=10, budget_cap=300).budget(8192) == 300
    assert LoreRules(budget_percent=0).budget(100) == 1


def test_probability_rolls_are_seeded_so_a_regenerate_fires_the_same():
    entries = [E(f"e{i}", ["k"], probability=50) for i in range(40)]
    first = fired(entries, ["k"], rng=random.Random(turn_seed(7, 12)))
    again = fired(entries, ["k"], rng=random.Random(turn_seed(7, 12)))
    other = fired(entries, ["k"], rng=random.Random(turn_seed(7, 14)))
    assert first == again and first != other
    assert 8 < len(first) < 32  # about half


HOSTILE_REGEX = "/(a|aa)+$b/"  # catastrophic backtracking on "aaaa…!" (the regex module's too)


@pytest.mark.timeout(10)
def test_a_catastrophic_regex_key_gives_up_instead_of_hanging():
    start = time.perf_counter()
    assert not key_matches("a" * 40 + "!", HOSTILE_REGEX, case_sensitive=False, whole_words=False)
    entries = [E("HOSTILE", [HOSTILE_REGEX], book="坏书"), E("FINE", ["/a{3}!/"], book="好书")]
    clock = RegexClock()
    result = activate([entries], ["a" * 40 + "!"], count_tokens=chars, budget=99, clock=clock)
    assert [entry.content for entry in result] == ["FINE"]
    assert clock.slow_books == ["坏书"]  # it did run out of time: the key is truly hostile
    assert time.perf_counter() - start < 2


@pytest.mark.timeout(10)
def test_one_activations_regex_keys_share_a_time_budget_then_count_as_not_matching():
    hostile = [E(f"H{i}", [HOSTILE_REGEX], book="坏书") for i in range(200)]
    late = E("LATE", ["/a!/"], book="晚书", order=0)  # sorted last: after the budget is spent
    plain = E("PLAIN", ["aaa"], book="晚书", order=0)  # a plain key is no regex: it still fires
    clock = RegexClock()
    start = time.perf_counter()
    result = activate([[*hostile, late, plain]], ["a" * 40 + "!"], count_tokens=chars,
                      budget=10_000, clock=clock)  # fmt: skip
    elapsed = time.perf_counter() - start
    assert [entry.content for entry in result] == ["PLAIN"]
    assert elapsed < REGEX_TURN_BUDGET_S + 0.5, elapsed  # not 200 × 50 ms
    assert clock.slow_books == ["坏书", "晚书"]
    # a fresh activation gets a fresh budget: the same key matches again
    assert fired([late], ["a" * 40 + "!"]) == ["LATE"]


def short(value) -> str:
    return repr(value)[:12]


# Every number an entry carries, garbage included: what it reads as (SillyTavern treats a bad
# number as the field's default; Python's json reads Infinity, NaN and 1e999 as floats).
GARBAGE = [float("nan"), float("inf"), float("-inf"), json.loads("1e999"), "abc", None, [3],
           {"a": 1}, True, 10**400, -(10**400)]  # fmt: skip
FIELD_DEFAULTS = [
    ("depth", "depth", 4),
    ("scan_depth", "scan_depth", None),
    ("probability", "probability", 100),
    ("selectiveLogic", "logic", Logic.AND_ANY),
    ("position", "position", Position.AT_DEPTH),
    ("role", "role", "system"),
    ("delay_until_recursion", "delay_until_recursion", 0),
]


@pytest.mark.parametrize(("field", "attribute", "default"), FIELD_DEFAULTS)
@pytest.mark.parametrize("value", GARBAGE, ids=short)
def test_a_bad_number_in_an_entry_reads_as_a_sane_value_never_an_error(
    field, attribute, default, value
):
    lore = lore_entry(BookEntry(keys=["k"], content="c", extensions={field: value}))
    got = getattr(lore, attribute)
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 10**300:
        # a huge whole number is a number: clamped into the field's range, never floated
        expected = {
            "depth": 10_000 if value > 0 else 0, "scan_depth": 1000 if value > 0 else None,
            "probability": 100 if value > 0 else 0, "delay_until_recursion": 1000 * (value > 0),
        }.get(field, default)  # fmt: skip
        assert got == expected
    elif field == "delay_until_recursion" and value is True:
        assert got == 1  # SillyTavern's `true`: from the first recursion on
    else:
        assert got == default


@pytest.mark.parametrize(
    ("field", "value", "attribute", "expected"),
    [("depth", -5, "depth", 0), ("depth", 2.7, "depth", 2), ("probability", -5, "probability", 0),
     ("probability", 250, "probability", 100), ("scan_depth", -5, "scan_depth", None),
     ("position", 1.0, "position", Position.AFTER_CHAR), ("position", 9, "position", 4),
     ("role", 2.0, "role", "assistant"), ("role", -1, "role", "system"),
     ("selectiveLogic", 3, "logic", Logic.AND_ALL), ("selectiveLogic", 0.5, "logic", 0),
     ("delay_until_recursion", -5, "delay_until_recursion", 0)],
)  # fmt: skip
def test_numbers_out_of_range_are_clamped_or_the_default(field, value, attribute, expected):
    lore = lore_entry(BookEntry(keys=["k"], content="c", extensions={field: value}))
    assert getattr(lore, attribute) == expected


ORDERS = [(float("nan"), 100), (float("inf"), 100), (float("-inf"), 100), ("abc", 0),
          (None, 0), ([3], 0), ({"a": 1}, 0), (10**400, 1e15), (-(10**400), -1e15)]  # fmt: skip


@pytest.mark.parametrize(("value", "order"), ORDERS, ids=short)
def test_a_bad_insertion_order_sorts_as_a_default_and_is_kept_in_the_file(value, order):
    world = {"entries": {"0": {"uid": 0, "key": ["k"], "content": "c", "order": value}}}
    book = book_from_world_info(world)
    assert lore_entry(book.entries[0]).order == order
    kept = world_info_from_book(book)["entries"]["0"]["order"]
    assert kept == value or (value != value and kept != kept)  # NaN is not equal to itself


def test_card_entries_read_as_sillytavern_converts_them():
    entry = BookEntry(
        keys=["赤壁"], content="c", insertion_order=5, case_sensitive=True, selective=True,
        secondary_keys=["火"], position="before_char",
        extensions={"position": 4, "depth": 2, "role": 1, "selectiveLogic": 3,
                    "probability": 30, "useProbability": True, "scan_depth": 6,
                    "match_whole_words": True, "prevent_recursion": True,
                    "delay_until_recursion": True},
    )  # fmt: skip
    lore = lore_entry(entry, "book")
    assert (lore.position, lore.depth, lore.role, lore.logic) == (4, 2, "user", Logic.AND_ALL)
    assert (lore.probability, lore.scan_depth, lore.whole_words) == (30, 6, True)
    assert (
        lore.case_sensitive is True and lore.prevent_recursion and lore.delay_until_recursion == 1
    )
    # the V2 spec's position, and none at all (at depth: the cache-friendly default)
    assert lore_entry(BookEntry(position="after_char")).position == Position.AFTER_CHAR
    assert lore_entry(BookEntry()).position == Position.AT_DEPTH
    # SillyTavern's exports write probability null with useProbability false: always fires
    loose = BookEntry(extensions={"probability": None, "useProbability": False, "role": "x"})
    assert lore_entry(loose).probability == 100 and lore_entry(loose).role == "system"


def test_book_settings_override_sillytaverns_defaults():
    book = CharacterBook(scan_depth=5, token_budget=200, recursive_scanning=True)
    rules = book_rules(book)
    assert (rules.scan_depth, rules.budget_cap, rules.recursive) == (5, 200, True)
    assert book_rules(CharacterBook()) == LoreRules()


def test_seraphinas_lorebook_fires_on_its_keys():
    card = load_card("tests/data/Seraphina.png")
    entries = book_entries(card.data.character_book)
    assert [e.position for e in entries] == [Position.BEFORE_CHAR] * 4
    result = activate(
        [entries], ["User: Where am I? What is this forest?"], count_tokens=chars, budget=10_000
    )
    assert [e.label for e in result] == ["eldoria、wood、forest、magical forest"]


WORLD_INFO = {
    "entries": {
        "0": {"uid": 0, "key": ["赤壁"], "keysecondary": ["火"], "comment": "赤壁之战",
              "content": "火攻破曹。", "constant": False, "selective": True, "selectiveLogic": 3,
              "order": 50, "position": 4, "disable": False, "depth": 2, "role": 1,
              "probability": 80, "useProbability": True, "excludeRecursion": True,
              "preventRecursion": False, "caseSensitive": None, "matchWholeWords": None,
              "scanDepth": None, "characterFilter": {"names": ["诸葛亮"]}, "triggers": []},
        "1": {"uid": 1, "key": ["荆州"], "content": "荆州九郡。", "order": 100, "position": 0,
              "disable": True},
    },
    "originalData": {"kept": True},
}  # fmt: skip


def test_world_info_reads_as_a_character_book_and_back_keeping_unknown_fields():
    book = book_from_world_info(WORLD_INFO)
    first, second = book.entries
    assert first.keys == ["赤壁"] and first.secondary_keys == ["火"] and first.comment == "赤壁之战"
    assert first.extensions["position"] == 4 and first.extensions["role"] == 1
    assert first.extensions["selectiveLogic"] == 3 and first.insertion_order == 50
    assert second.enabled is False and second.position == "before_char"
    lore = lore_entry(first)
    assert (lore.position, lore.depth, lore.role, lore.probability) == (4, 2, "user", 80)
    assert lore.exclude_recursion and lore.logic == Logic.AND_ALL
    back = world_info_from_book(book)
    assert back["entries"]["0"] == WORLD_INFO["entries"]["0"]
    assert back["entries"]["1"] == {**WORLD_INFO["entries"]["1"]}
    assert back["originalData"] == {"kept": True}


def test_a_book_copied_into_the_folder_by_hand_is_found_by_its_name(tmp_path):
    folder = LorebookFolder(tmp_path / "lorebooks")
    folder.directory.mkdir()
    named = folder.directory / "copy-1.json"
    named.write_text(json.dumps({**WORLD_INFO, "name": "蜀汉"}, ensure_ascii=False), "utf-8")
    bare = folder.directory / "魏国.json"  # World Info as SillyTavern saves it: no name inside
    bare.write_text(json.dumps(WORLD_INFO, ensure_ascii=False), "utf-8")
    assert folder.names() == ["蜀汉", "魏国"]
    assert folder.path_for("蜀汉") == named
    assert len(folder.book("蜀汉").entries) == len(folder.book("魏国").entries) == 2
    folder.set_entry_enabled("蜀汉", 0, False)
    assert json.loads(named.read_text("utf-8"))["entries"]["0"]["disable"] is True
    folder.delete("魏国")
    assert folder.names() == ["蜀汉"]


def test_a_card_book_round_trips_through_world_info():
    card = load_card("tests/data/Seraphina.png")
    book = card.data.character_book
    again = book_from_world_info(world_info_from_book(book))
    assert [lore_entry(e) for e in again.entries] == [lore_entry(e) for e in book.entries]


def test_the_folder_imports_exports_and_names_problems(tmp_path):
    folder = LorebookFolder(tmp_path / "lorebooks")
    source = tmp_path / "三国.json"
    source.write_text(json.dumps(WORLD_INFO, ensure_ascii=False), "utf-8")
    assert folder.import_file(source) == "三国"
    assert folder.names() == ["三国"]
    out = folder.export("三国", tmp_path / "out.json")
    assert json.loads(out.read_text("utf-8")) == WORLD_INFO  # as imported, unknowns kept
    with pytest.raises(LorebookError, match="exists"):
        folder.import_file(source)
    card = tmp_path / "card.png"
    card.write_bytes(open("tests/data/Seraphina.png", "rb").read())
    assert folder.import_file(card, "Eldoria") == "Eldoria"
    assert len(folder.book("Eldoria").entries) == 4
    bad = tmp_path / "bad.json"
    for text, message in [
        ("{", "malformed JSON"),
        ('{"entries": 3}', "not a lorebook"),
        ('{"entries": {"0": 5}}', "entry 0 is not an object"),
        ('{"entries": {"0": {"key": 5}}}', "field 'entries.0.keys'"),
    ]:
        bad.write_text(text, "utf-8")
        with pytest.raises(LorebookError, match=message):
            folder.import_file(bad, "bad")
    with pytest.raises(LorebookError, match="No lorebook named 'nope'"):
        folder.book("nope")
    nocard = card_from_dict({"spec": "chara_card_v2", "data": {"name": "x"}})
    bare = tmp_path / "bare.json"
    bare.write_text(nocard.to_json(), "utf-8")
    with pytest.raises(LorebookError, match="card without a lorebook"):
        folder.import_file(bare)


def test_the_lore_command_imports_attaches_detaches_and_exports(tmp_path, capsys):
    from sessions.store import Store
    from tui.cli import main

    home = str(tmp_path / "home")
    source = tmp_path / "三国.json"
    source.write_text(json.dumps(WORLD_INFO, ensure_ascii=False), "utf-8")
    assert main(["--home", home, "lore", "import", str(source)]) == 0
    assert main(["--home", home, "lore", "list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == ["三国"]
    store = Store(tmp_path / "home" / "cosplay.db")
    session = store.create_session()
    assert main(["--home", home, "lore", "attach", "三国", "--session", str(session.id)]) == 0
    assert store.get_session(session.id).settings["lorebooks"] == ["三国"]
    assert main(["--home", home, "lore", "attach", "三国", "--persona", "诸葛亮"]) == 0
    assert main(["--home", home, "lore", "show", "三国"]) == 0
    shown = capsys.readouterr().out
    assert "赤壁之战\t赤壁\torder 50\tat_depth 2 as user" in shown and "(disabled)" in shown
    assert main(["--home", home, "lore", "export", "三国", str(tmp_path / "out.json")]) == 0
    assert json.loads((tmp_path / "out.json").read_text("utf-8")) == WORLD_INFO
    assert main(["--home", home, "lore", "detach", "三国", "--session", str(session.id)]) == 0
    assert store.get_session(session.id).settings["lorebooks"] == []
    # mistakes: one sentence, exit 2
    assert main(["--home", home, "lore", "detach", "三国", "--session", str(session.id)]) == 2
    assert main(["--home", home, "lore", "attach", "nope", "--persona", "诸葛亮"]) == 2
    assert main(["--home", home, "lore", "import", str(tmp_path / "missing.json")]) == 2
    err = capsys.readouterr().err
    assert "not attached to session" in err and "No lorebook named 'nope'" in err
    assert "Cannot read" in err and "Traceback" not in err
    store.close()


HOSTILE_NUMBERS = (  # as a file may have them: Python's json reads all of these
    '{"entries": {"0": {"uid": 0, "key": ["赤壁"], "content": "FIRE", "comment": "坏数",'
    ' "order": NaN, "position": Infinity, "depth": 1e999, "probability": -Infinity,'
    ' "selectiveLogic": "abc", "scanDepth": 1e999, "role": [1], "delayUntilRecursion": 1e999,'
    ' "displayIndex": 1e999}}}'
)


def test_lore_show_and_a_turn_survive_bad_numbers_in_a_book(tmp_path, capsys):
    from engines.fake import FakeEngine
    from sessions.prompt import StoredBranch, plan_prompt
    from sessions.workspace import Workspace
    from tui.cli import main

    home = tmp_path / "home"
    source = tmp_path / "坏.json"
    source.write_text(HOSTILE_NUMBERS, "utf-8")
    assert main(["--home", str(home), "lore", "import", str(source)]) == 0
    assert main(["--home", str(home), "lore", "show", "坏"]) == 0
    out, err = capsys.readouterr()
    assert "坏数\t赤壁\torder 100\tat_depth 4 as system" in out and "Traceback" not in err
    workspace = Workspace(home)
    try:
        session = workspace.store.create_session(settings={"lorebooks": ["坏"]})
        workspace.store.add_message(session.id, Role.USER, "赤壁如何")
        engine = FakeEngine([], context_length=4096)
        branch = StoredBranch(workspace.store, session.id)
        plan = plan_prompt(workspace.store.get_session(session.id), branch, engine, PARAMS)
        assert plan.lore == ["坏数"] and plan.messages[-2]["content"] == "FIRE"
    finally:
        workspace.close()
