"""The config file: where it is, documented keys, a wrong value as a warning (never a refusal
to start), writing that keeps comments, and what chat/ask take from it."""

from __future__ import annotations

import argparse
import tomllib

import pytest

from engines.catalog import builtin_model
from sessions.config import config_path, load_config
from sessions.workspace import Workspace
from tui import cli_model
from tui.cli import build_parser, main


def _chat_args(*flags: str) -> argparse.Namespace:
    return build_parser(["chat"]).parse_args(["chat", *flags])


def test_where_the_file_is(cosplay_home, tmp_path, monkeypatch, capsys):
    assert main(["config", "path"]) == 0
    assert capsys.readouterr().out.strip() == str(cosplay_home / "config.toml")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert config_path(tmp_path, default_root=True) == tmp_path / "xdg" / "cosplay" / "config.toml"
    monkeypatch.setenv("COSPLAY_CONFIG", str(tmp_path / "mine.toml"))
    assert config_path(tmp_path, default_root=True) == tmp_path / "mine.toml"


def test_wrong_values_are_warnings_naming_file_key_and_problem(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text(
        '[model]\nn_ctx = "big"\nthreads = 4\nengine = "tpu"\ncolour = 1\n'
        '[models]\ndirs = "~/m"\n[chat]\nuser_name = "赵云"\n'
        '[per_model."/m/a.gguf"]\nn_ctx = 8192\ntemplate = 3\n'
    )
    config = load_config(path)
    assert config.get("model.n_ctx") == 0 and config.get("model.threads") == 4
    assert config.get("model.engine") == "auto" and config.get("chat.user_name") == "赵云"
    assert config.get("models.dirs") == []
    assert config.model_settings("/m/a.gguf") == {"n_ctx": 8192}
    warnings = "\n".join(config.warnings)
    assert f"In {path}, model.n_ctx must be a whole number (got 'big'); using 0." in warnings
    assert "model.engine must be one of 'auto', 'cpu', 'gpu', 'remote'" in warnings
    assert "model.colour is not a setting Cosplay knows" in warnings
    assert "models.dirs must be a list of folder paths" in warnings
    assert 'per_model."/m/a.gguf".template must be a string' in warnings
    assert len(config.warnings) == 5


def test_a_file_that_is_not_toml_gives_defaults(tmp_path, capsys, cosplay_home):
    cosplay_home.mkdir()
    (cosplay_home / "config.toml").write_text("[model\nn_ctx = ")
    config = load_config(cosplay_home / "config.toml")
    assert config.values == {} and "is not valid TOML" in config.warnings[0]
    assert main(["config", "show"]) == 0  # shown, with the warning: never a refusal
    out, err = capsys.readouterr()
    assert "is not valid TOML" in err and "n_ctx = 0" in out


def test_set_keeps_the_users_comments_and_checks_the_value(cosplay_home, capsys):
    cosplay_home.mkdir()
    path = cosplay_home / "config.toml"
    path.write_text("# my settings\n[model]\nthreads = 4  # the laptop has 4 cores\n")
    assert main(["config", "set", "model.n_ctx", "2048"]) == 0
    assert main(["config", "set", "models.dirs", "~/a, /b"]) == 0
    assert main(["config", "set", "ui.keys", '{ regenerate = "f12" }']) == 0
    text = path.read_text()
    assert "# my settings" in text and "threads = 4  # the laptop has 4 cores" in text
    config = load_config(path)
    assert config.warnings == []
    assert config.get("model.n_ctx") == 2048 and config.get("models.dirs") == ["~/a", "/b"]
    assert config.get("ui.keys") == {"regenerate": "f12"}
    capsys.readouterr()
    for key, value, expected in [
        ("model.n_ctx", "lots", "model.n_ctx must be a whole number (got 'lots')."),
        ("model.engine", "tpu", "model.engine must be one of"),
        ("model.nope", "1", "'model.nope' is not a setting; use one of model.default"),
    ]:
        assert main(["config", "set", key, value]) == 2
        err = capsys.readouterr().err
        assert expected in err and len(err.strip().splitlines()) == 1
    assert load_config(path).get("model.n_ctx") == 2048  # a refused value changed nothing


def test_show_documents_every_key(capsys):
    assert main(["config", "show"]) == 0
    out = capsys.readouterr().out
    for line in ('default = ""', 'engine = "auto"', "kv_cache_mb = 2048", 'preset = ""'):
        assert line in out
    assert "# your name ({{user}}) in new chats" in out
    shown = tomllib.loads(out)  # what show prints is a config file a user can copy
    assert shown["ui"]["keys"] == {} and shown["storage"]["kv_cache_mb"] == 2048


def test_your_persona_lives_in_the_config_and_an_older_database_copy_is_read(cosplay_home):
    from sessions.prompt import UserPersona
    from sessions.workspace import USER_PERSONA

    with Workspace() as workspace:
        workspace.store.set_setting(USER_PERSONA, {"name": "旧名", "description": "from v1"})
        assert workspace.default_user_persona() == UserPersona("旧名", "from v1")
        workspace.set_default_user_persona(UserPersona("赵云", "常山赵子龙"))
        assert workspace.store.get_setting(USER_PERSONA) is None
    config = load_config(cosplay_home / "config.toml")
    assert (config.get("chat.user_name"), config.get("chat.user_persona")) == ("赵云", "常山赵子龙")
    with Workspace() as workspace:
        assert workspace.default_user_persona() == UserPersona("赵云", "常山赵子龙")


def test_new_chats_start_with_the_configured_preset(cosplay_home):
    cosplay_home.mkdir()
    (cosplay_home / "config.toml").write_text('[chat]\npreset = "确定"\n')
    with Workspace() as workspace:
        params = workspace.new_session().settings["params"]
        assert params["do_sample"] is False and params["temperature"] == 0.0
    (cosplay_home / "config.toml").write_text('[chat]\npreset = "nonsense"\n')
    with Workspace() as workspace:
        workspace.new_session()  # an unknown preset: the chat starts anyway, with a warning
        assert "chat.preset" in workspace.config.warnings[-1]


def test_model_defaults_come_from_the_config_and_remembered_flags(
    cosplay_home, tiny_gguf, monkeypatch
):
    from engines.fake import FakeEngine

    cosplay_home.mkdir()
    (cosplay_home / "config.toml").write_text(
        f'[model]\ndefault = "{tiny_gguf}"\nn_ctx = 1024\nthreads = 3\n'
    )
    monkeypatch.setattr(cli_model, "load_engine", lambda spec, progress: FakeEngine())
    with Workspace() as workspace:
        spec = cli_model.model_spec(_chat_args(), workspace)
        assert (spec.model, spec.n_ctx, spec.n_threads) == (str(tiny_gguf), 1024, 3)
        spec = cli_model.model_spec(_chat_args("--n-ctx", "256", "--template", "chatml"), workspace)
        cli_model.load(spec, workspace)  # loaded: its flags are remembered for the model
    config = load_config(cosplay_home / "config.toml")
    assert config.model_settings(str(tiny_gguf.resolve())) == {"template": "chatml", "n_ctx": 256}
    with Workspace() as workspace:
        spec = cli_model.model_spec(_chat_args(), workspace)
        assert (spec.n_ctx, spec.template, spec.n_threads) == (256, "chatml", 3)
        spec = cli_model.model_spec(_chat_args("--n-ctx", "512"), workspace)  # a flag wins
        assert spec.n_ctx == 512


def test_a_remembered_model_that_is_gone_is_one_sentence(cosplay_home, tmp_path, capsys):
    gone = tmp_path / "gone.gguf"
    with Workspace() as workspace:
        workspace.remember_model({"model": str(gone)})
    assert main(["ask", "hi"]) == 2
    err = capsys.readouterr().err
    assert f"The last model used, {gone}, is no longer there (moved or deleted)" in err
    assert "cosplay models list" in err and len(err.strip().splitlines()) == 1
    (cosplay_home / "config.toml").write_text(f'[model]\ndefault = "{gone}"\n')
    assert main(["ask", "hi"]) == 2
    assert "The config's model.default" in capsys.readouterr().err


@pytest.mark.parametrize("builtin", [True, False])
def test_a_fresh_chat_gets_the_built_in_model_and_ask_does_not(cosplay_home, builtin):
    with Workspace() as workspace:
        spec = cli_model.model_spec(_chat_args(), workspace, builtin=builtin)
    if builtin:
        assert spec.model == str(builtin_model()) and spec.kind().name == "cpu"
    else:
        assert spec is None


def test_an_invalid_config_does_not_stop_ask(cosplay_home, capsys, tiny_gguf):
    cosplay_home.mkdir()
    (cosplay_home / "config.toml").write_text("[model]\nthreads = -5\n")
    code = main(["ask", "--model", str(tiny_gguf), "--dry-run", "hello"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "model.threads must be between 0 and" in err and "hello" in out
