"""`cosplay models pull` against a fake Hugging Face Hub on loopback.

The fake serves what huggingface_hub 2.x asks for (read from its source): `GET
/api/models/{repo}[/revision/{rev}]` (the file list, sizes with `blobs=True`), and `HEAD`/`GET
/{repo}/resolve/{rev}/{file}` with `X-Repo-Commit`, `ETag` and `Content-Length`, `Range`
answered with 206, and `X-Error-Code` (RepoNotFound, GatedRepo, EntryNotFound) on errors.
It counts the bytes it serves, so a resumed pull can be seen to fetch only the rest.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from engines import hub
from engines.hub import PullCancelled, PullError, pull
from tui.cli import main

COMMIT = "a" * 40
GGUF_REPO = "tiny/Tiny-GGUF"
HF_REPO = "tiny/Tiny-HF"
GATED = "tiny/Gated"
BIG = bytes(range(256)) * 4096  # 1 MiB: 16 chunks of 64 KiB


def _files() -> dict[str, dict[str, bytes]]:
    return {
        GGUF_REPO: {
            "tiny-q8_0.gguf": b"GGUF" + b"8" * 1000,
            "tiny-q4_k_m.gguf": BIG,
            "README.md": b"# tiny",
        },
        HF_REPO: {
            "config.json": b'{"architectures": ["LlamaForCausalLM"]}',
            "tokenizer.json": b"{}",
            "model.safetensors": b"\x02\x00\x00\x00\x00\x00\x00\x00{}",
            "pytorch_model.bin": b"old weights",
            "README.md": b"# tiny",
        },
        GATED: {"model.gguf": b"GGUF"},
    }


class FakeHub:
    def __init__(self):
        self.files = _files()
        self.served = 0  # body bytes of GET /resolve
        self.ranges: list[str | None] = []
        self.drop_next = False  # the next file GET stops halfway and closes the connection
        hub_state = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                hub_state.answer(self, body=True)

            def do_HEAD(self) -> None:
                hub_state.answer(self, body=False)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def error(self, handler, status: int, code: str) -> None:
        handler.send_response(status)
        handler.send_header("X-Error-Code", code)
        handler.send_header("X-Repo-Commit", COMMIT)
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    def answer(self, handler, body: bool) -> None:
        path = handler.path.split("?")[0]
        api = re.fullmatch(r"/api/models/([^/]+/[^/]+)(?:/revision/[^/]+)?", path)
        resolve = re.fullmatch(r"/([^/]+/[^/]+)/resolve/[^/]+/(.+)", path)
        repo = (api or resolve).group(1) if (api or resolve) else None
        if repo not in self.files:
            return self.error(handler, 401, "RepoNotFound")
        if repo == GATED and resolve:
            return self.error(handler, 403, "GatedRepo")
        if api:
            siblings = [{"rfilename": n, "size": len(d)} for n, d in self.files[repo].items()]
            data = json.dumps({"id": repo, "sha": COMMIT, "siblings": siblings}).encode()
            handler.send_response(200)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(data)))
            handler.end_headers()
            handler.wfile.write(data)
            return None
        data = self.files[repo].get(resolve.group(2))
        if data is None:
            return self.error(handler, 404, "EntryNotFound")
        start = 0
        wanted = handler.headers.get("Range")
        if body:
            self.ranges.append(wanted)
        if wanted and body:
            start = int(re.fullmatch(r"bytes=(\d+)-", wanted).group(1))
        handler.send_response(206 if start else 200)
        handler.send_header("X-Repo-Commit", COMMIT)
        handler.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
        handler.send_header("Accept-Ranges", "bytes")
        handler.send_header("Content-Length", str(len(data) - start))
        if start:
            handler.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        handler.end_headers()
        if not body:
            return None
        rest = data[start:]
        if self.drop_next:
            self.drop_next = False
            rest = rest[: len(rest) // 2]
        self.served += len(rest)  # counted first: the client may finish before write returns
        handler.wfile.write(rest)
        return None


@pytest.fixture
def fake_hub(monkeypatch, tmp_path):
    from huggingface_hub import constants

    server = FakeHub()
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr(constants, "DOWNLOAD_CHUNK_SIZE", 64 * 1024)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    yield server
    server.server.shutdown()
    server.server.server_close()


def test_a_gguf_repo_pulls_its_q4_k_m_file_with_progress(fake_hub, tmp_path):
    seen = []
    result = pull(GGUF_REPO, tmp_path / "models", progress=seen.append)
    assert result.path == tmp_path / "models" / "tiny-q4_k_m.gguf"
    assert result.path.read_bytes() == BIG
    assert [name for name, _ in result.others] == ["tiny-q8_0.gguf"]
    assert seen[-1].done == seen[-1].total == len(BIG)
    assert all(p.speed > 0 and p.filename == "tiny-q4_k_m.gguf" for p in seen)
    assert len(seen) == len(BIG) // (64 * 1024)  # a report per chunk
    assert not list((tmp_path / "models").glob(".*part"))  # the partial file became the model


def test_a_named_file_and_a_model_repo(fake_hub, tmp_path):
    named = pull(f"{GGUF_REPO}:tiny-q8_0.gguf", tmp_path / "models")
    assert named.path.read_bytes() == _files()[GGUF_REPO]["tiny-q8_0.gguf"]
    model = pull(HF_REPO, tmp_path / "models")
    assert model.path == tmp_path / "models" / "tiny--Tiny-HF"
    # config, tokenizer and one format of weights: not the README, not the .bin copy
    assert sorted(p.name for p in model.path.iterdir()) == [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
    ]


def test_a_pull_stopped_halfway_continues_where_it_stopped(fake_hub, tmp_path):
    cancel = threading.Event()

    def stop_at_half(progress) -> None:
        if progress.done >= len(BIG) // 2:
            cancel.set()

    with pytest.raises(PullCancelled, match="pull again to continue"):
        pull(GGUF_REPO, tmp_path / "models", progress=stop_at_half, cancel=cancel)
    assert not (tmp_path / "models" / "tiny-q4_k_m.gguf").exists()
    (part,) = (tmp_path / "models").glob(".tiny-q4_k_m.gguf.*.part")
    kept = part.stat().st_size
    assert len(BIG) // 2 <= kept < len(BIG)
    fake_hub.served = 0
    result = pull(GGUF_REPO, tmp_path / "models")
    assert fake_hub.ranges[-1] == f"bytes={kept}-"
    assert fake_hub.served == len(BIG) - kept  # only the rest was fetched again
    assert result.path.read_bytes() == BIG  # and the bytes join up exactly
    assert not part.exists()


def test_a_dropped_connection_resumes_with_a_range_request(fake_hub, tmp_path):
    fake_hub.drop_next = True
    result = pull(GGUF_REPO, tmp_path / "models")
    assert result.path.read_bytes() == BIG
    assert fake_hub.ranges[0] is None and fake_hub.ranges[1] == f"bytes={len(BIG) // 2}-"
    assert fake_hub.served == len(BIG)  # half, then the other half: nothing twice


def test_an_existing_file_is_not_fetched_again(fake_hub, tmp_path):
    pull(GGUF_REPO, tmp_path / "models")
    fake_hub.served = 0
    pull(GGUF_REPO, tmp_path / "models")
    assert fake_hub.served == 0


@pytest.mark.parametrize(
    "source, expected",
    [
        ("tiny/Missing", "There is no model tiny/Missing on the Hugging Face Hub"),
        (GATED, "tiny/Gated is gated: accept its terms at https://huggingface.co/tiny/Gated"),
        (f"{GGUF_REPO}:nope.gguf", "has no file nope.gguf; it has tiny-q8_0.gguf, tiny-q4_k_m"),
        ("not a repo", "is not a Hub repo"),
    ],
)
def test_hub_errors_are_one_sentence_and_exit_2(fake_hub, capsys, source, expected):
    assert main(["models", "pull", source]) == 2
    err = capsys.readouterr().err
    assert expected in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_offline_is_one_sentence(monkeypatch, capsys):
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens on port 9
    assert main(["models", "pull", GGUF_REPO]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cosplay: Cannot reach the Hugging Face Hub to pull tiny/Tiny-GGUF")
    assert "cosplay models list" in err and len(err.strip().splitlines()) == 1
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["models", "pull", GGUF_REPO]) == 2
    assert "HF_HUB_OFFLINE is set" in capsys.readouterr().err


def test_the_cli_pull_prints_progress_and_the_path(fake_hub, capsys, cosplay_home):
    assert main(["models", "pull", GGUF_REPO]) == 0
    out, err = capsys.readouterr()
    assert out.strip() == str(cosplay_home / "models" / "tiny-q4_k_m.gguf")
    assert "tiny-q4_k_m.gguf 100% 1.0 MB / 1.0 MB at" in err  # size and speed
    assert "Other files in tiny/Tiny-GGUF: tiny-q8_0.gguf" in err


def test_choosing_files_from_a_split_and_an_unknown_quantization():
    files = [
        ("m-q4_k_m-00001-of-00002.gguf", 5),
        ("m-q4_k_m-00002-of-00002.gguf", 5),
        ("m-q8_0.gguf", 9),
        ("mmproj-f16.gguf", 1),
    ]
    chosen, others = hub.choose_files("o/m", files, None)
    assert chosen == ["m-q4_k_m-00001-of-00002.gguf", "m-q4_k_m-00002-of-00002.gguf"]
    assert others == [("m-q8_0.gguf", 9)]
    with pytest.raises(PullError, match="no Q4_K_M file; choose one with o/m:FILE from: a.gguf"):
        hub.choose_files("o/m", [("a.gguf", 1), ("b.gguf", 2)], None)
