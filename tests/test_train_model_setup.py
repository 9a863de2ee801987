"""engines/train/model_setup.py: a damaged base model is one sentence, not a traceback."""

from __future__ import annotations

import shutil

import pytest

from tests.test_train_run import write_data
from tui.cli import main


@pytest.mark.parametrize(
    "damage",
    [
        lambda data: data[: len(data) // 2],  # a download cut short
        lambda data: b"\xff" * 64 + data[64:],  # the header overwritten
    ],
    ids=["truncated", "garbled-header"],
)
def test_damaged_base_weights_are_one_sentence(tiny_llama, tmp_path, capsys, damage):
    base = shutil.copytree(tiny_llama["hf"], tmp_path / "base")
    weights = base / "model.safetensors"
    weights.write_bytes(damage(weights.read_bytes()))
    data = write_data(tmp_path / "d.jsonl", copies=1)
    argv = ["train", "--base", str(base), "--data", str(data), "--out", str(tmp_path / "o")]
    assert main([*argv, "--max-steps", "1", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("cosplay:") == 1, err
    last = err.splitlines()[-1]
    assert last.startswith(f"cosplay: The weights of {base} cannot be read (")
    assert last.endswith("the file is damaged: download the model again.")
    assert not (tmp_path / "o").exists()  # nothing written for a run that never started
