"""The engines' and the prompt's words in 简体中文: an adapter that is missing, a chat template
that does not parse, an unknown preset, the recommended models, the prompt inspector and a
group scene's notices say it in Chinese under zh, and in English (unchanged) otherwise."""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
from importlib.resources import files

import pytest

from engines.base import TemplateError
from engines.errors import CosplayError
from engines.i18n import set_language
from tests.real_model import shipped_gguf

CHINESE = re.compile(r"[\u4e00-\u9fff]")


@pytest.fixture
def chinese():
    set_language("zh")
    yield
    set_language("en")


def cosplay(*argv: str, lang: str, home) -> subprocess.CompletedProcess:
    """`cosplay ARGV` in a fresh interpreter (the language is chosen at start)."""
    environment = {**os.environ, "COSPLAY_LANG": lang, "COSPLAY_HOME": str(home)}
    return subprocess.run(
        [sys.executable, "-m", "tui.cli", *argv],
        capture_output=True,
        text=True,
        timeout=120,
        env=environment,
    )


def test_a_missing_adapter_file_is_one_chinese_sentence(tmp_path, cosplay_home):
    """The real model loads (llama.cpp, in a subprocess); the adapter it is given is not there."""
    missing = tmp_path / "没有这个.gguf"
    argv = ("ask", "--model", str(shipped_gguf()), "--adapter", str(missing), "你好")
    zh = cosplay(*argv, lang="zh", home=cosplay_home)
    assert zh.returncode == 2, zh.stderr
    assert zh.stderr.strip().splitlines()[-1] == (
        f"cosplay: LoRA 适配器 {missing} 不存在；请检查路径。"
    )
    en = cosplay(*argv, lang="en", home=cosplay_home)
    assert en.returncode == 2
    assert en.stderr.strip().splitlines()[-1] == (
        f"cosplay: The LoRA adapter {missing} does not exist; check the path."
    )


def test_a_broken_template_is_one_chinese_sentence(chinese):
    from engines.templates import choose_template

    with pytest.raises(TemplateError) as caught:
        choose_template(None, "{% for m in messages %}", "model.gguf")
    message = str(caught.value)
    assert message.startswith("聊天模板无法解析（") and "--template chatml" in message
    assert message.endswith("请选一个具名模板，例如 --template chatml。")
    assert "\n" not in message
    set_language("en")
    with pytest.raises(TemplateError, match=r"^The chat template does not parse \("):
        choose_template(None, "{% for m in messages %}", "model.gguf")


def test_a_template_that_renders_nothing_names_itself_in_chinese(chinese):
    from engines.templates import choose_template

    template = choose_template(None, "{{ '' }}", "model.gguf")
    with pytest.raises(TemplateError) as caught:
        template.render([{"role": "user", "content": "你好"}])
    assert str(caught.value) == (
        "模型自带的聊天模板渲染出了空的提示词；请选一个具名模板，例如 --template chatml。"
    )


def test_an_unknown_preset_is_one_chinese_sentence(capsys, monkeypatch):
    from tui.cli import main

    monkeypatch.setenv("COSPLAY_LANG", "zh")
    assert main(["ask", "-m", "/no/such/model.gguf", "--preset", "wild", "hi"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cosplay: 没有名为 'wild' 的预设；可用：") and err.endswith("。\n")
    assert err.count("\n") == 1
    monkeypatch.setenv("COSPLAY_LANG", "en")
    assert main(["ask", "-m", "/no/such/model.gguf", "--preset", "wild", "hi"]) == 2
    assert capsys.readouterr().err.startswith("cosplay: There is no preset named 'wild'; use one")


def test_every_recommended_model_has_its_chinese():
    data = json.loads(files("engines").joinpath("data/recommended.json").read_text("utf-8"))
    assert CHINESE.search(data["note_zh"]) and data["note"].isascii()
    for model in data["models"]:
        for key in ("name", "languages", "for"):
            assert model[key].isascii(), (model["name"], key)
            assert model.get(f"{key}_zh", "").strip(), f"{model['name']}: no {key}_zh"
        assert CHINESE.search(model["for_zh"]) and CHINESE.search(model["languages_zh"])


def test_models_recommended_shows_the_chinese_purposes(capsys, monkeypatch):
    from tui.cli import main

    monkeypatch.setenv("COSPLAY_LANG", "zh")
    assert main(["models", "recommended"]) == 0
    zh = capsys.readouterr().out
    assert "Qwen2.5 0.5B Instruct（GGUF Q4_K_M） — 中文、英文；4 GB 内存的 CPU 笔记本" in zh
    assert "(下载大小和内存需求均为近似值" in zh
    assert "a CPU laptop" not in zh
    monkeypatch.setenv("COSPLAY_LANG", "en")
    assert main(["models", "recommended"]) == 0
    en = capsys.readouterr().out
    assert "Qwen2.5 0.5B Instruct (GGUF Q4_K_M) — Chinese, English; a CPU laptop with 4 GB" in en
    assert not CHINESE.search(en)


def test_the_prompt_inspector_speaks_chinese_with_its_columns_aligned(chinese):
    from engines.fake import FakeEngine
    from sessions.context import PromptPlan
    from sessions.inspector import cells, inspect, report

    messages = [
        {"role": "system", "content": "你是诸葛亮。"},
        {"role": "user", "content": "先生好"},
    ]
    plan = PromptPlan(
        messages=messages,
        prompt_tokens=0,
        parts=[("system", 1), ("input", 1)],
        dropped_rounds=2,
        lore=["赤壁之战"],
    )
    engine = FakeEngine()
    text = report(inspect(plan, engine, 64), engine)
    lines = text.splitlines()
    assert "模板" in lines[0] and "提示词" in lines[0] and "上下文" in lines[0]
    rows = [line for line in lines if line.startswith(("系统 / 角色设定", "被回复的消息", "合计"))]
    assert len(rows) == 3
    assert len({cells(row.split(" token")[0]) for row in rows}) == 1  # the counts line up
    assert "1 条消息" in text and "触发的世界书条目：赤壁之战" in text
    assert "── 完整提示词 ──" in text
    set_language("en")
    english = report(inspect(plan, engine, 64), engine)
    assert "system / persona" in english and "── the exact prompt ──" in english
    assert not CHINESE.search(
        english.replace("你是诸葛亮。", "").replace("先生好", "").replace("赤壁之战", "")
    )


def test_a_group_scene_notice_is_chinese(chinese):
    from sessions.group_order import Member, ReplyOrder, SceneRules, activate

    members = [Member(name) for name in ("刘备", "曹操")]
    chosen = activate(
        members, SceneRules(order=ReplyOrder.MANUAL), "@张三 你好", rng=random.Random(1)
    )
    assert chosen.speakers == []
    assert chosen.notices[0] == (
        "@张三 不在这个场景中（刘备、曹操）；没有点名任何人，所以按场景的发言顺序选择发言者。"
    )
    assert chosen.notices[1].startswith("手动顺序：没有点名任何人；请用 @名字 点名（刘备、曹操）")


def test_engine_errors_are_cosplay_errors_in_either_language(chinese):
    """The translated text is still the error users see: one sentence, no traceback."""
    from engines.openai_http import Server

    with pytest.raises(CosplayError) as caught:
        Server("ftp://nowhere", api_key=None, timeout=1)
    assert str(caught.value) == (
        "ftp://nowhere 不是服务器 URL；请传入类似 http://host:8080/v1 的地址。"
    )
