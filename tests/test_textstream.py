from engines.textstream import TextAssembler


def test_chinese_character_split_across_tokens_is_held_back():
    data = "诸葛亮".encode()
    assembler = TextAssembler([])
    assert assembler.feed(data[:2]) == ""
    assert assembler.feed(data[2:4]) == "诸"
    assert assembler.feed(data[4:]) == "葛亮"
    assert assembler.finish() == ""


def test_stop_string_across_pieces_is_cut_and_never_shown():
    assembler = TextAssembler(["<|im_end|>"])
    shown = [assembler.feed(p.encode()) for p in ["Hello <|im", "_e", "nd|> tail"]]
    assert "".join(shown) == "Hello "
    assert assembler.stopped
    assert assembler.text == "Hello "


def test_a_false_start_of_a_stop_string_is_released():
    assembler = TextAssembler(["曰："])
    assert assembler.feed("孔明曰".encode()) == "孔明"
    assert assembler.feed("道".encode()) == "曰道"
    assert assembler.finish() == ""
    assert not assembler.stopped


def test_finish_flushes_the_held_tail():
    assembler = TextAssembler(["###"])
    assert assembler.feed(b"abc #") == "abc "
    assert assembler.finish() == "#"


def test_a_character_cut_in_half_at_the_end_is_dropped_not_saved_as_a_replacement():
    data = "孔明".encode()
    assembler = TextAssembler([])
    assert assembler.feed(data[:4]) == "孔"  # the reply stops mid-character
    assert assembler.finish() == ""
    assert assembler.text == "孔" and "\ufffd" not in assembler.text
