"""`TrainOptions`: the one model the argparse arguments, validation, run files and --dry-run
listing come from; and the run-directory files read back (corrupt is reported, not absent)."""

from __future__ import annotations

import argparse
import errno
import json

import pytest

from engines.train import TrainingError
from engines.train.checkpoints import (
    SOFT_OPTIONS,
    check_same_run,
    disk_space_guard,
    read_json,
)
from engines.train.options import TrainOptions, add_arguments, flags_of

REQUIRED = ["--base", "b", "--data", "d.jsonl", "--out", "o"]


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args([*REQUIRED, *argv])


def test_every_field_is_an_argument_and_the_defaults_come_from_the_model():
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    dests = {action.dest for action in parser._actions} - {"help"}
    assert dests == set(TrainOptions.model_fields)
    options = TrainOptions.from_namespace(parse())
    assert options == TrainOptions(base="b", data="d.jsonl", out="o")
    assert options.epochs == 3.0 and options.scheduler == "cosine" and options.progress is True
    help_text = parser.format_help()
    for name in TrainOptions.model_fields:
        assert flags_of(name)[0] in help_text, name
    assert "(default 0.03)" in help_text  # the default is written once, in the model


def test_flags_map_to_fields():
    options = TrainOptions.from_namespace(
        parse(
            "--format", "alpaca", "--lr", "1e-3", "--rslora", "--no-progress", "--gguf",
            "--no-resume", "--no-group-by-length", "--scheduler", "linear",
            "--target-modules", "q_proj,v_proj",
        )
    )  # fmt: skip
    assert options.data_format == "alpaca" and options.learning_rate == 1e-3
    assert options.use_rslora and not options.progress and options.gguf is True
    assert options.resume is False and options.group_by_length is False
    assert options.scheduler == "linear" and options.target_modules == "q_proj,v_proj"
    assert TrainOptions.from_namespace(parse("--gguf", "base.gguf")).gguf == "base.gguf"
    assert TrainOptions.from_namespace(parse("--resume")).resume is True


def test_errors_name_the_flag_as_typed():
    with pytest.raises(TrainingError, match=r"^--lr must be > 0 \(got 0\)\.$"):
        TrainOptions.from_namespace(parse("--lr", "0"))
    with pytest.raises(TrainingError, match=r"^--learning-rate must be > 0 \(got -1\)\.$"):
        TrainOptions.from_namespace(parse("--learning-rate", "-1"))
    with pytest.raises(TrainingError) as caught:
        TrainOptions.from_namespace(parse("--warmup", "-5", "--lora-r", "0"))
    assert str(caught.value) == "--warmup must be ≥ 0 (got -5); --lora-r must be ≥ 1 (got 0)."


def test_the_python_api_is_validated_the_same_way(tmp_path):
    from engines.train.trainer import train

    with pytest.raises(TrainingError, match=r"--scheduler must be one of .*\(got 'bogus'\)"):
        train(base="b", data="d", out=tmp_path, scheduler="bogus")
    with pytest.raises(TrainingError, match="There is no training option 'epoch'"):
        train(base="b", data="d", out=tmp_path, epoch=3)
    with pytest.raises(TrainingError, match="--warmup must be ≥ 0"):
        train(TrainOptions(base="b", data="d", out=str(tmp_path)), warmup=-1)
    (tmp_path / "file").write_text("x")
    with pytest.raises(TrainingError, match="is a file; pass a directory"):
        train(base="b", data="d", out=tmp_path / "file")


def test_paths_are_stored_as_strings_and_the_dump_is_json(tmp_path):
    options = TrainOptions(base=tmp_path, data=tmp_path / "d.jsonl", out=tmp_path / "o")
    dumped = options.model_dump(mode="json")
    assert dumped["data"] == str(tmp_path / "d.jsonl") and json.loads(json.dumps(dumped))
    assert TrainOptions.model_validate(dumped) == options


def test_soft_options_are_marked_on_the_fields():
    assert {"eval_steps", "save_steps", "progress", "gguf", "resume", "data", "out"} <= SOFT_OPTIONS
    assert not {"lora_r", "learning_rate", "seed", "base"} & SOFT_OPTIONS


def test_describe_lists_the_options_by_group():
    lines = TrainOptions(base="b", data="d", out="o", lora_r=4, use_rslora=True).describe()
    lora = next(line for line in lines if line.startswith("options (LoRA):"))
    assert "--lora-r 4" in lora and "--rslora" in lora


# --- run-directory files ---------------------------------------------------------------------


def test_a_missing_run_file_is_none_and_a_corrupt_one_an_error(tmp_path):
    assert read_json(tmp_path / "absent.json", "fix it") is None
    for text in ("{broken", "[1, 2]", ""):
        (tmp_path / "bad.json").write_text(text)
        with pytest.raises(TrainingError, match=r"bad.json is corrupt .*; fix it\.$"):
            read_json(tmp_path / "bad.json", "fix it")
    (tmp_path / "cosplay_run.json").write_text("{broken")
    with pytest.raises(TrainingError, match="cosplay_run.json is corrupt"):
        check_same_run(tmp_path, {"params": {}, "data_sha256": "x"})


def test_disk_space_guard(tmp_path):
    with pytest.raises(TrainingError, match=r"disk holding .* is full.*free space"):
        with disk_space_guard(tmp_path):
            raise OSError(errno.ENOSPC, "No space left on device")
    with pytest.raises(TrainingError, match="free space"):
        with disk_space_guard(tmp_path):
            raise RuntimeError(
                "[enforce fail] PytorchStreamWriter failed writing file: file write failed"
            )
    with pytest.raises(PermissionError):  # other errors are not a full disk
        with disk_space_guard(tmp_path):
            raise PermissionError(errno.EACCES, "Permission denied")
