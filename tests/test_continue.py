"""Continue: a reply written further, into the same message.

Assistant prefill in each engine (templates; the CPU engine on the tiny model and on the real
SmolLM2 in a subprocess, Chinese cut mid-character included; the GPU engine on the tiny models;
the remote engine against a real llama_cpp.server, which cannot continue, and scripted
llama-server / vLLM answers), `Conversation.continue_reply`, and the chat screen: a reply cut at
max new tokens is marked so, and the continue key extends it in its own view.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from engines.base import CosplayError, GenerationParams
from engines.fake import FakeEngine
from engines.templates import NAMED_TEMPLATES, ChatTemplate, model_template
from sessions.conversation import Conversation, ReplyEvents
from sessions.models import Role, Status
from sessions.workspace import Workspace
from tests.conftest import wait_until
from tests.hf_support import HFEngine, installed, needs
from tests.real_model import shipped_gguf
from tests.test_openai_remote import KEY, get_json, server  # noqa: F401 - the server fixture
from tests.test_tui_chat import visible_text
from tests.tiny_models import CHATML

QUESTION = [{"role": "user", "content": "Hello, how are you today?"}]
GREEDY = dict(do_sample=False, repetition_penalty=1.0)


def run(engine, messages, prefill="", cancel=None, **params) -> str:
    extra = {"prefill": prefill} if prefill else {}
    stream = engine.stream_chat(
        messages, GenerationParams(**params), cancel or threading.Event(), **extra
    )
    return "".join(stream)


# --- templates ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(NAMED_TEMPLATES))
def test_a_prefilled_render_ends_inside_the_reply_right_after_its_text(name):
    template = NAMED_TEMPLATES[name]
    messages = [{"role": "system", "content": "S"}, *QUESTION]
    text = "“我很好，just"  # the quote: the cosplay template quotes a reply that has none
    prompt = template.render(messages, prefill=text, char_name="孔明")
    assert prompt.endswith(text)
    # before it, the prompt of a new reply: the history, up to where the speaker's line begins
    assert prompt.startswith(template.render(messages, char_name="孔明"))


def test_prefill_on_a_model_template_and_the_fallbacks():
    chatml = model_template(CHATML)
    assert chatml.render(QUESTION, prefill="I am") == (
        "<|im_start|>user\nHello, how are you today?<|im_end|>\n<|im_start|>assistant\nI am"
    )
    # A template that never renders assistant messages, and one that refuses to end with one:
    # the generation prompt, then the text.
    dropping = ChatTemplate(
        "model",
        "{% for m in messages if m.role != 'assistant' %}[{{ m.content }}]{% endfor %}"
        "{% if add_generation_prompt %}>{% endif %}",
    )
    assert dropping.render(QUESTION, prefill="I am") == "[Hello, how are you today?]>I am"
    refusing = ChatTemplate(
        "model",
        "{% if messages[-1].role == 'assistant' %}{{ raise_exception('no') }}{% endif %}"
        "{% for m in messages %}[{{ m.content }}]{% endfor %}{% if add_generation_prompt %}>"
        "{% endif %}",
    )
    assert refusing.render(QUESTION, prefill="I am") == "[Hello, how are you today?]>I am"


# --- the CPU engine ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cpu(tiny_gguf):
    from engines.llamacpp import LlamaCppEngine

    engine = LlamaCppEngine(tiny_gguf, n_ctx=512, n_threads=2)
    yield engine
    engine.close()


def test_the_cpu_engine_continues_a_cut_reply_from_its_cache(cpu):
    full = run(cpu, QUESTION, max_new_tokens=24, **GREEDY)
    cut = run(cpu, QUESTION, max_new_tokens=8, **GREEDY)
    assert cpu.last_stats.finish_reason == "length" and cut and full.startswith(cut)
    assert cpu.render(QUESTION, cut).endswith("<|im_start|>assistant\n" + cut)
    more = run(cpu, QUESTION, cut, max_new_tokens=16, **GREEDY)
    stats = cpu.last_stats
    assert cut + more == full  # no text repeated or lost at the join
    assert stats.prompt_eval_tokens == 1  # the reply's own ids: only its last one, never evaluated
    asked = cpu.count_tokens(QUESTION)
    assert asked < stats.prompt_tokens <= asked + 8  # (a token cut in half is not in the text)


REAL_MODEL = textwrap.dedent(
    """
    import json, sys, threading
    from engines.base import GenerationParams
    from engines.llamacpp import LlamaCppEngine

    engine = LlamaCppEngine(sys.argv[1], n_ctx=1024)
    def run(messages, n, prefill=""):
        params = GenerationParams(do_sample=False, repetition_penalty=1.0, max_new_tokens=n)
        text = "".join(engine.stream_chat(messages, params, threading.Event(), prefill=prefill))
        return text, engine.last_stats

    capital = [{"role": "user", "content": "What is the capital of France?"}]
    prefill = "The capital of France is"
    paris, _ = run(capital, 8, prefill)
    zh = [{"role": "system", "content": "你是一个乐于助人的助手，总是用中文回答。"},
          {"role": "user", "content": "请用中文写一句关于月亮的诗。"}]
    full, _ = run(zh, 24)
    cuts = []
    for n in range(2, 10):
        cut, stats = run(zh, n)
        more, stats = run(zh, 24 - n, cut)  # the cache holds the cut reply's own ids
        evaluated = stats.prompt_eval_tokens
        engine._llm.reset(); engine._cache.clear()
        fresh, _ = run(zh, 24 - n, cut)  # the same text tokenized afresh
        cuts.append({"n": n, "cut": cut, "more": more, "fresh": fresh, "evaluated": evaluated})
    print(json.dumps({"prompt": engine.render(capital, prefill), "paris": paris,
                      "full": full, "cuts": cuts}, ensure_ascii=False))
    """
)


def test_continuing_on_the_real_model_joins_without_repeating_or_dropping_text():
    done = subprocess.run(
        [sys.executable, "-c", REAL_MODEL, str(shipped_gguf())],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["prompt"].endswith("<|im_start|>assistant\nThe capital of France is")
    assert result["paris"].startswith(" Paris")  # goes on; does not start the sentence again
    full, cuts = result["full"], result["cuts"]
    for cut in cuts:
        joined, afresh = cut["cut"] + cut["more"], cut["cut"] + cut["fresh"]
        assert joined == full[: len(joined)], cut
        assert afresh == full[: len(afresh)], cut
        assert cut["evaluated"] == 1, cut
    # Some cuts fell inside a Chinese character: one more token, no more text (its bytes were
    # dropped, and the continuation wrote the character whole).
    assert any(a["cut"] == b["cut"] for a, b in zip(cuts, cuts[1:], strict=False))


# --- the GPU engine --------------------------------------------------------------------------------


@pytest.fixture(scope="module", params=["llama", "qwen2"])
def gpu(request):
    if not installed("torch", "transformers"):
        pytest.skip("the GPU engine's extras are not installed")
    engine = HFEngine(request.getfixturevalue(f"tiny_{request.param}")["hf"])
    yield engine
    engine.close()


def test_the_gpu_engine_renders_as_transformers_continue_final_message(gpu):
    reply = {"role": "assistant", "content": "I am fine"}
    expected = gpu.tokenizer.apply_chat_template(
        [*QUESTION, reply], tokenize=False, continue_final_message=True
    )
    assert gpu.render(QUESTION, "I am fine") == expected


def test_the_gpu_engine_continues_a_cut_reply_from_its_cache(gpu):
    gpu._prefix.clear()
    full = run(gpu, QUESTION, max_new_tokens=20, **GREEDY)
    cut = run(gpu, QUESTION, max_new_tokens=7, **GREEDY)
    assert gpu.last_stats.finish_reason == "length" and full.startswith(cut)
    more = run(gpu, QUESTION, cut, max_new_tokens=13, **GREEDY)
    assert cut + more == full
    assert gpu.last_stats.prompt_eval_tokens == 1


@needs("transformers", "tokenizers")
def test_text_after_a_prefill_keeps_a_sentencepiece_words_leading_space():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from engines.hf_gen import decode_after

    words = ["▁The", "▁capital", "▁is", "▁Paris", "."]
    backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="."))
    backend.pre_tokenizer = pre_tokenizers.Metaspace()
    backend.decoder = decoders.Metaspace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend)
    assert tokenizer.decode([3, 4]) == "Paris."  # alone: the first word's space is dropped
    assert decode_after(tokenizer, [0, 1, 2], [3, 4]) == " Paris."
    assert decode_after(tokenizer, [], [3, 4]) == "Paris."


# --- the remote engine -----------------------------------------------------------------------------


def test_llama_cpp_server_writes_a_new_reply_after_a_final_assistant_message(server):  # noqa: F811
    """The finding behind refusing it: llama-cpp-python's server closes a final assistant
    message and opens a new turn, ignoring vLLM's continue_final_message, and has no
    /apply-template to ask."""
    messages = [
        {"role": "user", "content": "What is the capital of France?"},
        {"role": "assistant", "content": "The capital of France is"},
    ]
    body = dict(model="smollm2", messages=messages, temperature=0, max_tokens=12, seed=1)
    body |= dict(continue_final_message=True, add_generation_prompt=False)
    answer = get_json(f"{server.url}/chat/completions", body)
    assert answer["choices"][0]["message"]["content"].startswith("The capital of France is")


def test_the_remote_engine_refuses_to_continue_on_llama_cpp_server(server):  # noqa: F811
    from engines.openai_remote import OpenAIRemoteEngine

    engine = OpenAIRemoteEngine(server.url, api_key=KEY)
    with pytest.raises(CosplayError, match="cannot continue a reply") as error:
        run(engine, QUESTION, "I am")
    assert str(error.value).count(". ") == 0 and "local engine" in str(error.value)
    assert engine.continues_replies() is False
    assert run(engine, QUESTION, max_new_tokens=3)  # a new reply still works


class Scripted(BaseHTTPRequestHandler):
    """A llama-server (its /apply-template renders `template`) or vLLM (`owner`) stand-in."""

    owner = "llamacpp"
    template: str | None = None  # None: no /apply-template (404)
    bodies: list = []

    def log_message(self, *args):
        pass

    def _json(self, status: int, value) -> None:
        data = json.dumps(value).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path == "/v1/models":
            return self._json(200, {"data": [{"id": "m", "owned_by": self.owner}]})
        self._json(404, {"detail": "Not Found"})

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.bodies.append((self.path, body))
        if self.path == "/apply-template":
            if self.template is None:
                return self._json(404, {"detail": "Not Found"})
            messages = body["messages"]
            return self._json(200, {"prompt": self.template.format(*messages)})
        chunks = [{"choices": [{"delta": {"content": " Paris"}, "finish_reason": None}]},
                  {"choices": [{"delta": {}, "finish_reason": "stop"}]}]  # fmt: skip
        data = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        self.wfile.write(data.encode())


@pytest.fixture
def scripted():
    Scripted.bodies, Scripted.owner, Scripted.template = [], "llamacpp", None
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Scripted)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_port}/v1", Scripted
    httpd.shutdown()
    httpd.server_close()


def remote(url):
    from engines.openai_remote import OpenAIRemoteEngine

    return OpenAIRemoteEngine(url)


OPEN = "<user>{0[content]}</user><assistant>{1[content]}"  # llama-server: prefill on


def test_llama_server_gets_the_reply_as_a_final_assistant_message_to_continue(scripted):
    url, script = scripted
    script.template = OPEN
    engine = remote(url)
    capital = [{"role": "user", "content": "What is the capital of France?"}]
    assert run(engine, capital, "The capital of France is") == " Paris"
    assert run(engine, capital, "The capital of France is") == " Paris"
    paths = [path for path, _ in script.bodies]
    assert paths == ["/apply-template", "/v1/chat/completions", "/v1/chat/completions"]  # once
    sent = script.bodies[-1][1]
    assert sent["messages"][-1] == {"role": "assistant", "content": "The capital of France is"}
    assert sent["continue_final_message"] is True and sent["add_generation_prompt"] is False
    run(engine, capital)  # a new reply: no final assistant message, no flags
    assert "continue_final_message" not in script.bodies[-1][1]
    assert script.bodies[-1][1]["messages"] == capital


def test_vllm_continues_and_a_server_that_closes_the_message_is_refused(scripted):
    url, script = scripted
    script.owner = "vllm"  # no /apply-template: its model list says vLLM
    assert run(remote(url), QUESTION, "I am") == " Paris"
    script.owner, script.bodies[:] = "llamacpp", []
    script.template = OPEN + "</assistant><assistant>"  # llama-server --no-prefill-assistant
    with pytest.raises(CosplayError, match="cannot continue a reply"):
        run(remote(url), QUESTION, "I am")
    assert all(path != "/v1/chat/completions" for path, _ in script.bodies)


# --- the conversation --------------------------------------------------------------------------


@pytest.fixture
def workspace(tmp_path):
    with Workspace(tmp_path / "home") as workspace:
        yield workspace


def start(workspace, engine, *, persona=None, max_new_tokens=3):
    """A session whose first reply, to "问", is cut after `max_new_tokens` pieces."""
    session = workspace.new_session(persona) if persona else workspace.new_session()
    talk = Conversation(workspace, engine, session.id)
    question = talk.say("问")
    params = GenerationParams(max_new_tokens=max_new_tokens)
    [reply] = talk.reply(talk.turn_after(question), params, threading.Event())
    return talk, reply


def test_continue_appends_to_the_same_message_and_records_each_part(workspace):
    engine = FakeEngine(["一二三四五", "六七八", "九十"])
    talk, reply = start(workspace, engine)
    assert (reply.content, reply.meta["finish_reason"]) == ("一二三", "length")
    pieces: list[str] = []
    events = ReplyEvents(piece=pieces.append)
    params = GenerationParams(max_new_tokens=2, seed=7)
    more = talk.continue_reply(reply, params, threading.Event(), events)
    assert more.id == reply.id and more.content == "一二三六七" and pieces == ["六", "七"]
    assert engine.prefills[-1] == "一二三"
    assert engine.prompts[-1] == engine.prompts[0]  # the prompt it answered, then the prefill
    assert more.status == Status.COMPLETE and more.meta["finish_reason"] == "length"
    assert more.meta["seed"] == reply.meta["seed"]  # the first part's record stays
    [part] = more.meta["continued"]
    assert part["seed"] == 7 and part["params"]["max_new_tokens"] == 2
    assert (part["start"], part["completion_tokens"]) == (3, 2)
    assert part["before"] == {"status": "complete", "finish_reason": "length"}
    last = talk.continue_reply(more, GenerationParams(), threading.Event())
    assert last.content == "一二三六七九十" and last.meta["finish_reason"] == "stop"
    assert [p["start"] for p in last.meta["continued"]] == [3, 5]
    assert workspace.store.get_session(talk.session_id).leaf_id == reply.id
    assert len(workspace.store.branch(talk.session_id)) == 2  # no new message


def test_cancel_keeps_what_was_written_and_a_stop_before_any_text_changes_nothing(workspace):
    engine = FakeEngine(["一二三四", "五六七八九"])
    talk, reply = start(workspace, engine)
    cancel = threading.Event()
    events = ReplyEvents(piece=lambda text: text == "六" and cancel.set())
    stopped = talk.continue_reply(reply, GenerationParams(), cancel, events)
    assert stopped.content == "一二三五六" and stopped.status == Status.CANCELLED
    assert stopped.meta["finish_reason"] == "cancelled"
    cancel = threading.Event()
    cancel.set()
    again = talk.continue_reply(stopped, GenerationParams(), cancel)
    assert again.content == "一二三五六" and again.status == Status.CANCELLED
    assert len(again.meta["continued"]) == 1


class Refusing(FakeEngine):
    def stream_chat(self, messages, params, cancel, *, prefill=""):
        raise CosplayError("This engine cannot continue a reply.")
        yield ""


def test_an_engine_that_cannot_continue_leaves_the_reply_as_it_was(workspace):
    talk, reply = start(workspace, FakeEngine(["一二三四"]))
    talk.engine = Refusing()
    with pytest.raises(CosplayError, match="cannot continue"):
        talk.continue_reply(reply, GenerationParams(), threading.Event())
    after = workspace.store.get_message(reply.id)
    assert (after.content, after.status, after.meta) == (reply.content, reply.status, reply.meta)


def test_only_the_last_reply_can_be_continued(workspace):
    engine = FakeEngine(["一二三四", "答"])
    talk, reply = start(workspace, engine)
    params, cancel = GenerationParams(), threading.Event()
    question = workspace.store.get_message(reply.parent_id)
    with pytest.raises(CosplayError, match="Only a reply can be continued"):
        talk.continue_reply(question, params, cancel)
    talk.reply(talk.turn_after(talk.say("再问")), params, cancel)
    with pytest.raises(CosplayError, match="Only the last message of the chat"):
        talk.continue_reply(reply, params, cancel)


def test_a_persona_continues_its_own_reply_with_its_prompt(workspace):
    engine = FakeEngine(["亮夜观天象", "见东南风起"])
    opening = Conversation(workspace, engine, workspace.new_session("诸葛亮").id)
    [greeting] = workspace.store.branch(opening.session_id)
    with pytest.raises(CosplayError, match="A greeting cannot be continued"):
        opening.continue_reply(greeting, GenerationParams(), threading.Event())
    talk, last = start(workspace, engine, persona="诸葛亮")
    assert last.name == "诸葛亮" and last.content == "亮夜观"
    more = talk.continue_reply(last, GenerationParams(), threading.Event())
    assert more.name == "诸葛亮" and more.meta["continued"][0]["persona"] == "诸葛亮"
    assert engine.prompts[-1] == engine.prompts[-2]  # its own system text, history and all
    assert (
        engine.prompts[-1][0]["role"] == "system" and "诸葛亮" in engine.prompts[-1][0]["content"]
    )


# --- the chat screen -------------------------------------------------------------------------------


async def test_a_cut_reply_is_marked_and_the_continue_key_extends_it_in_place(tmp_path):
    from tui.app import make_app
    from tui.widgets.message_view import MessageView, cut_mark

    workspace = Workspace(tmp_path / "home")
    engine = FakeEngine(["one two three four five", " four five six"], delay=0.01)
    session = workspace.new_session()
    workspace.store.update_session(session.id, settings={"params": {"max_new_tokens": 3}})
    talk = Conversation(workspace, engine, session.id)
    question = talk.say("count")
    talk.reply(talk.turn_after(question), talk.params(), threading.Event())
    app = make_app(workspace=workspace, engine=engine, session_id=session.id)
    async with app.run_test(size=(110, 30)) as pilot:
        screen = app.chat
        _, view = screen.query(MessageView)
        header = view._header_text().plain
        assert "✂ cut at max new tokens · Ctrl+O continues" in header
        await pilot.pause()
        assert cut_mark("Ctrl+O") in visible_text(app)
        await pilot.press("ctrl+o")
        await wait_until(pilot, lambda: not screen.generating)
        await wait_until(pilot, lambda: view.body.source == "one two three four five six")
        assert list(screen.query(MessageView))[1] is view and len(screen.query(MessageView)) == 2
        await pilot.pause()
        assert "✂" not in view._header_text().plain and "✂" not in visible_text(app)
        saved = workspace.store.get_message(view.message.id)
        assert saved.content == "one two three four five six" and saved.status == Status.COMPLETE
        assert engine.prefills == ["", "one two three"]
        part = saved.meta["continued"][-1]  # the status line counts the context it used
        used = part["prompt_tokens"] + part["completion_tokens"]
        assert used > saved.meta["prompt_tokens"] + saved.meta["completion_tokens"]
        assert f"ctx {used}/4096" in str(screen.query_one("#status").render())
        # after your own message there is nothing to continue: said, nothing written
        workspace.store.add_message(session.id, Role.USER, "more", parent_id=saved.id)
        screen.load_session(session.id)
        await pilot.press("ctrl+o")
        await pilot.pause()
        assert not screen.generating and len(engine.prefills) == 2
        # an earlier reply, focused: it cannot be continued, and the notification says why
        screen.transcript.view_of(saved.id).focus()
        await pilot.press("ctrl+o")
        await wait_until(pilot, lambda: not screen.generating)
        said = [str(n.message) for n in app._notifications]
        assert any("Only the last message of the chat can be continued" in s for s in said)
        assert workspace.store.get_message(saved.id).content == saved.content
        assert len(engine.prefills) == 2
    workspace.close()


async def test_the_cut_mark_names_the_continue_key_as_rebound(tmp_path):
    from tui.app import make_app
    from tui.widgets.message_view import MessageView

    workspace = Workspace(tmp_path / "home")
    (tmp_path / "home" / "keys.toml").write_text('continue = "f12"\n', encoding="utf-8")
    engine = FakeEngine(["one two three four five"])
    session = workspace.new_session()
    workspace.store.update_session(session.id, settings={"params": {"max_new_tokens": 3}})
    talk = Conversation(workspace, engine, session.id)
    talk.reply(talk.turn_after(talk.say("count")), talk.params(), threading.Event())
    app = make_app(workspace=workspace, engine=engine, session_id=session.id)
    async with app.run_test(size=(110, 30)) as pilot:
        await pilot.pause()
        _, view = app.chat.query(MessageView)
        assert "· F12 continues" in view._header_text().plain
