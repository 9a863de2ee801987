"""What the CPU engine's cache keeps of a reply, and reuse after a restart when the reply held
bytes that are not text (the tiny random model samples invalid UTF-8 freely)."""

import threading

from engines.base import GenerationParams
from engines.llamacpp import LlamaCppEngine
from engines.llamacpp_cache import TokenCache, spelled_reply

PIECES = [b"Hello", b", \xe8\xaf", b"\xb8", b"\xff", b"!"]  # 诸 split in two, then a bad byte


def test_the_cache_keeps_a_reply_as_shown_but_not_half_a_character_at_its_end():
    data, ends = b"".join(PIECES), [0]
    for piece in PIECES:
        ends.append(ends[-1] + len(piece))
    shown = data.decode("utf-8", errors="replace")
    assert spelled_reply(data, ends, shown) == ("Hello, 诸\ufffd!", 5)
    cut = b"".join(PIECES[:2])  # stopped mid-character: the shown text dropped the half
    assert spelled_reply(cut, ends[:3], "Hello, ") == ("Hello", 1)
    assert spelled_reply(b"", [0], "") == ("", 0)


def test_token_boundaries_are_known_up_to_the_first_token_that_does_not_spell_the_text():
    ids = {piece: index for index, piece in enumerate(PIECES)}
    cache = TokenCache()
    cache.set(b"".join(PIECES).decode("utf-8", errors="replace"), list(range(len(PIECES))))
    offsets = cache.offsets(lambda token: PIECES[token], leading_bos=False)
    assert offsets == [0, 5, 9, 10]  # the bad byte's token does not spell its U+FFFD
    assert not cache.spelled(offsets)
    cache.set("Hello, 诸", [ids[PIECES[0]], ids[PIECES[1]], ids[PIECES[2]]])
    assert cache.spelled(cache.offsets(lambda token: PIECES[token], leading_bos=False))


def test_a_restored_cache_is_reused_when_the_last_reply_had_invalid_bytes(tiny_gguf, tmp_path):
    state = tmp_path / "s.kvstate"
    params = GenerationParams(max_new_tokens=40, seed=3, temperature=1.0)
    messages = [
        {"role": "system", "content": "你是诸葛亮。" * 20},
        {"role": "user", "content": "hi"},
    ]
    first = LlamaCppEngine(tiny_gguf, n_ctx=1024, n_threads=2)
    reply = "".join(first.stream_chat(messages, params, threading.Event()))
    assert "\ufffd" in reply  # the case this test is about
    first.save_state(state)
    cached = len(first._cache.tokens)
    first.close()
    # The saved reply lost its last character (as a cancelled reply loses a held-back tail).
    messages += [{"role": "assistant", "content": reply[:-1]}, {"role": "user", "content": "again"}]
    restarted = LlamaCppEngine(tiny_gguf, n_ctx=1024, n_threads=2)
    restarted.bind_state(state)
    "".join(restarted.stream_chat(messages, params, threading.Event()))
    stats = restarted.last_stats
    assert stats.prompt_eval_tokens < stats.prompt_tokens - cached // 2, stats
    restarted.close()
