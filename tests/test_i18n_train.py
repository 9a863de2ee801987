"""Training in 简体中文: `cosplay train --help` / `--dry-run`, `cosplay data extract`, dataset
errors and the progress bar come out in Chinese under COSPLAY_LANG=zh; pydantic's errors are
rebuilt from their type and ctx (engines/validation.py) in both languages, in the training
options, cards and lorebooks; the palette's placeholder and an export's version label follow the
UI language. English stays as it was (the other tests read it)."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError
from textual.command import CommandInput, CommandList, CommandPalette

from engines.fake import FakeEngine
from engines.i18n import set_language
from engines.train import DatasetError, TrainingError
from engines.train.data import load_dataset
from engines.train.options import TrainOptions
from engines.train.progress import format_progress
from engines.validation import describe
from sessions.cards import CardError, card_from_dict
from sessions.chat_export import export_session
from sessions.lorebook_files import LorebookError, as_world_info
from sessions.store import Store
from tests.conftest import wait_until
from tests.test_chat_files import branched
from tests.test_train_run import write_data
from tui.app import make_app
from tui.cli import main

PATHS = {"base": "b", "data": "d.jsonl", "out": "o"}


@pytest.fixture
def chinese(monkeypatch):
    """Chinese for `_()` and for `cosplay` commands (which choose the language themselves)."""
    monkeypatch.setenv("COSPLAY_LANG", "zh")
    set_language("zh")
    yield
    set_language("en")


def first_error(**values) -> dict:
    with pytest.raises(ValidationError) as caught:
        TrainOptions(**{**PATHS, **values})
    return caught.value.errors()[0]


# --- pydantic's errors ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "english", "chinese_text"),
    [
        ({"warmup": -5}, "must be ≥ 0 (got -5)", "必须 ≥ 0（收到 -5）"),
        ({"learning_rate": 0}, "must be > 0 (got 0)", "必须 > 0（收到 0）"),
        ({"lora_dropout": 1.5}, "must be < 1 (got 1.5)", "必须 < 1（收到 1.5）"),
        (
            {"batch_size": "four"},
            "must be a whole number (got 'four')",
            "必须是整数（收到 'four'）",
        ),
        ({"batch_size": 2.5}, "must be a whole number (got 2.5)", "必须是整数（收到 2.5）"),
        ({"epochs": "many"}, "must be a number (got 'many')", "必须是数字（收到 'many'）"),
        ({"skip_bad": "maybe"}, "must be true or false", "必须是 true 或 false"),
        ({"template": ""}, "must not be empty", "不能为空"),
        ({"speaker": 3}, "must be a string (got 3)", "必须是字符串（收到 3）"),
        ({"scheduler": "bogus"}, "must be one of 'linear', 'cosine'", "必须是 'linear', 'cosine'"),
        ({"epoch": 3}, "is not a known field", "不是已知的字段"),
        ({"target_modules": ","}, "must name at least one module", "必须至少指定一个模块"),
    ],
)
def test_a_training_option_error_reads_in_either_language(values, english, chinese_text):
    assert describe(first_error(**values)).startswith(english)
    set_language("zh")
    try:
        problem = describe(first_error(**values))
    finally:
        set_language("en")
    assert problem.startswith(chinese_text), problem
    assert "Input should" not in problem and "Value error" not in problem


def test_a_missing_option_and_the_input_left_out():
    with pytest.raises(ValidationError) as caught:
        TrainOptions(data="d", out="o")
    error = caught.value.errors()[0]
    assert (error["type"], describe(error)) == ("missing", "is required")
    assert describe(first_error(warmup=-5), show_input=False) == "must be ≥ 0"


def test_a_long_input_is_cut_and_an_unknown_error_keeps_pydantic_words():
    problem = describe(first_error(batch_size="x" * 500))
    assert problem.startswith("must be a whole number (got 'xxx") and problem.endswith("…)")
    assert len(problem) < 80
    unknown = {"type": "uuid_parsing", "loc": ("x",), "msg": "Input should be a UUID", "input": 1}
    assert describe(unknown) == "Input should be a UUID (got 1)"
    no_ctx = {"type": "greater_than", "loc": ("x",), "msg": "Input should be > 1", "input": 0}
    assert describe(no_ctx) == "Input should be > 1 (got 0)"  # no ctx: pydantic's words


def test_the_options_sentence_in_chinese(chinese):
    with pytest.raises(TrainingError) as caught:
        TrainOptions.build(**PATHS, warmup=-5, lora_r=0)
    assert str(caught.value) == "--warmup 必须 ≥ 0（收到 -5）；--lora-r 必须 ≥ 1（收到 0）。"
    with pytest.raises(TrainingError, match="^没有名为 'epoch' 的训练选项。$"):
        TrainOptions.build(**PATHS, epoch=3)
    with pytest.raises(TrainingError, match="^--base 为必填项。$"):
        TrainOptions.build(data="d", out="o")
    with pytest.raises(TrainingError, match="^--epochs 或 --max-steps 必须为正数。$"):
        TrainOptions.build(**PATHS, epochs=0)


def test_card_and_lorebook_errors_use_the_same_words(chinese):
    card = {"spec": "chara_card_v2", "spec_version": "2.0", "data": {"name": "X"}}
    card["data"]["extensions"] = {"cosplay": {"aliases": "玄德"}}
    with pytest.raises(CardError) as caught:
        card_from_dict(card, "x.json")
    assert str(caught.value) == (
        "x.json：字段 'data.extensions.cosplay.aliases'：必须是列表（收到 '玄德'）。"
    )
    with pytest.raises(LorebookError) as caught:
        as_world_info({"entries": [{"keys": ["k"], "content": "c", "enabled": "maybe"}]}, "b.json")
    message = str(caught.value)
    assert "字段 'entries.0.enabled'：必须是 true 或 false（收到 'maybe'）" in message, message
    set_language("en")
    with pytest.raises(LorebookError, match=r"field 'entries.0.enabled': must be true or false"):
        as_world_info({"entries": [{"keys": ["k"], "content": "c", "enabled": "maybe"}]}, "b.json")


# --- the commands ---------------------------------------------------------------------------------


def test_train_help_lists_the_options_in_chinese(chinese, capsys):
    with pytest.raises(SystemExit) as exited:
        main(["train", "--help"])
    assert exited.value.code == 0
    shown = capsys.readouterr().out
    assert "优化" in shown and "峰值学习率（默认 0.0002）" in shown, shown
    assert "不在终端显示进度条" in shown and "--learning-rate" in shown


def test_train_dry_run_reports_in_chinese(tiny_llama, tmp_path, capsys, chinese):
    data = write_data(tmp_path / "d.jsonl", copies=1)
    with open(data, "a", encoding="utf-8") as handle:
        handle.write('{"context": "no speaker here", "chat": "x"}\n')
        handle.write('{"context": "x曰：", "chat": \n')  # broken
    argv = ["train", "--base", str(tiny_llama["hf"]), "--data", str(data)]
    argv += ["--out", str(tmp_path / "o"), "--dry-run"]
    assert main(argv) == 2
    error = capsys.readouterr().err
    assert "第 6 行：不是有效的 JSON" in error and "--skip-bad" in error, error
    assert main([*argv, "--skip-bad", "--dry-run-samples", "1"]) == 0
    report = capsys.readouterr().out
    assert "格式：cosplay" in report
    assert "记录：训练 5 条（其中 1 条带警告），跳过 1 条" in report, report
    assert "带警告训练：1 条记录（无发言者 1）" in report
    assert "已跳过：1 条记录（无效记录 1）" in report
    assert "选项（优化）：--epochs 3" in report
    assert "--- 样本 1 ---" in report and "参与训练的 token 显示在 ⟦ ⟧ 之间" in report
    assert "孔明曰：⟦“" in report  # the data itself is never translated
    assert "records:" not in report and "sample 1" not in report


def test_data_extract_reports_in_chinese(tmp_path, capsys, chinese):
    novel = tmp_path / "novel.txt"
    novel.write_text(
        "孔明曰：“亮夜观天象，东风将至。”玄德曰：“先生之言是也。”孔明笑曰：“主公勿忧。”\n",
        encoding="utf-8",
    )
    out = tmp_path / "lines.jsonl"
    assert main(["data", "extract", str(novel), "--out", str(out)]) == 0
    shown = capsys.readouterr().out
    assert f"已按 utf-8 读取 {novel}。" in shown, shown
    records = [json.loads(line) for line in out.read_text("utf-8").splitlines()]
    assert records and f"已把 {len(records)} 条记录（cosplay）写入 {out}。" in shown
    assert "各发言者的引语数（已合并别名）：" in shown and "孔明\t2" in shown
    assert records[0]["chat"] == "“亮夜观天象，东风将至。”"  # the novel's text, untouched
    assert main(["data", "extract", str(tmp_path), "--out", str(out)]) == 2
    assert "是一个目录；请传入小说的文本文件。" in capsys.readouterr().err


def test_a_dataset_error_names_the_line_in_chinese(tmp_path, chinese):
    data = tmp_path / "d.jsonl"
    data.write_text('{"messages": [{"role": "narrator", "content": "x"}]}\n', encoding="utf-8")
    with pytest.raises(DatasetError) as caught:
        load_dataset(data)
    assert str(caught.value) == (
        f"{data} 第 1 行：第 1 条消息的角色是 'narrator'；请使用 system、user 或 assistant；"
        "请修复这条记录，或传入 --skip-bad 跳过无效记录。"
    )


def test_the_progress_bar_in_both_languages(chinese):
    line = format_progress(3, 10, loss=1.5, rate=2.0, eta=5, eval_loss=1.25)
    assert line.startswith("步数 3/10 |") and "损失 1.5000 验证 1.2500" in line, line
    assert line.endswith("2.00 it/s 剩余 0:05")
    set_language("en")
    line = format_progress(3, 10, loss=None, rate=None, eta=None)
    assert line.startswith("step 3/10 |") and line.endswith("loss – – it/s ETA –"), line


# --- the leftovers ---------------------------------------------------------------------------------


def test_an_exported_transcript_labels_versions_in_the_ui_language(tmp_path, chinese):
    store = Store(tmp_path / "c.db")
    try:
        sid = branched(store)
        assert "版本 2/2" in export_session(store, sid, "md")[0]
        set_language("en")
        assert "version 2/2" in export_session(store, sid, "md")[0]
    finally:
        store.close()


@pytest.mark.parametrize(
    ("lang", "placeholder"), [("zh", "搜索命令…"), ("en", "Search for commands…")]
)
async def test_the_palette_placeholder_follows_the_language(tmp_path, lang, placeholder):
    set_language(lang)
    try:
        app = make_app(store=Store(tmp_path / "c.db"), engine=FakeEngine(["好。"]))
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.pause()
            app.action_command_palette()
            await wait_until(pilot, lambda: bool(app.screen.query(CommandList)))
            assert isinstance(app.screen, CommandPalette)
            assert app.screen.query_one(CommandInput).placeholder == placeholder
            await pilot.press("escape")
            await wait_until(pilot, lambda: not CommandPalette.is_open(app))
    finally:
        set_language("en")


def test_a_field_is_named_without_pydantic_s_type_tags():
    """A union's member type in the location (`insertion_order.int`) is not a field."""
    from pydantic import BaseModel, ValidationError

    from engines.validation import field_path

    class Entry(BaseModel):
        insertion_order: int | str

    with pytest.raises(ValidationError) as caught:
        Entry(insertion_order=[1])
    locations = [field_path(error) for error in caught.value.errors()]
    assert locations == ["insertion_order", "insertion_order"]
    assert (
        field_path({"loc": ("entries", 0, "function-after[check()]", "keys")}) == "entries.0.keys"
    )
