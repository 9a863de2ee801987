"""The remote engine against a real llama_cpp.server (a tiny random GGUF and SmolLM2-135M,
served under two model ids) and, for what a real server cannot show, a scripted fake server
that records each request's body."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import pytest

from engines.base import (
    AdapterError,
    ContextOverflowError,
    Engine,
    GenerationError,
    GenerationParams,
    ModelLoadError,
)
from engines.openai_remote import OpenAIRemoteEngine
from tests.tiny_models import TinyConfig, build

KEY = "test-key-not-secret"
QUESTION = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "What is the capital of France?"},
]
HELLO = [{"role": "user", "content": "Hello, how are you today?"}]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get_json(url: str, body: dict | None = None) -> dict:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"},
    )
    # generous: the server loads a model on its first request, slowly on a loaded 2-core machine
    with urllib.request.urlopen(request, timeout=180) as response:
        return json.loads(response.read())


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The base URL of a llama_cpp.server serving "tiny" (the default) and "smollm2"."""
    import llama_cpp.server.app  # noqa: F401 - the dev extra installs it: missing is a failure

    from tests.real_model import shipped_gguf

    directory = tmp_path_factory.mktemp("remote")
    tiny = build(directory / "tiny", TinyConfig(), hf=False)["gguf"]
    port = free_port()
    model = {"n_threads": 2, "n_threads_batch": 2, "verbose": False}
    config = {
        "host": "127.0.0.1",
        "port": port,
        "api_key": KEY,
        "models": [
            {"model": str(tiny), "model_alias": "tiny", "n_ctx": 512, **model},
            {"model": str(shipped_gguf()), "model_alias": "smollm2", "n_ctx": 1024, **model},
        ],
    }
    (directory / "config.json").write_text(json.dumps(config))
    log = (directory / "server.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--config_file", str(directory / "config.json")],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},  # its "Disconnected" line, for the cancel test
    )
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 60
    try:
        while True:
            try:
                get_json(f"{url}/models")
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(
                        f"llama_cpp.server did not start: {(directory / 'server.log').read_text()[-3000:]}"
                    )
                time.sleep(0.2)
        yield SimpleNamespace(url=url, log=directory / "server.log")
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


@pytest.fixture
def engine(server):
    engine = OpenAIRemoteEngine(server.url, api_key=KEY, adapters={"smol": "smollm2"})
    yield engine
    engine.close()


def reply(engine, messages, cancel=None, **params) -> str:
    return "".join(
        engine.stream_chat(messages, GenerationParams(**params), cancel or threading.Event())
    )


# --- against the real server --------------------------------------------------------------


def test_loads_the_model_list_and_describes_itself(engine, server):
    assert isinstance(engine, Engine)
    port = server.url.split(":")[2].split("/")[0]
    assert engine.model == engine.base_model == "tiny"
    assert engine.model_name == f"127.0.0.1:{port}/tiny"
    assert engine.template_name == "server" and engine.adapter_format == "name"
    assert engine.context_length == 4096  # llama_cpp.server reports none: the safe default
    facts = engine.describe()
    assert facts["engine"] == "remote" and facts["device"] == f"127.0.0.1:{port}"
    assert KEY not in json.dumps(facts) and KEY not in str(vars(engine) | {"_api_key": ""})
    assert OpenAIRemoteEngine(server.url, api_key=KEY, n_ctx=512).context_length == 512


def test_streams_pieces_with_stats(engine):
    params = GenerationParams(temperature=1.0, max_new_tokens=12, seed=3)
    pieces = list(engine.stream_chat(HELLO, params, threading.Event()))
    stats = engine.last_stats
    assert len(pieces) > 1 and all(pieces)
    assert stats.completion_tokens == len(pieces) <= 12  # llama_cpp.server: one token a chunk
    assert stats.prompt_tokens > 0 and stats.prompt_eval_tokens == stats.prompt_tokens
    assert stats.finish_reason in ("length", "stop") and stats.seed == 3
    assert 0 < stats.ttft_s <= stats.total_s


def test_the_same_seed_gives_the_same_text(engine):
    first = reply(engine, HELLO, temperature=1.0, max_new_tokens=16, seed=11)
    again = reply(engine, HELLO, temperature=1.0, max_new_tokens=16, seed=11)
    other = reply(engine, HELLO, temperature=1.0, max_new_tokens=16, seed=12)
    assert first == again and first != other
    random_seed = reply(engine, HELLO, temperature=1.0, max_new_tokens=16)
    assert engine.last_stats.seed is not None
    assert reply(engine, HELLO, temperature=1.0, max_new_tokens=16, seed=engine.last_stats.seed)
    assert random_seed  # the seed used is recorded, so the reply can be made again


def test_llama_cpp_server_takes_the_new_samplers(engine):
    """llama_cpp.server ignores the fields it does not know (DRY, XTC…) and reads
    `mirostat_mode`: a reply with all of them on still comes, seeded, and mirostat with a
    low target changes it."""
    common = dict(temperature=1.0, max_new_tokens=16, seed=11)
    on = dict(dry_multiplier=0.8, xtc_probability=0.5, dynatemp_range=0.3, top_n_sigma=1.0,
              mirostat_mode=2, mirostat_tau=0.5)  # fmt: skip
    first = reply(engine, HELLO, **common, **on)
    assert first and first == reply(engine, HELLO, **common, **on)
    assert engine.last_stats.finish_reason in ("stop", "length")
    assert first != reply(engine, HELLO, **common)


def test_stop_strings_end_the_reply(engine):
    full = list(engine.stream_chat(HELLO, GenerationParams(do_sample=False, max_new_tokens=16),
                                   threading.Event()))  # fmt: skip
    stop = next(p for p in full[3:] if p.strip() and "".join(full).count(p) == 1)
    text = "".join(full)
    cut = reply(engine, HELLO, do_sample=False, max_new_tokens=16, stop=[stop])
    assert cut == text[: text.index(stop)]
    assert engine.last_stats.finish_reason == "stop"


def test_smollm2_answers_paris_through_a_model_name_adapter(engine):
    assert engine.adapter_sources == {"smol": "smollm2"}
    engine.set_adapter("smol")
    assert engine.model == "smollm2" and engine.describe()["adapter"] == "smol"
    answer = reply(engine, QUESTION, temperature=0.0, do_sample=False, max_new_tokens=24, seed=0)
    assert "Paris" in answer
    assert engine.last_stats.finish_reason == "stop"
    engine.set_adapter(None)
    assert engine.model == "tiny" and "adapter" not in engine.describe()
    with pytest.raises(AdapterError, match="serves no model 'nope'"):
        engine.load_adapter("bad", "nope")
    with pytest.raises(AdapterError, match="No adapter named 'bad'"):
        engine.set_adapter("bad")


def test_count_tokens_uses_the_server_tokenizer(engine, server):
    engine.set_adapter("smol")
    counted = engine.count_tokens(QUESTION)
    real = get_json(
        f"{server.url}/chat/completions",
        {"model": "smollm2", "messages": QUESTION, "max_tokens": 1, "temperature": 0},
    )["usage"]["prompt_tokens"]
    assert real <= counted <= real + 24  # the template's markup is estimated, never under
    texts = [m["content"] for m in QUESTION]
    assert all(text in engine._token_cache for text in texts)  # the server counted them
    assert engine.count_tokens(QUESTION) == counted
    longer = engine.count_tokens(QUESTION + [{"role": "user", "content": "Tell me more. " * 20}])
    assert 60 <= longer - counted <= 110


def test_cancel_stops_the_stream_promptly(engine, server):
    cancel = threading.Event()
    pieces = []
    params = GenerationParams(temperature=1.0, max_new_tokens=400, seed=5)
    for piece in engine.stream_chat(HELLO, params, cancel):
        pieces.append(piece)
        if len(pieces) == 3:
            cancel.set()
            cancelled_at = time.perf_counter()
    assert time.perf_counter() - cancelled_at < 1.0
    assert len(pieces) == 3 and engine.last_stats.finish_reason == "cancelled"
    assert engine.last_stats.completion_tokens == 3
    # the server saw the client go and stopped; the next reply runs normally
    deadline = time.monotonic() + 5
    while "Disconnected" not in server.log.read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "Disconnected" in server.log.read_text()
    assert reply(engine, HELLO, max_new_tokens=4, seed=1)
    assert engine.last_stats.finish_reason == "length"


def test_a_reply_cancelled_before_it_starts_yields_nothing(engine):
    cancel = threading.Event()
    cancel.set()
    assert reply(engine, HELLO, cancel=cancel, max_new_tokens=50) == ""
    assert engine.last_stats.finish_reason == "cancelled"


def test_a_prompt_over_the_servers_context_names_n_ctx(engine):
    # llama_cpp.server (n_ctx 512 here, reported nowhere) ends the stream without a word
    with pytest.raises(GenerationError, match="pass its context size with --n-ctx"):
        reply(engine, [{"role": "user", "content": "Hello there friend. " * 200}])
    assert engine.last_stats.finish_reason == "error"


def test_a_wrong_or_missing_key_is_a_load_error(server):
    with pytest.raises(ModelLoadError, match="refused access.*check the key"):
        OpenAIRemoteEngine(server.url, api_key="wrong")
    with pytest.raises(ModelLoadError, match="--api-key-env"):
        OpenAIRemoteEngine(server.url)


def test_from_spec_reads_the_key_from_the_named_variable(server, monkeypatch):
    spec = SimpleNamespace(
        model=server.url, api_key_env="COSPLAY_TEST_KEY", n_ctx=None, adapters={}, template="chatml"
    )
    monkeypatch.delenv("COSPLAY_TEST_KEY", raising=False)
    with pytest.raises(ModelLoadError, match="COSPLAY_TEST_KEY .* is not set"):
        OpenAIRemoteEngine.from_spec(spec)
    monkeypatch.setenv("COSPLAY_TEST_KEY", KEY)
    engine = OpenAIRemoteEngine.from_spec(spec)
    assert engine.template_name == "server" and KEY not in str(engine.describe())


def test_a_wrong_path_is_a_load_error(server):
    with pytest.raises(ModelLoadError, match="answered 404 .*base URL"):
        OpenAIRemoteEngine(server.url.replace("/v1", "/nothing/v1"), api_key=KEY)


def test_cosplay_ask_chats_with_the_server_and_saves_the_turn(
    server, tmp_path, monkeypatch, capsys
):
    """`cosplay ask --model URL`: the registry picks the remote engine from the URL, the real
    model answers, and the reply is saved with the server's facts (never the key)."""
    from sessions.store import Store
    from tui.cli import main

    monkeypatch.setenv("COSPLAY_TEST_KEY", KEY)
    home = tmp_path / "home"
    argv = ["--home", str(home), "ask", "--model", f"{server.url}?model=smollm2"]
    argv += ["--api-key-env", "COSPLAY_TEST_KEY", "--temperature", "0", "--max-tokens", "24"]
    assert main([*argv, "What is the capital of France?"]) == 0
    out, err = capsys.readouterr()
    assert "Paris" in out and "(session 1)" in err
    store = Store(home / "cosplay.db")
    [_, answer] = store.branch(1)
    assert answer.content.strip() in out and answer.meta["engine"]["engine"] == "remote"
    assert answer.meta["completion_tokens"] > 0
    assert KEY not in json.dumps(store.get_setting("last_model"))
    store.close()
    assert main(["--home", str(home), "ask", "--engine", "cpu", "--model", server.url, "hi"]) == 2
    assert "is not what the cpu engine runs (a .gguf file)" in capsys.readouterr().err


# --- errors without a server -----------------------------------------------------------------


def test_an_unreachable_server_is_a_one_sentence_load_error():
    url = f"http://127.0.0.1:{free_port()}/v1"
    started = time.perf_counter()
    with pytest.raises(ModelLoadError, match=f"Cannot reach the server at {url}") as error:
        OpenAIRemoteEngine(url)
    assert time.perf_counter() - started < 5 and str(error.value).count(". ") == 0
    with pytest.raises(ModelLoadError, match="not a server URL"):
        OpenAIRemoteEngine("model.gguf")


# --- a scripted server ---------------------------------------------------------------------


class Fake(BaseHTTPRequestHandler):
    """Answers /v1/models, /props and /v1/chat/completions from `script`; logs each body."""

    script: dict = {}
    bodies: list = []

    def log_message(self, *args):
        pass

    def _send(self, status: int, data: bytes, kind="application/json"):
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path == "/v1/models":
            self._send(
                200, self.script.get("models", b'{"data": [{"id": "base"}, {"id": "lora-a"}]}')
            )
        elif self.path == "/props" and "props" in self.script:
            self._send(200, json.dumps(self.script["props"]).encode())
        else:
            self._send(404, b'{"detail": "Not Found"}')

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.bodies.append(body)
        replies = self.script["chat"]
        status, data = replies.pop(0) if len(replies) > 1 else replies[0]
        if status != 200:
            return self._send(status, data)
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        self.wfile.flush()
        time.sleep(self.script.get("delay", 0))  # a long prompt evaluation
        try:
            self.wfile.write(data)
        except OSError:
            pass  # the client went away


def sse(*events) -> bytes:
    return b"".join(
        f"data: {e if isinstance(e, str) else json.dumps(e)}\n\n".encode() for e in events
    )


def delta(text=None, finish=None):
    return {"choices": [{"delta": {"content": text} if text else {}, "finish_reason": finish}]}


@pytest.fixture
def fake():
    """(base URL, script, request bodies) of a fresh scripted server."""
    Fake.script, Fake.bodies = {}, []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Fake)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_port}/v1", Fake.script, Fake.bodies
    httpd.shutdown()
    httpd.server_close()


def test_the_request_carries_the_adapter_model_sampling_and_no_names(fake):
    url, script, bodies = fake
    usage = {"prompt_tokens": 40, "completion_tokens": 2,
             "prompt_tokens_details": {"cached_tokens": 30}}  # fmt: skip
    script["chat"] = [(200, sse(delta("Hi"), delta(" there", "stop"),
                                {"choices": [], "usage": usage}, "[DONE]"))]  # fmt: skip
    script["props"] = {"default_generation_settings": {"n_ctx": 8192}}
    engine = OpenAIRemoteEngine(url, adapters={"a": "lora-a"})
    assert engine.context_length == 8192  # llama-server's /props
    engine.set_adapter("a")
    messages = [{"role": "user", "content": "Hello", "name": "Bob"}]
    params = GenerationParams(temperature=0.7, top_k=20, max_new_tokens=9, seed=4, stop=["\n"])
    assert reply(engine, messages, **params.to_dict()) == "Hi there"
    sent = bodies[-1]
    assert sent["model"] == "lora-a" and sent["stream"] is True
    assert sent["messages"] == [{"role": "user", "content": "Hello"}]
    assert (sent["temperature"], sent["top_k"], sent["max_tokens"], sent["seed"]) == (0.7, 20, 9, 4)
    assert sent["stop"] == ["\n"] and sent["stream_options"] == {"include_usage": True}
    assert sent["repeat_penalty"] == sent["repetition_penalty"] == 1.1
    stats = engine.last_stats
    assert (stats.prompt_tokens, stats.prompt_eval_tokens, stats.completion_tokens) == (40, 10, 2)
    engine.set_adapter(None)
    reply(engine, messages)
    assert bodies[-1]["model"] == "base"


def test_a_strict_server_gets_the_standard_fields_only(fake):
    url, script, bodies = fake
    script["chat"] = [
        (400, b'{"error": {"message": "Unrecognized request argument supplied: top_k"}}'),
        (200, sse(delta("ok", "length"), "[DONE]")),
    ]
    engine = OpenAIRemoteEngine(url)
    assert reply(engine, HELLO) == "ok" and engine.last_stats.finish_reason == "length"
    assert "top_k" in bodies[0] and "top_k" not in bodies[1] and "stream_options" not in bodies[1]
    assert engine.count_tokens(HELLO) > 8  # no tokenize endpoint here: estimated


NEW_SAMPLERS = ("dry_", "xtc_", "dynatemp_", "top_n_sigma", "mirostat")


def test_the_new_samplers_go_by_llama_servers_names_only_when_on(fake):
    url, script, bodies = fake
    script["chat"] = [(200, sse(delta("ok", "stop"), "[DONE]"))]
    engine = OpenAIRemoteEngine(url)
    reply(engine, HELLO)  # all off: none of their fields is sent
    assert not [key for key in bodies[-1] if key.startswith(NEW_SAMPLERS)]
    on = dict(dry_multiplier=0.8, dry_allowed_length=3, dry_sequence_breakers=["\n", "*"],
              xtc_probability=0.5, xtc_threshold=0.15, dynatemp_range=0.4, top_n_sigma=1.5,
              mirostat_mode=2, mirostat_tau=4.0)  # fmt: skip
    reply(engine, HELLO, **on)
    sent = bodies[-1]
    assert (sent["dry_multiplier"], sent["dry_base"], sent["dry_allowed_length"]) == (0.8, 1.75, 3)
    assert sent["dry_penalty_last_n"] == -1 and sent["dry_sequence_breakers"] == ["\n", "*"]
    assert (sent["xtc_probability"], sent["xtc_threshold"]) == (0.5, 0.15)
    assert (sent["dynatemp_range"], sent["dynatemp_exponent"]) == (0.4, 1.0)
    assert sent["top_n_sigma"] == 1.5
    assert sent["mirostat"] == sent["mirostat_mode"] == 2 and sent["mirostat_tau"] == 4.0
    reply(engine, HELLO, xtc_probability=0.5)  # one on: only its own fields
    assert [key for key in bodies[-1] if key.startswith(NEW_SAMPLERS)] == [
        "xtc_probability",
        "xtc_threshold",
    ]


def test_a_server_refusing_a_sampler_field_is_asked_again_without_the_extras(fake):
    url, script, bodies = fake
    script["chat"] = [
        (422, b'{"detail": [{"loc": ["body", "dry_multiplier"], "msg": "extra fields"}]}'),
        (200, sse(delta("ok", "stop"), "[DONE]")),
    ]
    engine = OpenAIRemoteEngine(url)
    assert reply(engine, HELLO, dry_multiplier=0.8) == "ok"
    assert "dry_multiplier" in bodies[0] and "dry_multiplier" not in bodies[1]


def test_server_errors_are_one_sentence_errors(fake):
    url, script, _ = fake
    engine = OpenAIRemoteEngine(url)
    script["chat"] = [(200, sse(delta("Hi"), {"error": {"message": "out of memory"}}))]
    with pytest.raises(GenerationError, match="stopped the reply \\(out of memory\\)"):
        reply(engine, HELLO)
    assert engine.last_stats.finish_reason == "error"
    script["chat"] = [(200, sse(delta("Hi")))]  # the stream ends with no finish and no [DONE]
    with pytest.raises(GenerationError, match="closed the stream before the reply finished"):
        reply(engine, HELLO)
    script["chat"] = [
        (400, b'{"error": {"message": "the request exceeds the available context size"}}')
    ]
    with pytest.raises(ContextOverflowError, match="prompt is too long"):
        reply(engine, HELLO)
    script["chat"] = [(500, b"Internal Server Error")]
    with pytest.raises(GenerationError, match="answered 500 \\(Internal Server Error\\)"):
        reply(engine, HELLO)


def test_a_server_that_is_not_openai_compatible_is_a_load_error(fake):
    url, script, _ = fake
    script["models"] = b"<html>hello</html>"
    with pytest.raises(ModelLoadError, match="is not an OpenAI-compatible server"):
        OpenAIRemoteEngine(url)
    script["models"] = b'{"data": []}'
    with pytest.raises(ModelLoadError, match="serves no model"):
        OpenAIRemoteEngine(url)


def test_cancel_wakes_a_wait_for_the_first_token(fake):
    url, script, _ = fake
    script["chat"], script["delay"] = [(200, sse(delta("late", "stop"), "[DONE]"))], 3
    engine = OpenAIRemoteEngine(url)
    cancel = threading.Event()
    threading.Timer(0.2, cancel.set).start()
    started = time.perf_counter()
    assert reply(engine, HELLO, cancel=cancel) == ""
    assert time.perf_counter() - started < 1.5
    assert engine.last_stats.finish_reason == "cancelled"


def test_the_url_may_pick_a_model(fake):
    url, script, bodies = fake
    script["chat"] = [(200, sse(delta("ok", "stop"), "[DONE]"))]
    engine = OpenAIRemoteEngine(url + "?model=lora-a")
    assert engine.model == engine.base_model == "lora-a" and engine.model_name.endswith("/lora-a")
    reply(engine, HELLO)
    assert bodies[-1]["model"] == "lora-a"
    with pytest.raises(ModelLoadError, match="serves no model 'x' \\(it lists base, lora-a\\)"):
        OpenAIRemoteEngine(url + "?model=x")
