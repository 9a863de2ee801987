"""What an OpenAI-compatible server is and can do, asked over HTTP (engines/openai_http.py)
for the remote engine (engines/openai_remote.py).

Endpoints asked (paths under the URL given, normally `…/v1`, or beside it):
* `GET /v1/models` at load: the server is up, takes the key, and which model ids it serves
  (the first is the default; `?model=ID` on the URL picks another) and who owns each (vLLM
  says `owned_by: vllm`).
* The context size: vLLM's `max_model_len` in the model list, else llama-server's
  `GET /props`; None when neither says.
* A token count, tried in order until one answers (the first that does is kept):
  `POST /tokenize` (llama-server, vLLM), `POST /extras/tokenize/count` (llama_cpp.server),
  `POST /v1/internal/token-count` (text-generation-webui).
* Whether it continues a final assistant message (vLLM's `continue_final_message`) rather
  than closing it and writing a new reply after it: llama-server does when its
  `POST /apply-template` renders a prompt ending with such a message, and vLLM does; others,
  llama_cpp.server among them, close the message (verified: tests/test_continue.py).
"""

from __future__ import annotations

import http.client
from dataclasses import dataclass

from engines.base import ModelLoadError
from engines.i18n import _
from engines.openai_http import HTTPFailure, Server, reason

_TOKENIZERS = (  # (path, api path?, request body, the count in the answer)
    ("/tokenize", False, lambda text, model: {"content": text, "prompt": text, "model": model,
        "add_special": False, "add_special_tokens": False},
        lambda a: a["count"] if "count" in a else len(a["tokens"])),
    ("/extras/tokenize/count", False, lambda text, model: {"input": text, "model": model},
        lambda a: a["count"]),
    ("/internal/token-count", True, lambda text, model: {"text": text}, lambda a: a["length"]),
)  # fmt: skip

_PROBE = "CosplayPrefillProbe"  # the final assistant message of the /apply-template probe


@dataclass(frozen=True)
class ServedModels:
    """The server's model list: the ids in its order, who owns each, and the list as sent."""

    ids: list[str]
    owners: dict[str, object]
    listing: dict


def list_models(server: Server) -> ServedModels:
    """The models the server serves; ModelLoadError, one sentence with the fix, when it cannot
    be reached, refuses the key, is not OpenAI-compatible or serves none."""
    url = server.url
    try:
        listing = server.call("GET", f"{server.api}/models")
        ids = [str(entry["id"]) for entry in listing["data"]]
        owners = {str(entry["id"]): entry.get("owned_by") for entry in listing["data"]}
    except HTTPFailure as exc:
        if exc.status in (401, 403):
            fix = (
                _("check the key in the variable --api-key-env names")
                if server.api_key
                else _("pass --api-key-env VAR with a variable holding the server's key")
            )
            raise ModelLoadError(
                _(
                    "The server at {url} refused access ({message}); {fix}.",
                    url=url,
                    message=exc.message,
                    fix=fix,
                )
            ) from None
        raise ModelLoadError(
            _(
                "The server at {url} answered {status} for /models ({message}); pass its OpenAI-compatible base URL, such as http://host:8080/v1.",
                url=url,
                status=exc.status,
                message=exc.message,
            )
        ) from None
    except (OSError, http.client.HTTPException) as exc:
        raise ModelLoadError(
            _(
                "Cannot reach the server at {url} ({problem}); check that it is running and that the host and port are right.",
                url=url,
                problem=reason(exc),
            )
        ) from None
    except (ValueError, KeyError, TypeError):
        raise ModelLoadError(
            _(
                "{url} is not an OpenAI-compatible server (its /models answer is not a model list); pass the URL of its /v1 API.",
                url=url,
            )
        ) from None
    if not ids:
        raise ModelLoadError(
            _("The server at {url} serves no model; load one there first.", url=url)
        )
    return ServedModels(ids, owners, listing)


def reported_context(server: Server, served: ServedModels, model: str) -> int | None:
    """The context size the server reports for `model` (vLLM's model list, llama-server's
    /props), or None."""
    for entry in served.listing["data"]:
        if entry.get("id") == model and isinstance(entry.get("max_model_len"), int):
            return entry["max_model_len"]  # vLLM
    try:
        props = server.call("GET", f"{server.root}/props")  # llama-server
    except (HTTPFailure, OSError, http.client.HTTPException, ValueError):
        return None
    settings = props.get("default_generation_settings") or {}
    n_ctx = settings.get("n_ctx") or props.get("n_ctx")
    return n_ctx if isinstance(n_ctx, int) and n_ctx > 0 else None


def continues_final_message(server: Server, owner: object) -> bool:
    """Whether the server continues a final assistant message (see the module docstring):
    its /apply-template says so, or, where it has none, its model is owned by vLLM."""
    probe = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": _PROBE}]
    body = {"messages": probe, "continue_final_message": True, "add_generation_prompt": False}
    try:
        answer = server.call("POST", f"{server.root}/apply-template", body)
        return str(answer.get("prompt", "")).endswith(_PROBE)
    except (HTTPFailure, OSError, http.client.HTTPException, ValueError, AttributeError):
        return owner == "vllm"


class ServerTokenizer:
    """The server's own token count of a text, through the first endpoint it has."""

    def __init__(self, server: Server):
        self.server = server
        self._next = 0  # index into _TOKENIZERS of the endpoint to try next

    def count(self, text: str, model: str) -> int | None:
        """The server's count of `text`; None when it has no tokenize endpoint, or when the
        one it has failed this time (busy or broken: asked again next time)."""
        while self._next < len(_TOKENIZERS):
            path, under_api, body, read = _TOKENIZERS[self._next]
            prefix = self.server.api if under_api else self.server.root
            try:
                return int(read(self.server.call("POST", prefix + path, body(text, model))))
            except HTTPFailure as exc:
                if exc.status not in (400, 404, 405, 422, 501):
                    return None  # busy or broken now: estimate this time, ask again later
            except (OSError, http.client.HTTPException):
                return None
            except (ValueError, KeyError, TypeError):
                pass
            self._next += 1  # this server has no such endpoint
        return None
