"""The whole training loop on the real SmolLM2-135M-Instruct (tests/real_model.py): its shipped GGUF
loaded into transformers and saved as an fp32 checkpoint → dialogue extracted from a passage →
`cosplay train` for a few steps → the GGUF LoRA export → llama.cpp with the adapter computes
the logits PEFT computes. SmolLM2 has 9 query heads and 3 KV heads (GQA), so a q/k permutation
bug in the export shows here where the tiny model's shapes could hide it."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.hf_support import hf_logits, llama_cpp_logits, needs

pytestmark = [needs("torch", "transformers", "peft", "gguf"), pytest.mark.slow]

TOLERANCE = 1e-3
PASSAGE = """\
却说曹仁回城中，与众商议。曹洪曰：“目今失了彝陵，势已危急，何不拔寨早回？”
孔明笑曰：“亮夜观天象，见东南风起，此天助也。”
鲁肃来见，说：“诸葛亮真神人也！”
玄德问曰：“先生何往？”“三日之内，必有东风。”孔明曰。
"""
TEXT = "众将皆惊。孔明曰：“天下大势，分久必合，合久必分。”"


@pytest.fixture(scope="module")
def smollm2_hf(tmp_path_factory):
    """{'hf': fp32 checkpoint dir, 'gguf': the same weights as an F32 GGUF}."""
    from tests.real_model import f32_gguf, hf_checkpoint

    root = tmp_path_factory.mktemp("smollm2_hf")
    return {"hf": hf_checkpoint(root / "hf"), "gguf": f32_gguf(root)}


@pytest.fixture(scope="module")
def trained(smollm2_hf, tmp_path_factory):
    from engines.train.extract import extract_file
    from engines.train.trainer import train

    root = tmp_path_factory.mktemp("loop")
    novel = root / "novel.txt"
    novel.write_text(PASSAGE, encoding="gb18030")  # an e-text as they come, in GB18030
    data = root / "lines.jsonl"
    report = extract_file(novel, data)
    assert report.written >= 4
    with open(data, "a", encoding="utf-8") as handle:  # what real e-texts also hold
        handle.write('{"context": "天行健，君子以自强不息。乾曰；", "chat": "“元亨利贞。”"}\n')
        handle.write('{"context": "曹洪曰：", "chat": ""}\n')
    result = train(
        base=str(smollm2_hf["hf"]),
        data=str(data),
        out=str(root / "out"),
        max_steps=3,
        batch_size=2,
        learning_rate=1e-2,  # a few steps that move the adapter far enough to test the export
        warmup=0,
        lora_dropout=0.0,
        cutoff_len=96,
        save_steps=1000,
        progress=False,
        gguf=str(smollm2_hf["gguf"]),
    )
    return {"result": result, "data": data, "out": root / "out"}


def test_extracted_lines_train_with_the_typo_and_the_empty_reply_counted(trained):
    result = trained["result"]
    assert result.status == "finished" and result.step == 3
    log = [
        json.loads(line) for line in (trained["out"] / "train_log.jsonl").read_text().splitlines()
    ]
    start = log[0]
    assert start["event"] == "start" and start["template"] == "cosplay"
    assert start["device"].startswith("cpu, ") or start["device"] == "cuda"
    assert start["data_problems"]["warnings"] == {"speaker prefix typo": 1}
    assert start["data_problems"]["skipped"] == {"nothing to train": 1}
    losses = [r["loss"] for r in log if "loss" in r]
    assert len(losses) == 3 and all(np.isfinite(losses))
    assert any(note.startswith("trained with warnings: 1 records") for note in result.data_notes)


def test_the_exported_adapter_matches_peft_on_llama_cpp(trained, smollm2_hf):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(smollm2_hf["hf"])
    ids = tokenizer(TEXT)["input_ids"]
    base_model = AutoModelForCausalLM.from_pretrained(smollm2_hf["hf"], dtype=torch.float32)
    assert (base_model.config.num_attention_heads, base_model.config.num_key_value_heads) == (9, 3)
    model = PeftModel.from_pretrained(base_model, trained["out"]).eval()
    # the q/k projections (where llama.cpp's head permutation applies) did learn something
    for name, param in model.named_parameters():
        if "lora_B" in name and ("q_proj" in name or "k_proj" in name):
            assert float(param.abs().max()) > 0, name
    expected = hf_logits(model, ids)
    with model.disable_adapter():
        base = hf_logits(model, ids)
    got_base = llama_cpp_logits(smollm2_hf["gguf"], ids)
    got = llama_cpp_logits(smollm2_hf["gguf"], ids, adapter=trained["result"].gguf_path)
    base_diff = float(np.abs(got_base - base).max())
    diff = float(np.abs(got - expected).max())
    effect = float(np.abs(expected - base).max())
    print(f"SmolLM2: base |Δ| {base_diff:.2e}, adapter |Δ| {diff:.2e}, adapter effect {effect:.2f}")
    assert base_diff < TOLERANCE  # the same weights on both sides…
    assert effect > 0.1  # …the trained adapter changes the output well past the tolerance…
    assert diff < TOLERANCE  # …and llama.cpp computes the same change
