"""HTTP to an OpenAI-compatible server, with the standard library only: the server's address
(from the URL the user gave), one request per connection, JSON calls, server-sent events, and
shutting a socket so a cancelled reply stops at once. Used by engines/openai_remote.py."""

from __future__ import annotations

import http.client
import json
import socket
import threading
import urllib.parse
from collections.abc import Iterator

from engines.base import ModelLoadError
from engines.i18n import _

PROBE_TIMEOUT_S = 10.0  # the longest wait for the model list, /props and tokenize answers


class Server:
    """Where the server is: `url` (its API, normally …/v1), `api` (that path), `root` (the
    path beside it, for llama-server's /props and /tokenize), and the model `?model=ID` asks for."""

    def __init__(self, base_url: str, *, api_key: str | None, timeout: float):
        parts = urllib.parse.urlsplit(base_url.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ModelLoadError(
                _(
                    "{base_url} is not a server URL; pass one like http://host:8080/v1.",
                    base_url=base_url,
                )
            )
        self.https = parts.scheme == "https"
        self.hostname = parts.hostname
        try:
            self.port = parts.port or (443 if self.https else 80)
        except ValueError:
            raise ModelLoadError(
                _(
                    "{base_url} has a bad port; pass one like http://host:8080/v1.",
                    base_url=base_url,
                )
            ) from None
        path = parts.path.rstrip("/")
        self.api = path or "/v1"
        self.root = path.removesuffix("/v1") if path.endswith("/v1") else path
        self.host = f"{self.hostname}:{self.port}"
        self.url = f"{parts.scheme}://{self.host}{self.api}"
        self.wanted_model = urllib.parse.parse_qs(parts.query).get("model", [None])[0]
        self.api_key = api_key
        self.timeout = timeout

    def open(self, method: str, path: str, body: dict | None = None, timeout: float = 0):
        """Send one request on a fresh connection: (connection, its socket, response)."""
        kind = http.client.HTTPSConnection if self.https else http.client.HTTPConnection
        conn = kind(self.hostname, self.port, timeout=timeout or self.timeout)
        headers = {"Accept": "application/json, text/event-stream"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        try:
            conn.request(method, path, json.dumps(body) if body is not None else None, headers)
            sock = conn.sock
            return conn, sock, conn.getresponse()
        except BaseException:
            conn.close()
            raise

    def call(self, method: str, path: str, body: dict | None = None) -> dict:
        """A JSON request with a short timeout; raises HTTPFailure on an error status."""
        conn, _, response = self.open(method, path, body, PROBE_TIMEOUT_S)
        try:
            raw = response.read()
        finally:
            conn.close()
        if response.status >= 400:
            raise HTTPFailure(response.status, error_text(raw))
        answer = json.loads(raw)
        if not isinstance(answer, dict):
            raise ValueError("not a JSON object")
        return answer


class HTTPFailure(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(f"{status}: {message}")
        self.status, self.message = status, message


def error_text(raw: bytes) -> str:
    """The server's own words from an error body (OpenAI, FastAPI or plain text)."""
    try:
        data = json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", "replace").strip()[:300] or "no details"
    error = data.get("error", data.get("detail", data)) if isinstance(data, dict) else data
    if isinstance(error, dict):
        error = error.get("message", error)
    return str(error).strip()[:300]


def reason(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "no answer in time"
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__


def sse_events(response: http.client.HTTPResponse) -> Iterator[tuple[str, str]]:
    """(field, payload) per server-sent event: "data" or "error" (llama-server's)."""
    data: list[str] = []
    while line := response.readline():
        text = line.decode("utf-8", "replace").rstrip("\r\n")
        if not text:
            if data:
                yield "data", "\n".join(data)
            data = []
        elif text.startswith("data:"):
            data.append(text[5:].removeprefix(" "))
        elif text.startswith("error:"):
            yield "error", text[6:].strip()
    if data:
        yield "data", "\n".join(data)


def close_on_cancel(cancel: threading.Event, done: threading.Event, sock: socket.socket) -> None:
    """Wake a read blocked on a slow server (a long prompt) once `cancel` is set."""
    while not done.wait(0.05):
        if cancel.is_set():
            shut(sock)
            return


def shut(sock: socket.socket | None) -> None:
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)  # the server sees the disconnect and stops
        except OSError:
            pass
