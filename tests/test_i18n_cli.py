"""The command line in 简体中文: help texts, argparse's own words, printed messages and the
one-sentence errors, in the language the config (`ui.language`) or the environment chose;
English otherwise (tests/conftest.py pins COSPLAY_LANG=en)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from engines.i18n import set_language
from tui.cli import main
from tui.cli_language import configured_language, home_from_argv, wrap_cells

CHINESE = re.compile(r"[\u4e00-\u9fff]")


@pytest.fixture(autouse=True)
def english_afterwards():
    yield
    set_language("en")


def cosplay(*argv: str, lang: str, **env: str) -> subprocess.CompletedProcess:
    """`cosplay ARGV` in a fresh interpreter (the language is chosen at start)."""
    environment = {**os.environ, "COSPLAY_LANG": lang, **env}
    return subprocess.run(
        [sys.executable, "-m", "tui.cli", *argv],
        capture_output=True,
        text=True,
        timeout=60,
        env=environment,
    )


def test_help_is_chinese_under_zh_and_english_otherwise():
    zh = cosplay("--help", lang="zh")
    assert zh.returncode == 0, zh.stderr
    assert "用法：" in zh.stdout and "选项" in zh.stdout
    assert "在终端里与本地语言模型进行角色扮演聊天。" in zh.stdout
    assert "显示此帮助信息并退出" in zh.stdout
    assert "列出、查看、搜索、导出或删除已保存的会话" in zh.stdout
    en = cosplay("--help", lang="en")
    assert "usage:" in en.stdout and "Roleplay chat with local language models" in en.stdout
    assert not CHINESE.search(en.stdout.replace("确定/deterministic", ""))


def test_a_commands_help_is_chinese(capsys, monkeypatch):
    monkeypatch.setenv("COSPLAY_LANG", "zh")
    with pytest.raises(SystemExit) as exit_:
        main(["sessions", "search", "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "包含 TEXT 中每个词的消息" in out
    assert "最多 N 条结果（默认 50）" in out
    assert "--limit" in out  # flag names stay as they are


def test_a_user_error_is_one_chinese_sentence_with_exit_2(capsys, monkeypatch):
    monkeypatch.setenv("COSPLAY_LANG", "zh")
    assert main(["sessions", "search", "猫", "--limit", "0"]) == 2
    err = capsys.readouterr().err
    assert err == "cosplay: --limit 至少为 1（收到 0）。\n"
    monkeypatch.setenv("COSPLAY_LANG", "en")
    assert main(["sessions", "search", "cat", "--limit", "0"]) == 2
    assert capsys.readouterr().err == "cosplay: --limit must be at least 1 (got 0).\n"


def test_argparse_mistakes_are_chinese_too(capsys, monkeypatch):
    monkeypatch.setenv("COSPLAY_LANG", "zh")
    with pytest.raises(SystemExit) as exit_:
        main(["sessions", "show", "x"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "无效的 int 值：'x'" in err and "请查看 `cosplay sessions show --help`。" in err
    assert err.count("\n") == 1


def test_printed_messages_follow_the_language(capsys, monkeypatch):
    monkeypatch.setenv("COSPLAY_LANG", "zh")
    assert main(["sessions", "list"]) == 0
    assert capsys.readouterr().out == "还没有会话；用 `cosplay chat` 或 `cosplay ask` 开始一个。\n"


def test_the_config_language_wins_over_the_environment(cosplay_home, monkeypatch):
    cosplay_home.mkdir(parents=True)
    (cosplay_home / "config.toml").write_text('[ui]\nlanguage = "zh"\n', encoding="utf-8")
    done = cosplay("--help", lang="en", LANG="en_US.UTF-8", COSPLAY_HOME=str(cosplay_home))
    assert "用法：" in done.stdout, done.stderr
    # `--home` names another profile: its config (none here) decides, so the environment does.
    other = cosplay_home.parent / "other"
    done = cosplay("--home", str(other), "--help", lang="en", COSPLAY_HOME=str(cosplay_home))
    assert "usage:" in done.stdout


def test_a_config_saying_en_wins_over_a_chinese_locale(cosplay_home, capsys, monkeypatch):
    cosplay_home.mkdir(parents=True)
    (cosplay_home / "config.toml").write_text('[ui]\nlanguage = "en"\n', encoding="utf-8")
    monkeypatch.setenv("COSPLAY_LANG", "zh")
    assert main(["sessions", "list"]) == 0
    assert capsys.readouterr().out.startswith("No sessions yet")


def test_a_broken_config_leaves_the_choice_to_the_environment(cosplay_home, monkeypatch):
    cosplay_home.mkdir(parents=True)
    (cosplay_home / "config.toml").write_text("[ui\nlanguage = 3", encoding="utf-8")
    assert configured_language([]) == "auto"
    (cosplay_home / "config.toml").write_text('[ui]\nlanguage = "klingon"\n', encoding="utf-8")
    assert configured_language([]) == "auto"  # a wrong value: its default, warned elsewhere


def test_home_is_read_from_the_arguments():
    assert home_from_argv(["--home", "/a", "chat"]) == "/a"
    assert home_from_argv(["--home=/b", "ask", "hi"]) == "/b"
    assert home_from_argv(["ask", "--", "--home", "/c"]) is None
    assert home_from_argv(["--home"]) is None


def test_a_missing_model_file_is_one_chinese_sentence(tmp_path, capsys, monkeypatch):
    missing = tmp_path / "gone.gguf"
    monkeypatch.setenv("COSPLAY_LANG", "zh")
    assert main(["ask", "--model", str(missing), "你好"]) == 2
    err = capsys.readouterr().err
    assert err == f"正在加载 {missing} …\ncosplay: 模型文件 {missing} 不存在；请检查路径。\n"
    monkeypatch.setenv("COSPLAY_LANG", "en")
    assert main(["ask", "--model", str(missing), "hello"]) == 2
    assert capsys.readouterr().err.endswith(
        f"The model file {missing} does not exist; check the path.\n"
    )


def test_a_malformed_card_is_one_chinese_sentence(tmp_path, capsys, monkeypatch):
    card = tmp_path / "card.json"
    card.write_text('{"spec": "chara_card_v9", "data": {}}', encoding="utf-8")
    monkeypatch.setenv("COSPLAY_LANG", "zh")
    assert main(["personas", "import", str(card)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"cosplay: {card}：字段 'spec' 是 'chara_card_v9'；应为 ")
    assert err.count("\n") == 1 and "Traceback" not in err
    monkeypatch.setenv("COSPLAY_LANG", "en")
    assert main(["personas", "import", str(card)]) == 2
    assert "field 'spec' is 'chara_card_v9'; expected" in capsys.readouterr().err


def test_an_unknown_session_is_chinese(capsys, monkeypatch):
    monkeypatch.setenv("COSPLAY_LANG", "zh")
    assert main(["sessions", "show", "42"]) == 2
    assert capsys.readouterr().err == (
        "cosplay: 没有编号为 42 的会话；`cosplay sessions list` 会列出所有编号。\n"
    )


def test_config_show_and_its_warnings_are_chinese(cosplay_home, capsys, monkeypatch):
    cosplay_home.mkdir(parents=True)
    config = cosplay_home / "config.toml"
    config.write_text('[ui]\nlanguage = "zh"\n[model]\nn_ctx = "big"\n', encoding="utf-8")
    assert main(["config", "show"]) == 0
    captured = capsys.readouterr()
    assert (
        f"cosplay: {config} 中的 model.n_ctx 必须是整数（收到 'big'）；将使用 0。" in captured.err
    )
    assert "# 上下文窗口的 token 数；0：模型自身的值，最多 4096\nn_ctx = 0" in captured.out


def test_chinese_help_is_wrapped_by_terminal_cells():
    text = "将会话导出为聊天记录文本、Cosplay 的 JSON，或 SillyTavern / text-generation-webui 聊天文件。"
    lines = wrap_cells(text, 20)
    cells = [sum(2 if "\u4e00" <= c <= "\uffef" else 1 for c in line) for line in lines]
    assert max(cells) <= 21 and len(lines) > 4  # one closing mark may hang past the width
    assert not any(line.startswith(("，", "。", "、")) for line in lines)
    assert "".join(lines).replace(" ", "") == text.replace(" ", "")
    assert "text-generation-webui" in lines[-2] + lines[-1]  # a word is never cut


def test_an_opening_bracket_never_ends_a_help_line():
    text = "验证集的样本数量（50）（默认 0）；留出的样本不参与训练。"
    for width in range(10, 40):
        lines = wrap_cells(text, width)
        assert not any(line.endswith(("（", "「", "《")) for line in lines), (width, lines)
        assert "".join(lines).replace(" ", "") == text.replace(" ", "")


def test_help_lines_fit_the_terminal_in_chinese():
    done = cosplay("sessions", "search", "--help", lang="zh", COLUMNS="50")
    assert done.returncode == 0, done.stderr
    widths = [sum(2 if ord(c) > 0x2E80 else 1 for c in line) for line in done.stdout.splitlines()]
    assert max(widths) <= 50


def test_models_list_says_where_and_whose_template_in_chinese(tmp_path, tiny_gguf):
    """Where a model was found and "its own template" are words for a person (the --json
    values stay as they are)."""
    import shutil

    (tmp_path / "models").mkdir()
    shutil.copy(tiny_gguf, tmp_path / "models" / "mine.gguf")
    done = cosplay("--home", str(tmp_path), "models", "list", lang="zh", HF_HUB_CACHE=str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert "[内置]" in done.stdout and "[模型目录]" in done.stdout, done.stdout
    assert "chatml（模型自带）" in done.stdout and "(own)" not in done.stdout
    done = cosplay("--home", str(tmp_path), "models", "list", "--json", lang="zh")
    assert '"built in"' in done.stdout and '"chatml (own)"' in done.stdout
