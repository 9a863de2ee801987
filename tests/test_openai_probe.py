"""engines/openai_probe.py against a scripted server: which tokenize endpoint a server has
(tried in order, the first that answers kept), its context size, whether it continues."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from engines.errors import ModelLoadError
from engines.openai_http import Server
from engines.openai_probe import (
    ServerTokenizer,
    continues_final_message,
    list_models,
    reported_context,
)


class Scripted(BaseHTTPRequestHandler):
    routes: dict = {}  # path -> (status, answer)
    asked: list = []

    def log_message(self, *args):
        pass

    def _answer(self):
        self.asked.append(self.path)
        status, answer = self.routes.get(self.path, (404, {"detail": "Not Found"}))
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        self._answer()

    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        self._answer()


@pytest.fixture
def server():
    Scripted.routes, Scripted.asked = {}, []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Scripted)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield Server(f"http://127.0.0.1:{httpd.server_port}/v1", api_key=None, timeout=5)
    httpd.shutdown()
    httpd.server_close()


def test_the_tokenizer_tries_each_endpoint_once_and_keeps_the_one_that_answers(server):
    Scripted.routes["/v1/internal/token-count"] = (200, {"length": 7})  # text-generation-webui
    tokenizer = ServerTokenizer(server)
    assert tokenizer.count("hello", "m") == 7
    assert Scripted.asked == ["/tokenize", "/extras/tokenize/count", "/v1/internal/token-count"]
    assert tokenizer.count("again", "m") == 7
    assert Scripted.asked[3:] == ["/v1/internal/token-count"]  # the others are not asked again
    Scripted.routes["/v1/internal/token-count"] = (503, {"error": "busy"})
    assert tokenizer.count("busy now", "m") is None  # estimated this time…
    Scripted.routes["/v1/internal/token-count"] = (200, {"length": 2})
    assert tokenizer.count("later", "m") == 2  # …and the same endpoint asked next time


def test_a_server_with_no_tokenizer_is_asked_no_more(server):
    tokenizer = ServerTokenizer(server)
    assert tokenizer.count("hello", "m") is None and len(Scripted.asked) == 3
    assert tokenizer.count("hello", "m") is None and len(Scripted.asked) == 3


def test_the_context_size_from_vllm_then_llama_server(server):
    Scripted.routes["/v1/models"] = (
        200,
        {"data": [{"id": "a", "max_model_len": 2048, "owned_by": "vllm"}, {"id": "b"}]},
    )
    served = list_models(server)
    assert (served.ids, served.owners["a"]) == (["a", "b"], "vllm")
    assert reported_context(server, served, "a") == 2048
    assert reported_context(server, served, "b") is None  # no /props either
    Scripted.routes["/props"] = (200, {"default_generation_settings": {"n_ctx": 8192}})
    assert reported_context(server, served, "b") == 8192


def test_continuing_is_probed_with_apply_template_else_known_from_the_owner(server):
    assert continues_final_message(server, "vllm") is True
    assert continues_final_message(server, "llamacpp") is False
    Scripted.routes["/apply-template"] = (200, {"prompt": "<user>Hi<assistant>CosplayPrefillProbe"})
    assert continues_final_message(server, None) is True
    Scripted.routes["/apply-template"] = (200, {"prompt": "CosplayPrefillProbe<end><assistant>"})
    assert continues_final_message(server, "vllm") is False  # the server's own answer wins


def test_an_empty_or_foreign_model_list_is_one_sentence(server):
    Scripted.routes["/v1/models"] = (200, {"data": []})
    with pytest.raises(ModelLoadError, match="serves no model; load one there first"):
        list_models(server)
    Scripted.routes["/v1/models"] = (200, {"models": "?"})
    with pytest.raises(ModelLoadError, match="is not an OpenAI-compatible server"):
        list_models(server)
