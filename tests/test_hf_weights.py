"""A Hugging Face model directory whose weights are pickle files, missing or incomplete: one
sentence, before the tokenizer or the weights load (pickle can run code when loaded)."""

from __future__ import annotations

import json
import pickle

import pytest

from engines.base import ModelLoadError
from tui.cli import main

TINY_CONFIG = {
    "model_type": "llama",
    "vocab_size": 32,
    "hidden_size": 16,
    "intermediate_size": 32,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "num_key_value_heads": 2,
}


def _model_dir(tmp_path, weights: dict[str, bytes]):
    directory = tmp_path / "pickled"
    directory.mkdir()
    (directory / "config.json").write_text(json.dumps(TINY_CONFIG))
    for name, data in weights.items():
        (directory / name).write_bytes(data)
    return directory


@pytest.mark.parametrize(
    "weights, expected",
    [
        ({"pytorch_model.bin": b"\x80\x02}q\x00."}, "are pickle files (pytorch_model.bin)"),
        ({"model.pt": b"x"}, "are pickle files (model.pt)"),
        ({}, "has no weights (no *.safetensors file)"),
    ],
)
def test_ask_refuses_a_pickle_or_weightless_model_in_one_sentence(
    capsys, tmp_path, weights, expected
):
    directory = _model_dir(tmp_path, weights)
    assert main(["ask", "--model", str(directory), "--engine", "gpu", "hi"]) == 2
    err = capsys.readouterr().err
    last = err.splitlines()[-1]
    assert last.startswith("cosplay: ") and expected in last, err
    assert all(line.startswith(("Loading ", "cosplay: ")) for line in err.splitlines()), err
    assert "Traceback" not in err


def test_pickle_weights_that_hold_more_than_tensors_are_refused_even_when_trusted(tmp_path):
    """With --trust-remote-code pickle weights load through torch's weights-only unpickler;
    one that holds code (here a reference to a function) is refused, not a traceback."""
    import torch

    from engines.hf_load import load_config, load_model, pick_placement

    directory = _model_dir(tmp_path, {"pytorch_model.bin": pickle.dumps({"x": print}, 2)})
    config = load_config(directory, "pickled", trust_remote_code=True)
    placement = pick_placement(device="cpu")
    with pytest.raises(ModelLoadError, match="hold more than tensors"):
        load_model(directory, "pickled", config, placement, trust_remote_code=True)
    torch.save({"unrelated": torch.zeros(1)}, directory / "pytorch_model.bin")
    with pytest.raises(ModelLoadError, match=r"lack \d+ of the model's tensors"):
        load_model(directory, "pickled", config, placement, trust_remote_code=True)


def test_a_multi_line_library_error_becomes_one_line():
    from engines.hf_load import one_line

    assert one_line(ValueError("first\n(1) a\n(2) b\n")) == "first (1) a (2) b"
    assert len(one_line(ValueError("x" * 1000))) == 300
