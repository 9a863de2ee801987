"""Remote engine: a model served by any OpenAI-compatible server over HTTP.

llama-server, vLLM, Ollama, text-generation-webui and llama-cpp-python's
`llama_cpp.server` all speak it: `cosplay chat --model http://host:8080/v1`.
The server holds the model and applies its own chat template; we send chat
messages and read the reply as server-sent events. Only the standard library's
`http.client` is used, one connection per request, so nothing heavy is imported.

The HTTP (address, requests, server-sent events, socket shutdown) is engines/openai_http.py;
reading one reply's events (text, usage, finish) is engines/openai_stream.py.

What the server is and can do (its models, context size, token counting, whether it
continues a reply) is asked by engines/openai_probe.py. Chat goes to
`POST /v1/chat/completions` with `stream: true` and `stream_options.include_usage` for token
counts; where no usage comes (llama_cpp.server), the reply's pieces are counted and the
prompt is estimated as in `count_tokens`: the server's count of each message's text (else
about one token per 3 bytes of UTF-8) plus MESSAGE_OVERHEAD tokens of template markup per
message. `context_length` is `n_ctx` if given, else what the server reports, else
DEFAULT_N_CTX (4096).

Speaker names are not sent: messages go out as role and content only. The session layer
already writes "Name: " into the text where a template does not render names ("server" is
not a name-aware template), and some servers reject or silently drop the `name` field.
Sampling settings outside the OpenAI spec (top_k, min_p, typical_p, repetition penalty) are
sent under the names llama.cpp and vLLM read (the request: engines/openai_request.py); a server
that rejects them gets the request again without them. A reply without a seed gets a random one, recorded in `last_stats`.
Cancelling stops at the next chunk, or at once while the server is still reading the prompt
(a watcher shuts the socket); either way the server sees the client go and stops. An adapter
is another model id on the server (vLLM's LoRA modules, Ollama's models); a named template
cannot be applied remotely and is ignored with a log line.

Continuing a reply (`prefill`) sends it as a final assistant message with vLLM's
`continue_final_message: true, add_generation_prompt: false`, which llama-server takes too
(and does by default for a final assistant message). Only servers known to honour it get it
(openai_probe.continues_final_message); others close the message and write a new reply after
it, so they get a CosplayError instead of a wrong reply. llama_cpp.server by default
interrupts a stream when another request comes in, so a `count_tokens` during a reply ends
that reply early there; it also ends a stream whose prompt overflows its context without a
word, which is why an unreported context size shows up in that error.
"""

from __future__ import annotations

import http.client
import logging
import math
import os
import secrets
import socket
import threading
import time
from collections.abc import Iterator

from engines.base import (
    ChatMessage,
    ContextOverflowError,
    CosplayError,
    GenerationError,
    GenerationParams,
    GenerationStats,
    ModelLoadError,
)
from engines.i18n import _
from engines.openai_adapters import ServedAdapters
from engines.openai_http import Server, close_on_cancel, error_text, reason, shut
from engines.openai_probe import (
    ServerTokenizer,
    continues_final_message,
    list_models,
    reported_context,
)
from engines.openai_request import chat_request, names_an_extra
from engines.openai_stream import ChatStream

DEFAULT_N_CTX = 4096
MESSAGE_OVERHEAD = 8  # tokens a chat template adds around one message (ChatML and Llama 3: ~5)
REPLY_OVERHEAD = 8  # the generation prompt and a BOS


log = logging.getLogger("cosplay.remote")


class OpenAIRemoteEngine(ServedAdapters):
    kind = "remote"  # its entry in engines/registry.py
    adapter_format = "name"  # an "adapter" is another model id the server serves

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        template: str | None = None,
        n_ctx: int | None = None,
        adapters: dict[str, str] | None = None,
        timeout: float = 300.0,
    ):
        """Connect to the server at `base_url`; `timeout` bounds every wait, the first token
        included (the load-time checks wait at most openai_http.PROBE_TIMEOUT_S)."""
        if n_ctx is not None and n_ctx < 16:
            raise ModelLoadError(
                _("--n-ctx {n_ctx} is too small; give at least 16 tokens.", n_ctx=n_ctx)
            )
        self.server = Server(base_url, api_key=api_key, timeout=timeout)
        self.host, self.url = self.server.host, self.server.url
        self._api, self._root = self.server.api, self.server.root
        self.last_stats: GenerationStats | None = None
        self.template_name = "server"  # the server renders prompts with its own template
        self.speaker = ""
        self.active_adapter: str | None = None
        self.default_adapter: str | None = None
        self._adapter_sources: dict[str, str] = {}  # adapter name -> model id
        self._token_cache: dict[str, int] = {}  # message text -> tokens, as the server counted
        self._tokenizer = ServerTokenizer(self.server)
        self._send_extras = True  # False once the server rejected the non-OpenAI fields
        self._continues: bool | None = None  # whether it continues a final assistant message
        self._stream_sock: socket.socket | None = None

        self._served = list_models(self.server)
        wanted = self.server.wanted_model
        if wanted and wanted not in self._served.ids:
            raise ModelLoadError(
                _(
                    "The server at {url} serves no model {wanted!r} (it lists {models}); pick one of those with ?model=ID.",
                    url=self.url,
                    wanted=wanted,
                    models=", ".join(self._served.ids[:8]),
                )
            )
        self.base_model = self.model = wanted or self._served.ids[0]
        # llama_cpp.server names a model by its file path: show the file's name
        shown = (
            self.base_model.rsplit("/", 1)[-1]
            if self.base_model.startswith("/")
            else self.base_model
        )
        self.model_name = f"{self.host}/{shown}"
        reported = None if n_ctx else reported_context(self.server, self._served, self.model)
        self.context_length = n_ctx or reported or DEFAULT_N_CTX
        self._ctx_guessed = not (n_ctx or reported)  # then an overflow error names --n-ctx
        self.set_template(template)
        for name, model_id in (adapters or {}).items():
            self.load_adapter(name, model_id)

    @classmethod
    def from_spec(cls, spec, progress=None) -> OpenAIRemoteEngine:
        """From a `ModelSpec`: `model` is the URL, `api_key_env` names the key's variable
        (`progress`: nothing loads here)."""
        variable = getattr(spec, "api_key_env", None)
        key = None
        if variable:
            key = os.environ.get(variable)
            if not key:
                raise ModelLoadError(
                    _(
                        "The environment variable {variable} (from --api-key-env) is not set; export it with the server's API key.",
                        variable=variable,
                    )
                )
        return cls(
            spec.model,
            api_key=key,
            template=spec.template,
            n_ctx=spec.n_ctx,
            adapters=dict(spec.adapters or {}),
        )

    # --- tokens ---------------------------------------------------------------------------

    def count_tokens(self, messages: list[ChatMessage]) -> int:
        return self._count(messages, ask_server=True)

    def _count(self, messages: list[ChatMessage], ask_server: bool) -> int:
        total = REPLY_OVERHEAD
        for message in messages:
            total += MESSAGE_OVERHEAD + self._text_tokens(message.get("content", ""), ask_server)
        return total

    def _text_tokens(self, text: str, ask_server: bool) -> int:
        if not text:
            return 0
        if text in self._token_cache:
            return self._token_cache[text]
        count = self._tokenizer.count(text, self.model) if ask_server else None
        if count is None:
            return math.ceil(len(text.encode("utf-8")) / 3)  # not cached: ask again next time
        if len(self._token_cache) > 4096:
            self._token_cache.clear()
        self._token_cache[text] = count
        return count

    # --- generation -----------------------------------------------------------------------

    def _start(self, messages, params, seed, prefill=""):
        """POST the chat request: (connection, socket, response) of a 200 stream."""
        while True:
            body = chat_request(
                self.model, messages, params, seed, prefill=prefill, extras=self._send_extras
            )
            try:
                conn, sock, response = self.server.open(
                    "POST", f"{self._api}/chat/completions", body
                )
            except (OSError, http.client.HTTPException) as exc:
                raise GenerationError(
                    _(
                        "Lost the server at {url} ({problem}); check that it is still running, then retry.",
                        url=self.url,
                        problem=reason(exc),
                    )
                ) from None
            if response.status < 400:
                return conn, sock, response
            message = error_text(response.read())
            conn.close()
            if response.status in (400, 422) and self._send_extras and names_an_extra(message):
                self._send_extras = False  # a strict server: ask again with the standard fields
                continue
            if response.status in (401, 403):
                fix = _("check the API key")
            elif response.status == 400 and "context" in message.lower():
                raise ContextOverflowError(
                    _(
                        "The server at {url} says the prompt is too long ({message}); lower max history rounds or give the server a larger context.",
                        url=self.url,
                        message=message,
                    )
                )
            elif response.status == 404:
                fix = _("check that it serves the model {model!r}", model=self.model)
            else:
                fix = _("check the server's log")
            raise GenerationError(
                _(
                    "The server at {url} answered {status} ({message}); {fix}.",
                    url=self.url,
                    status=response.status,
                    message=message,
                    fix=fix,
                )
            )

    def continues_replies(self) -> bool:
        """Whether the server continues a final assistant message rather than writing a new
        reply after it (see the module docstring); asked once."""
        if self._continues is None:
            owner = self._served.owners.get(self.model)
            self._continues = continues_final_message(self.server, owner)
        return self._continues

    def stream_chat(
        self,
        messages: list[ChatMessage],
        params: GenerationParams,
        cancel: threading.Event,
        *,
        prefill: str = "",
    ) -> Iterator[str]:
        if params.num_beams > 1:
            raise CosplayError(
                _("Beam search is not available on a remote server; set beams to 1.")
            )
        if prefill and not self.continues_replies():
            raise CosplayError(
                _(
                    "The server at {url} cannot continue a reply (it would write a new one after it); continuing needs a local engine (a .gguf file or a model directory) or a llama-server or vLLM server.",
                    url=self.url,
                )
            )
        started = time.perf_counter()
        seed = secrets.randbits(31) if params.seed is None else params.seed
        stats = GenerationStats(seed=seed, finish_reason="error")
        self.last_stats = None
        conn, sock, response = self._start(messages, params, seed, prefill)
        stream = ChatStream(response, self.url)
        self._stream_sock, done = sock, threading.Event()
        threading.Thread(target=close_on_cancel, args=(cancel, done, sock), daemon=True).start()
        try:
            for text in stream.texts(cancel):
                if stream.pieces == 1:
                    stats.ttft_s = time.perf_counter() - started
                yield text
            if cancel.is_set():
                stats.finish_reason = "cancelled"
            elif stream.ended or stream.finish:
                stats.finish_reason = "length" if stream.finish == "length" else "stop"
            else:
                hint = (
                    _(
                        "; if the prompt was too long for the server, pass its context size with "
                        "--n-ctx (now {context_length}, a guess)",
                        context_length=self.context_length,
                    )
                    if self._ctx_guessed and not stream.pieces
                    else ""
                )
                raise GenerationError(
                    _(
                        "The server at {url} closed the stream before the reply finished; check the server's log{hint}.",
                        url=self.url,
                        hint=hint,
                    )
                )
        except GeneratorExit:
            stats.finish_reason = "cancelled"  # the caller stopped reading
            raise
        except (OSError, http.client.HTTPException, ValueError, AttributeError) as exc:
            if not cancel.is_set():
                raise GenerationError(
                    _(
                        "The reply from {url} broke off ({problem}); check that the server is still running, then retry.",
                        url=self.url,
                        problem=reason(exc),
                    )
                ) from None
            stats.finish_reason = "cancelled"
        finally:
            done.set()
            shut(sock)
            conn.close()
            self._stream_sock = None
            usage = stream.usage
            stats.completion_tokens = usage.get("completion_tokens") or stream.pieces
            sent = [*messages, {"role": "assistant", "content": prefill}] if prefill else messages
            stats.prompt_tokens = usage.get("prompt_tokens") or self._count(sent, False)
            cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
            stats.prompt_eval_tokens = max(stats.prompt_tokens - cached, 0)
            stats.total_s = time.perf_counter() - started
            self.last_stats = stats

    # --- template, facts (adapters: engines/openai_adapters.py) ----------------------------

    def set_template(self, name: str | None, *, speaker: str = "") -> None:
        """The server applies its own template: a named one cannot be honoured remotely."""
        if name:
            log.info("template %r ignored: the server at %s applies its own", name, self.url)
        self.speaker = speaker

    def describe(self) -> dict[str, str]:
        facts = {"engine": "remote", "device": self.host, "model": self.model}
        if self.active_adapter:
            facts["adapter"] = self.active_adapter
        return facts

    def close(self) -> None:
        """Drop the reply in flight, if any; each request has its own connection."""
        shut(self._stream_sock)
