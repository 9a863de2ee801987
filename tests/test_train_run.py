"""`cosplay train` end to end on the tiny model (CPU, fp32): loss, log, outputs, GGUF, persona, resume."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from tui.cli import main

ROOT = Path(__file__).resolve().parents[1]
RECORDS = [
    {"context": "曹仁回城中，与众商议。孔明曰：", "chat": "“目今失了彝陵，势已危急。”"},
    {"context": "玄德问计。孔明笑曰：", "chat": "“亮夜观天象，见东南风起。”"},
    {"context": "众将皆惊。孔明曰：", "chat": "“天下大势，分久必合。”"},
    {"context": "鲁肃来见。孔明道：", "chat": "“你好，我是诸葛亮。”"},
]


def write_data(path: Path, copies: int = 3) -> Path:
    path.write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in RECORDS * copies),
        encoding="utf-8",
    )
    return path


def read_log(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def trained(tiny_llama, tmp_path_factory):
    """One full run through the CLI: eval split, GGUF export and persona binding."""
    root = tmp_path_factory.mktemp("trained")
    data, out, home = write_data(root / "data.jsonl"), root / "kongming", root / "home"
    argv = ["--home", str(home), "train", "--base", str(tiny_llama["hf"]), "--data", str(data)]
    argv += ["--out", str(out), "--max-steps", "40", "--lr", "5e-3", "--batch-size", "4"]
    argv += ["--val-size", "2", "--eval-steps", "10", "--save-steps", "20", "--gguf"]
    argv += ["--persona", "诸葛亮", "--speaker", "孔明", "--no-progress"]
    code = main(argv)
    return {"code": code, "data": data, "out": out, "home": home, "argv": argv}


@pytest.mark.slow
def test_training_writes_a_standard_peft_adapter_and_metadata(trained):
    out = trained["out"]
    assert trained["code"] == 0
    for name in (
        "adapter_config.json",
        "adapter_model.safetensors",
        "cosplay.json",
        "kongming.gguf",
    ):
        assert (out / name).is_file(), name
    meta = json.loads((out / "cosplay.json").read_text())
    assert meta["template"] == "cosplay" and meta["speaker"] == "孔明"
    assert meta["data"]["sha256"] == hashlib.sha256(trained["data"].read_bytes()).hexdigest()
    assert meta["data"]["format"] == "cosplay" and meta["data"]["records"] == 12
    assert meta["params"]["lora_r"] == 8 and meta["params"]["max_steps"] == 40
    assert meta["final"]["step"] == 40 and meta["final"]["train_loss"] < 1.0
    assert meta["final"]["eval_loss"] is not None
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA" and config["r"] == 8
    targets = {name.rsplit(".", 1)[-1] for name in config["target_modules"]}
    assert targets == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}


@pytest.mark.slow
def test_the_loss_falls_clearly_and_the_log_has_every_step(trained):
    log = read_log(trained["out"])
    start, end = log[0], log[-1]
    assert start["event"] == "start" and start["max_steps"] == 40 and start["template"] == "cosplay"
    assert end == {**end, "event": "end", "status": "finished", "step": 40}
    train = [r for r in log if "loss" in r]
    assert [r["step"] for r in train] == list(range(1, 41))
    assert all(r["lr"] is not None and r["tokens_seen"] > 0 for r in train)
    assert all(r["tokens_per_s"] > 0 for r in train[1:])
    evals = [r for r in log if "eval_loss" in r]
    assert [r["step"] for r in evals][:4] == [10, 20, 30, 40]
    first = train[0]["loss"]
    last = np.mean([r["loss"] for r in train[-5:]])
    assert last < 0.25 * first, (first, last)
    assert evals[-1]["eval_loss"] < 0.5 * evals[0]["eval_loss"]


@pytest.mark.slow
def test_trained_adapter_runs_the_same_on_llama_cpp(trained, tiny_llama):
    """The trained adapter, exported with --gguf from the HF config, equals HF + PEFT on llama.cpp."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tests.hf_support import llama_cpp_logits

    tokenizer = AutoTokenizer.from_pretrained(tiny_llama["hf"])
    ids = tokenizer("众将皆惊。\n孔明曰：“天下大势，分久必合。”")["input_ids"]
    base = AutoModelForCausalLM.from_pretrained(tiny_llama["hf"], dtype=torch.float32)
    model = PeftModel.from_pretrained(base, trained["out"])
    with torch.no_grad():
        expected = model(torch.tensor([ids])).logits[0].numpy()
    got = llama_cpp_logits(tiny_llama["gguf"], ids, adapter=trained["out"] / "kongming.gguf")
    assert np.abs(got - expected).max() < 1e-3


@pytest.mark.slow
def test_persona_is_bound_to_the_adapter(trained):
    from sessions.personas import PersonaStore
    from sessions.runtime import PersonaRuntime

    card = PersonaStore(trained["home"] / "personas").get("诸葛亮").card
    extension = card.data.extensions["cosplay"]
    assert extension["adapter"] == str(trained["out"].resolve())
    assert extension["adapter_gguf"] == str((trained["out"] / "kongming.gguf").resolve())
    assert extension["template"] == "cosplay" and extension["speaker"] == "孔明"
    assert PersonaRuntime.of(card).adapter_name == "kongming"  # one name on both engines
    from tui.cli_personas import describe

    shown = describe(PersonaStore(trained["home"] / "personas").get("诸葛亮"))
    assert "trained: 40 steps, train loss " in shown and "template: cosplay" in shown


@pytest.mark.slow
def test_the_trained_persona_speaks_its_line_on_both_engines(trained, tiny_llama):
    """Chat with the bound persona: each engine loads its form of the adapter on demand, uses the
    template it was trained with, and both recite the memorised reply."""
    from engines.base import GenerationParams
    from engines.hf import HFEngine
    from engines.llamacpp import LlamaCppEngine
    from sessions.personas import PersonaStore
    from sessions.runtime import use_persona

    card = PersonaStore(trained["home"] / "personas").get("诸葛亮").card
    messages = [{"role": "user", "content": "众将皆惊。"}]
    params = GenerationParams(do_sample=False, repetition_penalty=1.0, max_new_tokens=24)
    replies = {}
    for load in (
        lambda: LlamaCppEngine(tiny_llama["gguf"], n_ctx=256),
        lambda: HFEngine(tiny_llama["hf"]),
    ):
        engine = load()
        try:
            assert use_persona(engine, card) == "kongming"
            assert engine.template_name == "cosplay" and engine.render(messages).endswith(
                "孔明曰："
            )
            reply = "".join(engine.stream_chat(messages, params, threading.Event()))
            replies[engine.adapter_format] = reply
        finally:
            engine.close()
    assert replies == {"gguf": "“天下大势，分久必合。”", "peft": "“天下大势，分久必合。”"}


@pytest.mark.slow
def test_chat_from_the_cli_with_the_trained_persona(trained, tiny_llama, capsys):
    """`cosplay ask --persona`: with --model a GGUF, the CPU engine takes the exported adapter;
    with no model, the persona's base loads on the GPU engine (here on the CPU) with the PEFT one."""
    from sessions.store import Store

    home = ["--home", str(trained["home"])]
    ask = ["ask", "--persona", "诸葛亮", "--n-ctx", "2048", "--max-tokens", "6", "众将皆惊。"]
    assert main([*home, *ask[:1], "--model", str(tiny_llama["gguf"]), *ask[1:]]) == 0
    assert main([*home, *ask]) == 0
    store = Store(trained["home"] / "cosplay.db")
    try:
        replies = [store.branch(s.id)[-1] for s in store.list_sessions()[:2]]
    finally:
        store.close()
    engines = {r.meta["engine"]["engine"]: r for r in replies}
    assert set(engines) == {"llama.cpp", "transformers"}
    for reply in replies:
        assert reply.name == "诸葛亮" and reply.meta["adapter"] == "kongming"
        assert reply.meta["template"] == "cosplay"
        assert reply.meta["engine"]["adapter"] == "kongming"
    capsys.readouterr()


@pytest.mark.slow
def test_an_adapter_passed_by_hand_brings_its_training_template(trained, tiny_llama, capsys):
    from sessions.store import Store

    gguf = trained["out"] / "kongming.gguf"
    argv = ["--home", str(trained["home"]), "ask", "--model", str(tiny_llama["gguf"])]
    argv += ["--adapter", str(gguf), "--new", "--n-ctx", "1024", "--max-tokens", "3", "众将皆惊。"]
    assert main(argv) == 0
    store = Store(trained["home"] / "cosplay.db")
    try:
        reply = store.branch(store.list_sessions()[0].id)[-1]
    finally:
        store.close()
    assert reply.meta["template"] == "cosplay" and reply.meta["engine"]["adapter"] == "kongming"
    capsys.readouterr()


def test_persona_update_keeps_the_card(tmp_path):
    from sessions.cards import CharacterCard
    from sessions.personas import PersonaStore
    from tui.cli_train import bind_persona

    store = PersonaStore(tmp_path / "personas")
    card = CharacterCard.new("孔明", description="卧龙先生")
    card.data.extensions["other_tool"] = {"x": 1}
    store.save(card)
    adapter = tmp_path / "run"
    bind_persona("孔明", adapter, template="cosplay", home=str(tmp_path))
    again = store.get("孔明").card
    assert again.data.description == "卧龙先生" and again.data.extensions["other_tool"] == {"x": 1}
    assert again.cosplay.adapter == str(adapter.resolve()) and again.cosplay.template == "cosplay"


@pytest.mark.slow
def test_a_finished_run_is_not_overwritten(trained, capsys):
    assert main(trained["argv"]) == 2
    assert "already holds a finished adapter" in capsys.readouterr().err


def test_dry_run_shows_format_counts_warnings_and_marked_samples(tiny_llama, tmp_path, capsys):
    data = write_data(tmp_path / "d.jsonl", copies=1)
    with open(data, "a", encoding="utf-8") as handle:
        handle.write('{"context": "no speaker here", "chat": "x"}\n')  # a prompt all the same
        handle.write('{"context": "乾曰；", "chat": "“元亨利贞。”"}\n')  # a typo: read past
        handle.write('{"context": "曹洪曰：", "chat": ""}\n')  # nothing to train: skipped
        handle.write('{"context": "x曰：", "chat": \n')  # broken: fatal without --skip-bad
    argv = [
        "train",
        "--base",
        str(tiny_llama["hf"]),
        "--data",
        str(data),
        "--out",
        str(tmp_path / "o"),
    ]
    assert main([*argv, "--dry-run"]) == 2
    assert "line 8" in capsys.readouterr().err
    assert main([*argv, "--dry-run", "--skip-bad", "--dry-run-samples", "6"]) == 0
    report = capsys.readouterr().out
    assert "format: cosplay" in report
    assert "records: 6 trained (2 with warnings), 2 skipped" in report
    assert "trained with warnings: 2 records (no speaker 1, speaker prefix typo 1)" in report
    assert '  line 5: the context ends in "no speaker here", not a speaker prefix' in report
    assert "skipped: 2 records (nothing to train 1, bad record 1)" in report
    assert "template: cosplay" in report and "speakers: 孔明 4, 乾 1" in report
    assert "tokens min" in report
    assert "孔明曰：⟦“目今失了彝陵，势已危急。”" in report
    assert "no speaker here⟦x\n" in report  # the context as written, then the reply
    assert "乾曰：⟦“元亨利贞。”" in report  # the typo read as the prefix it meant
    assert "options (optimisation): --epochs 3 --max-steps 0 --learning-rate 0.0002" in report
    assert not (tmp_path / "o").exists()
    assert main([*argv, "--dry-run", "--skip-bad", "--lr", "1e-3", "--dry-run-samples", "1"]) == 0
    report = capsys.readouterr().out
    assert "--learning-rate 0.001" in report
    assert "--- sample 1 ---" in report and "--- sample 2 ---" not in report


def test_option_and_path_errors_are_one_sentence(tiny_llama, tmp_path, capsys):
    data = write_data(tmp_path / "d.jsonl", copies=1)
    base = ["train", "--data", str(data), "--out", str(tmp_path / "o")]
    cases = [
        ([*base, "--base", str(tiny_llama["gguf"])], "not a GGUF file"),
        ([*base, "--base", str(tmp_path / "nowhere")], "Cannot load the tokenizer"),
        ([*base, "--base", str(tiny_llama["hf"]), "--lora-r", "0"], "--lora-r must be ≥ 1 (got 0)"),
        ([*base, "--base", str(tiny_llama["hf"]), "--resume"], "no checkpoint"),
        ([*base, "--base", str(tiny_llama["hf"]), "--quantize", "4bit"], "needs a CUDA GPU"),
    ]
    for argv, message in cases:
        if message == "needs a CUDA GPU" and _cuda():
            continue
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err


def test_a_full_disk_while_checkpointing_is_one_sentence(tiny_llama, tmp_path, capsys, monkeypatch):
    import errno

    from transformers import Trainer

    def full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Trainer, "_save_checkpoint", full)
    data = write_data(tmp_path / "d.jsonl", copies=1)
    out = tmp_path / "run"
    argv = ["train", "--base", str(tiny_llama["hf"]), "--data", str(data), "--out", str(out)]
    argv += ["--max-steps", "2", "--save-steps", "1", "--batch-size", "2", "--no-progress"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    last = err.splitlines()[-1]  # above it: transformers' weight-loading bar
    assert last.startswith(f"cosplay: The disk holding {out} is full") and "free space" in last
    assert err.count("cosplay:") == 1 and "Traceback" not in err


def test_a_corrupt_run_file_is_reported_not_ignored(tiny_llama, tmp_path, capsys):
    """Resuming compares the options with cosplay_run.json; a damaged one used to skip the check."""
    data = write_data(tmp_path / "d.jsonl", copies=1)
    out = tmp_path / "run"
    argv = ["train", "--base", str(tiny_llama["hf"]), "--data", str(data), "--out", str(out)]
    argv += ["--max-steps", "2", "--save-steps", "2", "--batch-size", "2", "--no-progress"]
    assert main(argv) == 0
    (out / "cosplay.json").unlink()  # pretend the run never finished
    (out / "cosplay_run.json").write_text('{"params": {"lora_r": ')
    assert main([*argv, "--lora-r", "4"]) == 2
    err = capsys.readouterr().err
    assert f"{out / 'cosplay_run.json'} is corrupt" in err.splitlines()[-1]
    assert err.count("cosplay:") == 1 and "Traceback" not in err


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


SLOW_TRAIN = textwrap.dedent(
    """
    import sys, time
    from transformers import TrainerCallback
    import engines.train.trainer as trainer

    class Slow(TrainerCallback):  # give the test time to press Ctrl+C mid-run
        def on_step_end(self, args, state, control, **kwargs):
            time.sleep(0.25)

    real_train = trainer.train
    trainer.train = lambda **kw: real_train(callbacks=[Slow()], **kw)
    from tui.cli import main
    sys.exit(main(sys.argv[1:]))
    """
)


def _adapter(out: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    return load_file(str(out / "adapter_model.safetensors"))


@pytest.mark.slow
def test_ctrl_c_then_resume_reaches_the_same_weights(tiny_llama, tmp_path):
    data = write_data(tmp_path / "d.jsonl", copies=2)
    options = ["--base", str(tiny_llama["hf"]), "--data", str(data), "--max-steps", "16"]
    options += ["--lr", "5e-3", "--batch-size", "2", "--save-steps", "100", "--no-progress"]
    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    assert main(["train", *options, "--out", str(straight)]) == 0

    script = tmp_path / "slow_train.py"
    script.write_text(SLOW_TRAIN)
    argv = ["train", *options, "--out", str(stopped)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, str(script), *argv], cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            log = stopped / "train_log.jsonl"
            if log.is_file() and any(
                r.get("step", 0) >= 3 and "loss" in r for r in read_log(stopped)
            ):
                break
            assert proc.poll() is None, proc.stderr.read()
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "Run the same command again to resume" in err
    checkpoints = sorted(stopped.glob("checkpoint-*"))
    assert len(checkpoints) == 1
    step = int(checkpoints[0].name.split("-")[1])
    assert 3 <= step < 16
    assert read_log(stopped)[-1] == {"event": "end", "status": "interrupted", "step": step}
    assert not (stopped / "cosplay.json").exists()

    # A different dataset may not continue this checkpoint.
    other = write_data(tmp_path / "other.jsonl", copies=1)
    other_argv = [a if a != str(data) else str(other) for a in argv]
    assert main(other_argv) == 2

    assert main(argv) == 0  # the same command again resumes
    log = read_log(stopped)
    assert [r["step"] for r in log if "loss" in r] == list(range(1, 17))  # no step twice
    assert [r["resumed_from"] for r in log if r.get("event") == "start"] == [
        None,
        str(checkpoints[0]),
    ]
    a, b = _adapter(straight), _adapter(stopped)
    assert a.keys() == b.keys()
    worst = max(float(np.abs(a[k] - b[k]).max()) for k in a)
    assert worst < 1e-6, worst


def test_a_damaged_checkpoint_is_a_clear_error(tiny_llama, tmp_path, capsys):
    data = write_data(tmp_path / "d.jsonl", copies=1)
    out = tmp_path / "run"
    argv = ["train", "--base", str(tiny_llama["hf"]), "--data", str(data), "--out", str(out)]
    argv += ["--max-steps", "4", "--save-steps", "2", "--batch-size", "2", "--no-progress"]
    assert main(argv) == 0
    (out / "cosplay.json").unlink()  # pretend the run never finished
    (out / "checkpoint-4" / "optimizer.pt").unlink()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "checkpoint-4 is incomplete (missing optimizer.pt)" in err
    (out / "checkpoint-4" / "trainer_state.json").write_text("{broken")
    (out / "checkpoint-4" / "optimizer.pt").write_bytes(b"")
    assert main(argv) == 2
    assert "unreadable trainer_state.json" in capsys.readouterr().err


@pytest.mark.gpu
@pytest.mark.skipif("not __import__('torch').cuda.is_available()", reason="needs CUDA")
def test_qlora_on_cuda(tiny_llama, tmp_path):
    data = write_data(tmp_path / "d.jsonl")
    argv = [
        "train",
        "--base",
        str(tiny_llama["hf"]),
        "--data",
        str(data),
        "--out",
        str(tmp_path / "q"),
    ]
    assert main([*argv, "--max-steps", "20", "--lr", "5e-3", "--no-progress"]) == 0
    meta = json.loads((tmp_path / "q" / "cosplay.json").read_text())
    assert meta["final"]["train_loss"] < read_log(tmp_path / "q")[1]["loss"]
