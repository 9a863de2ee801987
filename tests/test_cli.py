"""The `cosplay` command: exit codes, one-sentence errors, ask + sessions for scripts."""

import json
import os
import subprocess
import sys

import pytest

from tui.cli import main


def run(*args, env_home=None):
    env = dict(os.environ)
    if env_home:
        env["COSPLAY_HOME"] = str(env_home)
    return subprocess.run(
        [sys.executable, "-m", "tui.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def test_help_is_fast_and_does_not_import_torch():
    code = "import sys\nfrom tui.cli import main\ntry:\n main(['--help'])\nexcept SystemExit:\n pass\nprint('torch' in sys.modules, 'llama_cpp' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.stdout.strip().splitlines()[-1] == "False False"
    assert "usage: cosplay" in result.stdout


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.startswith("cosplay ")


@pytest.mark.parametrize(
    "args, expected",
    [
        (["ask", "--model", "/no/such/model.gguf", "hi"], "does not exist"),
        (["ask", "--persona", "诸葛亮", "--model", "/no/such/model.gguf", "hi"], "does not exist"),
        (["ask", "--persona", "Nobody", "hi"], "Nobody"),
        (["ask", "hi"], "No model configured"),
        (["ask", "--max-tokens", "lots", "hi"], "invalid int value"),
        (["sessions", "show", "999"], "no session 999"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_user_mistakes_give_one_sentence_and_exit_2(capsys, cosplay_home, args, expected):
    try:
        code = main(args)
    except SystemExit as exit_info:  # argparse errors exit from inside the parser
        code = exit_info.code
    assert code == 2
    err = capsys.readouterr().err
    assert expected in err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) <= 2
    database = cosplay_home / "cosplay.db"
    if database.exists():  # a failed ask leaves no new session behind
        from sessions.store import Store

        store = Store(database)
        assert store.list_sessions() == []
        store.close()


def test_wrong_model_path_in_a_subprocess_has_no_traceback(tmp_path):
    result = run("ask", "--model", str(tmp_path / "missing.gguf"), "hi", env_home=tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "missing.gguf does not exist" in result.stderr


def test_out_of_range_parameter_is_one_sentence(capsys, tiny_gguf):
    assert main(["ask", "--model", str(tiny_gguf), "--max-tokens", "0", "hi"]) == 2
    err = capsys.readouterr().err
    assert "invalid max_new_tokens" in err and "Traceback" not in err


@pytest.mark.parametrize(
    "flags, expected",
    [
        (["--scheduler", "bogus"], "argument --scheduler: invalid choice: 'bogus'"),
        (["--warmup", "-5"], "--warmup must be ≥ 0 (got -5)."),
        (["--lr", "0"], "--lr must be > 0 (got 0)."),
        (["--learning-rate", "1.5"], "--learning-rate must be < 1 (got 1.5)."),
        (["--lora-dropout", "1"], "--lora-dropout must be < 1 (got 1)."),
        (["--batch-size", "0"], "--batch-size must be ≥ 1 (got 0)."),
        (["--batch-size", "four"], "argument --batch-size: invalid int value: 'four'"),
        (["--epochs", "0"], "--epochs or --max-steps must be positive."),
        (["--target-modules", ","], "--target-modules must name at least one module"),
        (["--quantize", "16bit"], "argument --quantize: invalid choice: '16bit'"),
        (["--format", "csv"], "argument --format: invalid choice: 'csv'"),
        (["--out", "FILE"], "is a file; pass a directory for the adapter"),
        (["--out", "FILE/sub"], "is a file; pass a directory for the adapter"),
        (["--base", "model.gguf"], "not a GGUF file"),
        (["--out", ""], "--out must not be empty."),
    ],
)
def test_bad_training_arguments_are_one_line_and_exit_2(capsys, tmp_path, flags, expected):
    """Refused before any model or data is read: exit 2, one line on stderr, no traceback."""
    afile = tmp_path / "a-file"
    afile.write_text("not a directory")
    flags = [str(afile) + f[4:] if f.startswith("FILE") else f for f in flags]
    argv = ["train", "--base", "some/model", "--data", str(tmp_path / "d.jsonl")]
    argv += ["--out", str(tmp_path / "out"), *flags]
    try:
        code = main(argv)
    except SystemExit as exit_info:  # argparse errors exit from inside the parser
        code = exit_info.code
    err = capsys.readouterr().err
    assert code == 2, err
    assert expected in err
    assert len(err.splitlines()) == 1 and err.endswith("\n"), err
    assert "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_ask_streams_and_saves_both_turns_then_sessions_commands(capsys, tiny_gguf, tmp_path):
    assert (
        main(["ask", "--model", str(tiny_gguf), "--max-tokens", "8", "--seed", "4", "孔明何在？"])
        == 0
    )
    reply = capsys.readouterr().out
    assert reply.strip()
    # the model is remembered: the next ask needs no --model and continues the session
    assert main(["ask", "--max-tokens", "5", "再问"]) == 0
    capsys.readouterr()

    assert main(["sessions", "list", "--json"]) == 0
    sessions = json.loads(capsys.readouterr().out)
    assert len(sessions) == 1 and sessions[0]["message_count"] == 4
    session_id = sessions[0]["id"]

    assert main(["sessions", "show", str(session_id), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    roles = [m["role"] for m in shown["messages"]]
    assert roles == ["user", "assistant", "user", "assistant"]
    first_reply = shown["messages"][1]
    assert first_reply["content"] == reply.rstrip("\n")
    assert first_reply["status"] == "complete"
    meta = first_reply["meta"]
    assert meta["seed"] == 4 and meta["model"] == tiny_gguf.name and meta["template"] == "model"
    assert meta["completion_tokens"] == 8 and meta["params"]["max_new_tokens"] == 8
    assert meta["prompt_tokens"] > 0 and "total_s" in meta

    out = tmp_path / "s.md"
    assert main(["sessions", "export", str(session_id), "--format", "md", "--out", str(out)]) == 0
    assert "孔明何在？" in out.read_text(encoding="utf-8")
    assert main(["sessions", "export", str(session_id), "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["id"] == session_id

    assert main(["sessions", "delete", str(session_id)]) == 0
    capsys.readouterr()
    assert main(["sessions", "list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (["--n-ctx", "100000000"], "lower --n-ctx"),
        (["--n-ctx", "0"], "--n-ctx must be between 16 and"),
        (["--threads", "-3"], "--threads must be between 1 and"),
        (["--session", "0"], "There is no session 0"),
    ],
)
def test_absurd_model_arguments_are_one_sentence_and_exit_2(tiny_gguf, tmp_path, flags, expected):
    result = run("ask", "--model", str(tiny_gguf), *flags, "hi", env_home=tmp_path / "home")
    assert result.returncode == 2, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("cosplay: ") and expected in last
    # nothing else: no traceback, no raw llama.cpp log line
    assert all(line.startswith(("Loading ", "cosplay: ")) for line in result.stderr.splitlines())


def test_threads_beyond_the_cpu_count_are_capped(tiny_gguf):
    from engines.llamacpp import LlamaCppEngine

    engine = LlamaCppEngine(tiny_gguf, n_ctx=128, n_threads=100000)
    assert engine.n_threads == os.cpu_count()
    engine.close()


def test_bad_homes_adapters_and_engines_are_one_sentence(tiny_gguf, tmp_path):
    a_file = tmp_path / "file"
    a_file.write_text("x")
    cases = [
        (["--home", "", "sessions", "list"], "data directory is empty"),
        (["--home", str(a_file), "sessions", "list"], "is a file"),
        (["ask", "--model", str(tiny_gguf), "--adapter", "x=a.gguf", "--adapter", "x=b.gguf", "hi"],
         "Two adapters are named 'x'"),
        (["ask", "--model", str(tiny_gguf), "--engine", "gpu", "hi"], "leave out --engine gpu"),
    ]  # fmt: skip
    for args, expected in cases:
        result = run(*args, env_home=tmp_path / "home")
        assert result.returncode == 2, (args, result.stderr)
        assert result.stderr.strip().splitlines()[-1].startswith("cosplay: "), result.stderr
        assert expected in result.stderr and "Traceback" not in result.stderr


def test_piping_into_a_reader_that_leaves_early_is_not_an_error(tmp_path):
    from sessions.store import Store

    store = Store(tmp_path / "home" / "cosplay.db")
    for index in range(3000):
        store.create_session(f"session {index}")
    store.close()
    env = {**os.environ, "COSPLAY_HOME": str(tmp_path / "home")}
    pipeline = subprocess.run(
        f"{sys.executable} -m tui.cli sessions list | head -1", shell=True,
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert "Traceback" not in pipeline.stderr and "BrokenPipe" not in pipeline.stderr


BIG = "99999999999999999999"  # beyond SQLite's (and C's) 64-bit integers
NO_MODEL = "/no/such/model.gguf"  # a command that loads a model must fail before loading it


@pytest.mark.parametrize(
    "argv, expected",
    [
        # chat / ask: refused before any model loads
        (["ask", "--model", "", "hi"], "--model must not be empty."),
        (["ask", "-m", NO_MODEL, ""], "TEXT must not be empty."),
        (["ask", "-m", NO_MODEL, "  "], "TEXT must not be empty."),
        (["ask", "-m", NO_MODEL, "--persona", " ", "hi"], "--persona must not be empty."),
        (["ask", "-m", NO_MODEL, "--adapter", "", "hi"], "--adapter must not be empty."),
        (["ask", "-m", NO_MODEL, "--template", "", "hi"], "--template must not be empty."),
        (["ask", "-m", NO_MODEL, "--api-key-env", "", "hi"], "--api-key-env must not be empty."),
        (["ask", "-m", NO_MODEL, "--max-tokens", "-5", "hi"], "invalid max_new_tokens"),
        (["ask", "-m", NO_MODEL, "--max-tokens", "0", "hi"], "invalid max_new_tokens"),
        (["ask", "-m", NO_MODEL, "--max-tokens", BIG, "hi"], "--max-tokens is far too large"),
        (["ask", "-m", NO_MODEL, "--seed", "-1", "hi"], "invalid seed"),
        (["ask", "-m", NO_MODEL, "--seed", BIG, "hi"], "--seed is far too large"),
        (["ask", "-m", NO_MODEL, "--temperature", "nan", "hi"], "--temperature must be a finite"),
        (["ask", "-m", NO_MODEL, "--temperature=-inf", "hi"], "--temperature must be a finite"),
        (["ask", "-m", NO_MODEL, "--temperature", "99", "hi"], "invalid temperature"),
        (["ask", "-m", NO_MODEL, "--n-ctx", "0", "hi"], "--n-ctx must be between 16 and"),
        (["ask", "-m", NO_MODEL, "--n-ctx", BIG, "hi"], "--n-ctx must be between 16 and"),
        (["ask", "-m", NO_MODEL, "--threads", "0", "hi"], "--threads must be between 1 and"),
        (["ask", "-m", NO_MODEL, "--gpu-layers", "-2", "hi"], "--gpu-layers must be between -1"),
        (["ask", "-m", NO_MODEL, "--session", BIG, "hi"], f"There is no session {BIG};"),
        (["ask", "-m", NO_MODEL, "--session", str(2**70), "hi"], "There is no session 1180591"),
        (["ask", "-m", NO_MODEL, "--session", str(-(2**64)), "hi"], "There is no session -1844"),
        (["chat", "--demo", "--session", BIG], f"There is no session {BIG};"),
        (["chat", "--model", "", "--demo"], "--model must not be empty."),
        (["chat", "--demo", "--persona", ""], "--persona must not be empty."),
        # undecodable bytes (Python's surrogate escapes): one sentence naming the argument
        (["ask", "\udcff\udcfe", "-m", NO_MODEL], "The argument '\\xff\\xfe' is not valid UTF-8"),
        (["ask", "-m", NO_MODEL, "--persona", "ab\udcff", "hi"], "'ab\\xff' is not valid UTF-8"),
        (["--home", "/tmp/\udcff", "sessions", "list"], "'/tmp/\\xff' is not valid UTF-8"),
        (["personas", "show", "\udce9t\udce9"], "is not valid UTF-8"),
        # sessions
        (["sessions", "show", BIG], f"There is no session {BIG};"),
        (["sessions", "export", BIG], f"There is no session {BIG};"),
        (["sessions", "delete", BIG], f"There is no session {BIG};"),
        (["sessions", "delete", "-1"], "There is no session -1;"),
        (["sessions", "delete", "0"], "There is no session 0;"),
        (["sessions", "show", "one"], "invalid int value: 'one'"),
        (["sessions", "export", "1", "--out", "DIR"], "is a directory; give a file name"),
        (["sessions", "export", "1", "--out", "FILE/x.md"], "is a file, not a folder"),
        (["sessions", "export", "1", "--out", ""], "--out must not be empty."),
        (["sessions", "export", "1", "--format", "pdf"], "invalid choice: 'pdf'"),
        # personas
        (["personas", "import", "/no/card.json"], "Cannot read /no/card.json"),
        (["personas", "import", "DIR"], "(Is a directory)"),
        (["personas", "import", "FILE"], "malformed JSON"),
        (["personas", "import", ""], "FILE must not be empty."),
        (["personas", "show", ""], "NAME must not be empty."),
        (["personas", "show", "Nobody"], "There is no persona named 'Nobody'"),
        (["personas", "export", "诸葛亮", "DIR"], "it is a folder; give a .json or .png file"),
        (["personas", "export", "诸葛亮", "FILE/x.json"], "is a file, not a folder"),
        (["personas", "export", "诸葛亮", "x.txt"], "must end in .json or .png"),
        (["personas", "delete", "诸葛亮"], "is a built-in persona and cannot be deleted"),
        (["personas", "list", "--search", ""], "--search must not be empty."),
        # data extract
        (["data", "extract", "/no/novel.txt", "--out", "OUT"], "does not exist"),
        (["data", "extract", "DIR", "--out", "OUT"], "is a directory; pass the novel's text file"),
        (["data", "extract", "", "--out", "OUT"], "NOVEL must not be empty."),
        (["data", "extract", "NOVEL", "--out", "DIR"], "is a directory; give a file name"),
        (["data", "extract", "NOVEL", "--out", "FILE/x.jsonl"], "is a file, not a folder"),
        (["data", "extract", "NOVEL", "--out", ""], "--out must not be empty."),
        (["data", "extract", "NOVEL", "--out", "OUT", "--context-chars", "-1"], "0 or more"),
        (["data", "extract", "NOVEL", "--out", "OUT", "--top", "-1"], "--top must be 0 or more"),
        (["data", "extract", "NOVEL", "--out", "OUT", "--top", BIG], "--top is far too large"),
        (["data", "extract", "NOVEL", "--out", "OUT", "--speaker", ""], "--speaker must not be"),
        (["data", "extract", "NOVEL", "--out", "OUT", "--alias", "x"], "--alias needs --speaker"),
        # export-gguf
        (["export-gguf", "/no/adapter", "--base", "/no/b.gguf"], "no adapter_config.json"),
        (["export-gguf", "FILE", "--base", "/no/b.gguf"], "no adapter_config.json"),
        (["export-gguf", "", "--base", "/no/b.gguf"], "ADAPTER_DIR must not be empty."),
        (["export-gguf", "DIR", "--base", ""], "--base must not be empty."),
        (["export-gguf", "DIR", "--base", "/no/b.gguf", "--out", "DIR"], "is a directory"),
        (["export-gguf", "DIR", "--base", "b.gguf", "--out", "FILE/a.gguf"], "not a folder"),
        (["export-gguf", "DIR", "--base", "/no/b.gguf", "--outtype", "q4"], "invalid choice"),
        # train-monitor
        (["train-monitor", "/no/run"], "There is no training run in /no/run"),
        (["train-monitor", "FILE"], "There is no training run in"),
        (["train-monitor", ""], "RUN_DIR must not be empty."),
    ],
)
def test_bad_command_arguments_are_one_line_and_exit_2(
    capsys, tmp_path, cosplay_home, argv, expected
):
    """Every subcommand: empty strings, absurd numbers, missing files, folders for files and
    files for folders are refused with one line on stderr (no traceback, no model loaded)."""
    from sessions.store import Store

    store = Store(cosplay_home / "cosplay.db")  # session 1, for the export cases
    store.create_session("kept")
    store.close()
    places = {
        "FILE": tmp_path / "a-file",
        "DIR": tmp_path / "a-dir",
        "NOVEL": tmp_path / "novel.txt",
        "OUT": tmp_path / "out.jsonl",
    }
    places["FILE"].write_text("not a directory")
    places["DIR"].mkdir()
    places["NOVEL"].write_text("她说：“你好。”", encoding="utf-8")
    for key, path in places.items():
        argv = [str(path) + arg[len(key) :] if arg.startswith(key) else arg for arg in argv]
    try:
        code = main(argv)
    except SystemExit as exit_info:  # argparse errors exit from inside the parser
        code = exit_info.code
    out, err = capsys.readouterr()
    assert code == 2, err
    assert expected in err, err
    assert len(err.splitlines()) == 1 and err.startswith("cosplay: ") and err.endswith("\n"), err
    assert "Traceback" not in err and "Loading" not in err
    assert not places["OUT"].exists()
    store = Store(cosplay_home / "cosplay.db")  # nothing deleted, nothing added
    assert [s.title for s in store.list_sessions()] == ["kept"]
    store.close()


def test_undecodable_bytes_on_the_real_command_line_are_one_sentence(tmp_path):
    """The bytes arrive through sys.argv (surrogate escapes), not through main(argv)."""
    env = {**os.environ, "COSPLAY_HOME": str(tmp_path / "home")}
    for argv in (
        [b"ask", b"\xff\xfe", b"--model", b"x"],
        [b"--home", b"/tmp/\xff", b"sessions", b"list"],
        [b"personas", b"import", tmp_path.as_posix().encode() + b"/\xe9.json"],
    ):
        result = subprocess.run(
            [sys.executable, "-m", "tui.cli", *argv], capture_output=True, env=env, timeout=120
        )
        err = result.stderr.decode("utf-8")
        assert result.returncode == 2, err
        assert err.startswith("cosplay: The argument '") and "is not valid UTF-8" in err, err
        assert len(err.splitlines()) == 1
    assert not (tmp_path / "home" / "cosplay.db").exists()


@pytest.mark.parametrize(
    "error", [OSError(28, "No space left on device"), PermissionError(13, "Permission denied")]
)
def test_importing_onto_a_full_or_read_only_personas_folder_is_one_sentence(
    capsys, tmp_path, monkeypatch, error
):
    import sessions.personas

    card = tmp_path / "card.json"
    card.write_text('{"name": "Aria", "description": "x"}', encoding="utf-8")

    def failing_write(path, data):
        raise error

    monkeypatch.setattr(sessions.personas, "_write_atomic", failing_write)
    assert main(["personas", "import", str(card)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cosplay: Cannot save the persona 'Aria' in ") and error.strerror in err
    assert len(err.splitlines()) == 1 and "Traceback" not in err


def test_a_full_disk_during_a_session_export_keeps_the_earlier_file(
    capsys, tmp_path, cosplay_home, monkeypatch
):
    from pathlib import Path

    from sessions.store import Store

    store = Store(cosplay_home / "cosplay.db")
    store.create_session("kept")
    store.close()
    out = tmp_path / "s.md"
    out.write_text("the earlier export", encoding="utf-8")

    def full(self, *args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "write_text", full)
    assert main(["sessions", "export", "1", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert (
        err == f"cosplay: Cannot write {out} (No space left on device); free some space or "
        "choose a folder you can write to.\n"
    )
    monkeypatch.undo()
    assert out.read_text(encoding="utf-8") == "the earlier export"
